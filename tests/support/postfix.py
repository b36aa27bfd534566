"""A private Postfix instance for the tests and benchmarks (Debian package ``postfix``).

``PrivatePostfix(...).start()`` builds a self-contained instance under one directory (a
fresh one under /tmp by default) and starts it with ``postfix -c DIR/etc start``:

  ``DIR/etc``        main.cf and master.cf (nothing of /etc/postfix is read; the package's
                     /etc/postfix/postfix-files is used by ``postfix check`` as usual)
  ``DIR/queue``      queue_directory; the cleanup socket is ``DIR/queue/public/cleanup``
  ``DIR/data``       data_directory (master.lock)
  ``DIR/maillog``    Postfix's log (maillog_file via postlogd; no syslog needed)
  ``DIR/delivered``  what Postfix delivered: one file per delivery, written by a ``pipe``
                     transport (``qptx``) that every address goes to (local, relay and
                     default transport), so nothing leaves the instance and no DNS is used

smtpd listens on 127.0.0.1:``port`` only (a free port by default); 127.0.0.0/8 may relay.
Each file in ``delivered/`` holds Postfix's queue id, the envelope sender and recipients
exactly as pipe(8) hands them over (``${sender}``, ``${recipient}``; the null sender is
empty), an empty line and the message as queued (pipe ``flags=`` empty: no From_ line, no
Return-Path or Delivered-To added, no dot-stuffing); :meth:`PrivatePostfix.deliveries`
parses them.

``start`` is idempotent (a running instance is left alone), as is ``stop``: ``postfix -c
DIR/etc stop``, then SIGKILL by PID to whatever of this instance is still there — the
processes whose environment says ``MAIL_CONFIG=DIR/etc`` (Postfix passes it to the master,
every daemon and the pipe commands; the directory is unique to the instance). No other
process is touched: a system Postfix, or another test's instance, has its own config
directory, queue, lock file and ports.

Needs root (Postfix's master runs as root and its daemons as ``postfix``; the pipe
transport delivers as ``nobody``). :func:`start_postfix` raises SkipTest with the reason
when that or the package is missing. Nothing here needs Twisted except :func:`start_postfix`.
"""

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tests.support.processes import poll_until, read_text, release_port, reserve_port

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"

#: the pipe(8) command: QUEUE_ID S<sender> R<rcpt>...; the message on standard input
DELIVER_SCRIPT = """\
#!/bin/sh
# Written by tests/support/postfix.py: store one delivery of the private Postfix.
umask 022
out='{out}'
name="$1.$$"
{{ for arg in "$@"; do printf '%s\\n' "$arg"; done; printf '\\n'; cat; }} > "$out/tmp/$name" || exit 75
# Our input ended: the whole message, unless pipe(8), our parent, died before it had handed all
# of it over (Postfix stopped). Then this is part of a message and no delivery: Postfix
# delivers it again once started. pipe(8) reads our output until we have exited: if it is
# gone, writing to it fails (SIGPIPE ignored for that). If it is dying right now, it may have closed
# our input but not yet our output; it is flagged PF_EXITING (0x4, field 9 of
# /proc/PID/stat) before it closes any file.
parent_alive() {{
    read -r stat < /proc/$$/stat && set -- ${{stat##*") "}} && [ "$2" = "$PPID" ] &&
        read -r stat < /proc/$PPID/stat && set -- ${{stat##*") "}} && [ $(($7 & 4)) -eq 0 ]
}}
trap '' PIPE
printf 'stored %s\\n' "$name" && parent_alive || {{ rm -f "$out/tmp/$name"; exit 75; }}
mv "$out/tmp/$name" "$out/new/$name" || exit 75
exit 0
"""

# chroot off everywhere: the instance needs no copy of /etc in its queue directory
MASTER_CF = """\
# service  type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n     -       n       -       -       smtpd
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
proxymap   unix  -       -       n       -       -       proxymap
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
smtp       unix  -       -       n       -       -       smtp
qptx       unix  -       n       n       -       -       pipe
  flags= user={user} null_sender= argv=/bin/sh {dir}/deliver ${{queue_id}} S${{sender}} R${{recipient}}
"""


def _main_cf(directory, domain):
    return {
        "compatibility_level": "3.6",
        "queue_directory": os.path.join(directory, "queue"),
        "data_directory": os.path.join(directory, "data"),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "maillog_file": os.path.join(directory, "maillog"),
        "maillog_file_prefixes": directory,
        "myhostname": "postfix.test",
        "mydomain": "postfix.test",
        "myorigin": "$myhostname",
        "mydestination": "$myhostname, localhost, %s" % domain,
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "smtpd_relay_restrictions": "permit_mynetworks, reject",
        "smtpd_peername_lookup": "no",
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "local_transport": "qptx",
        "relay_transport": "qptx",
        "default_transport": "qptx",
        "smtp_dns_support_level": "disabled",
        "fast_flush_domains": "",
        "biff": "no",
        "delay_warning_time": "0",
    }


def tls_settings(cert, key):
    """main.cf settings offering STARTTLS with ``cert``/``key`` (PEM files), the TLS details in
    the Received header and a log line per TLS session: for ``settings=``."""
    return {"smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key,
            "smtpd_tls_security_level": "may", "smtpd_tls_received_header": "yes",
            "smtpd_tls_loglevel": "1"}


class PostfixUnavailable(Exception):
    """A private Postfix cannot run here; the text says why."""


def unavailable_reason():
    """None if a private Postfix can run here, else why not."""
    if not (os.path.exists(POSTFIX) and os.path.exists(POSTCONF)):
        return "Postfix is not installed (apt-get install postfix; .ci/run does)"
    if os.geteuid() != 0:
        return "a private Postfix needs root here (its master runs as root)"
    for user in ("postfix", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return "user %s is missing" % user
    try:
        grp.getgrnam("postdrop")
    except KeyError:
        return "group postdrop is missing"
    return None


class Delivery:
    """One delivery by the private Postfix: ``queue_id``, ``sender``, ``recipients``, ``message``."""

    def __init__(self, queue_id, sender, recipients, message, name):
        self.queue_id = queue_id
        self.sender = sender
        self.recipients = recipients
        self.message = message
        self.name = name

    @classmethod
    def parse(cls, data, name):
        envelope, _, message = data.partition(b"\n\n")
        lines = envelope.decode("utf-8", "surrogateescape").split("\n")
        queue_id = lines[0]
        sender = [line[1:] for line in lines[1:] if line.startswith("S")]
        recipients = [line[1:] for line in lines[1:] if line.startswith("R")]
        if len(sender) != 1:
            raise ValueError("bad delivery file %s: %r" % (name, envelope))
        return cls(queue_id, sender[0], recipients, message, name)

    def __repr__(self):
        return "Delivery(%s, %r -> %r, %d bytes)" % (
            self.queue_id, self.sender, self.recipients, len(self.message))


class PrivatePostfix:
    """One private Postfix instance (see the module docstring).

    ``settings``: extra main.cf parameters ({name: value}), e.g. ``message_size_limit``;
    ``files``: files to write into the config directory ({name: text}), for the tables
    such settings name (``regexp:$config_directory/header_checks``); ``cleanup_port``: also
    offer the cleanup service on 127.0.0.1:``cleanup_port`` (``True``: a free port).
    """

    def __init__(self, directory=None, domain="example.com", port=None, settings=None,
                 files=None, cleanup_port=None):
        reason = unavailable_reason()
        if reason:
            raise PostfixUnavailable(reason)
        self.own_directory = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="qptx-postfix-")
        self.domain = domain
        self.port = port or reserve_port()     # held until its smtpd listens (start)
        self.settings = dict(settings or {})
        self.files = dict(files or {})
        self.cleanup_port = reserve_port() if cleanup_port is True else cleanup_port
        self.config_dir = os.path.join(self.dir, "etc")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.cleanup_socket = os.path.join(self.queue_dir, "public", "cleanup")
        self.delivered_dir = os.path.join(self.dir, "delivered")
        self.master_pid = None
        self._configured = False

    # -- set-up ------------------------------------------------------------------------------

    def _run(self, argv, check=True):
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s" % (
                " ".join(argv), result.returncode,
                result.stdout.decode("utf-8", "replace"), self.maillog()[-3000:]))
        return result.stdout.decode("utf-8", "replace")

    def configure(self):
        if self._configured:
            return
        os.chmod(self.dir, 0o755)
        nobody = pwd.getpwnam("nobody")
        for sub in ("etc", "queue", "data", os.path.join("delivered", "tmp"),
                    os.path.join("delivered", "new")):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.chmod(self.queue_dir, 0o755)
        data = os.path.join(self.dir, "data")
        postfix = pwd.getpwnam("postfix")
        os.chown(data, postfix.pw_uid, postfix.pw_gid)
        for sub in ("delivered", os.path.join("delivered", "tmp"), os.path.join("delivered", "new")):
            os.chown(os.path.join(self.dir, sub), nobody.pw_uid, nobody.pw_gid)
        with open(os.path.join(self.dir, "deliver"), "w") as f:
            f.write(DELIVER_SCRIPT.format(out=self.delivered_dir))
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port, user="nobody", dir=self.dir))
            if self.cleanup_port:
                f.write("127.0.0.1:%d inet n - n - 0 cleanup\n" % self.cleanup_port)
        for name, text in self.files.items():
            with open(os.path.join(self.config_dir, name), "w") as f:
                f.write(text)
        main = _main_cf(self.dir, self.domain)
        main.update(self.settings)
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            for name, value in main.items():
                f.write("%s = %s\n" % (name, value))
        self._configured = True

    # -- running -----------------------------------------------------------------------------

    def _read_master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self):
        return self.master_pid is not None and _alive(self.master_pid)

    def start(self, timeout=20.0):
        """Start the instance (if not running) and wait until smtpd and cleanup answer."""
        if self.running():
            return self
        self.configure()
        self._run([POSTFIX, "-c", self.config_dir, "start"])
        self.master_pid = self._read_master_pid()
        if self.master_pid is None:
            raise RuntimeError("postfix started but wrote no master.pid\n" + self.maillog())
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    for port in (self.port, self.cleanup_port):
                        if port:
                            with socket.create_connection(("127.0.0.1", port), timeout=1):
                                pass
                    if os.path.exists(self.cleanup_socket):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or not self.running():
                    self.stop()
                    raise RuntimeError("the private Postfix did not come up\n" + self.maillog())
                time.sleep(0.05)
        finally:
            for port in (self.port, self.cleanup_port):
                release_port(port)
        return self

    def own_processes(self):
        """PIDs of the processes of this instance: Postfix passes ``MAIL_CONFIG=<our config
        dir>`` to the master and every daemon it runs, and that directory is ours alone."""
        marker = b"\0MAIL_CONFIG=" + self.config_dir.encode() + b"\0"
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open("/proc/%s/environ" % entry, "rb") as f:
                    environ = b"\0" + f.read()
            except OSError:
                continue
            if marker in environ and _alive(int(entry)):
                pids.append(int(entry))
        return pids

    def stop(self, timeout=10.0):
        """Stop exactly this instance: ``postfix -c DIR stop``, then SIGKILL to the PIDs of
        its processes that are still there (the master, then any daemon). Idempotent."""
        if self.master_pid is None:
            return
        if _alive(self.master_pid):
            self._run([POSTFIX, "-c", self.config_dir, "stop"], check=False)
            deadline = time.monotonic() + timeout
            while _alive(self.master_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(self.master_pid):
                _kill(self.master_pid)
        # daemons exit once the master is gone; wait a little, then kill the stragglers
        deadline = time.monotonic() + 5
        while self.own_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.own_processes():
            _kill(pid)
        self.master_pid = None
        self._remove_unfinished_queue_files()

    def _remove_unfinished_queue_files(self):
        """Remove what a cleanup killed mid-message left in ``incoming/`` under its temporary
        name (``INODE.PID``): no client got a 250 for it, and the next ``postfix start`` would
        fail on it — postsuper warns of a "bogus file name", and having dropped root it
        cannot open the root-owned maillog to say so, which is fatal."""
        incoming = os.path.join(self.queue_dir, "incoming")
        try:
            names = os.listdir(incoming)
        except OSError:
            return
        for name in names:
            inode, dot, pid = name.partition(".")
            if dot and inode.isdigit() and pid.isdigit():
                try:
                    os.unlink(os.path.join(incoming, name))
                except OSError:
                    pass

    def cleanup(self):
        """Stop, and remove the directory if this object created it."""
        self.stop()
        if self.own_directory:
            shutil.rmtree(self.dir, True)

    # -- what happened -----------------------------------------------------------------------

    def maillog(self):
        """The text of Postfix's log so far."""
        return read_text(os.path.join(self.dir, "maillog"))

    def deliveries(self):
        """Every delivery so far (:class:`Delivery`), in the order the files were written."""
        new = os.path.join(self.delivered_dir, "new")
        entries = []
        for name in os.listdir(new):
            path = os.path.join(new, name)
            entries.append((os.stat(path).st_mtime_ns, name, path))
        out = []
        for _, name, path in sorted(entries):
            with open(path, "rb") as f:
                out.append(Delivery.parse(f.read(), name))
        return out

    def queued(self):
        """Queue ids still in the queue (incoming, active, deferred, hold, maildrop)."""
        ids = []
        for queue in ("maildrop", "incoming", "active", "deferred", "hold"):
            top = os.path.join(self.queue_dir, queue)
            for root, _, files in os.walk(top):
                ids.extend(files)
        return sorted(ids)

    def hold_queue(self):
        ids = []
        for root, _, files in os.walk(os.path.join(self.queue_dir, "hold")):
            ids.extend(files)
        return sorted(ids)

    def wait_idle(self, timeout=15.0):
        """Wait until the queue is empty; True if it is."""
        return poll_until(lambda: not self.queued(), timeout)


def _stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid):
    """True if ``pid`` runs (a zombie counts as gone)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def start_relaying_postfix(testcase, port, **settings):
    """Start a PrivatePostfix that relays all mail to our server on 127.0.0.1:``port`` (Postfix
    as the client; more main.cf ``settings`` as keywords), or SkipTest; stopped at the end."""
    return start_postfix(testcase, domain="postfix.local", settings=dict({
        "relay_transport": "smtp", "default_transport": "smtp",
        "relayhost": "[127.0.0.1]:%d" % port}, **settings))


def start_postfix(testcase, **kwargs):
    """Start a PrivatePostfix for ``testcase`` (stopped and removed at its end), or SkipTest.

    Blocks for the start (about 2 s): call it before the test's server handles mail.
    """
    from twisted.trial.unittest import SkipTest

    try:
        instance = PrivatePostfix(**kwargs)
    except PostfixUnavailable as e:
        raise SkipTest(str(e))
    testcase.addCleanup(instance.cleanup)
    instance.start()
    return instance
