"""A private Exim (Debian's ``exim4-daemon-light``) for the tests, without installing it.

Debian's Exim package conflicts with Postfix (both are the ``mail-transport-agent``), so it is
not installed: ``exim_install()`` fetches it with ``apt-get download`` (plus
``libnss-wrapper`` and whichever of its libraries are not installed, e.g. ``libidn12``),
unpacks the packages with ``dpkg -x`` into a cache directory, ``/tmp/qpsmtpd-tx-exim-<uid>/``
(reused by later runs: then it takes no time), and writes ``bin/exim`` there, a script that
runs the real binary with:

  - ``LD_LIBRARY_PATH`` for the unpacked libraries;
  - ``LD_PRELOAD=libnss_wrapper.so`` with a private passwd/group file: Debian's binary looks
    up its compiled-in user ``Debian-exim`` at start and stops if it is missing; the
    private passwd gives that name to ``nobody`` (to the caller when not root), so no user
    is added to the system.

The binary is the package's, with its setuid bit removed (a setuid exec would make the
dynamic linker ignore both variables). Nothing outside the cache directory and the test's
own directory is written.

``private_exim(testcase, **options)`` writes a configuration (``exim -C``) into a fresh
directory: its own spool, log directory and Maildir; no daemon, no DNS (every domain is
delivered locally into one Maildir), the envelope kept in each delivered file
(``Return-path:``, ``Envelope-to:``, a fixed one-line ``Received:`` header naming Exim's
message id), and the caller in ``trusted_users`` (Exim keeps the MAIL FROM sender only for
trusted callers; root is always trusted). Exim delivers each message in a background process
right after reading it; ``wait_idle()`` waits until its spool is empty. The test directory
is removed at the end, once Exim has finished (no process is started by the helper itself:
``exim -bS`` is run by the plugin under test, and its delivery processes end by themselves).

Options: ``message_size_limit`` (e.g. ``"20K"``), ``recipients_max`` (an int), and
``refuse_sender`` / ``refuse_recipient``: an address the non-SMTP ACL refuses with
``550 sender refused by exim-test`` / ``550 recipient refused by exim-test``;
``slow_delivery`` (seconds): recipients at ``slow.example`` are delivered by a pipe that
sleeps that long, then writes the message to ``<dir>/slow/<exim id>``.

``make_private_exim(install, directory, **options)`` does the same without a test case
(``bench/backend_exim.py``); it also takes ``queue_only``. The configuration also lets
``exim -bdf`` (Exim's SMTP daemon) accept every recipient, for the benchmark's comparison.

If Exim cannot be fetched (no apt-get, no network) the tests that need it are skipped with
the reason.
"""

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time

from twisted.trial.unittest import SkipTest

from tests.support.harness import maildir_messages
from tests.support.processes import poll_until, read_text

PACKAGES = ("exim4-daemon-light", "libnss-wrapper")
#: dependencies of exim4-daemon-light never needed to run ``exim -bS`` from the unpacked copy
_NOT_NEEDED = {"exim4-base", "debconf", "debconf-2.0", "cdebconf"}
CACHE = "/tmp/qpsmtpd-tx-exim-%d" % os.geteuid()

CONFIG = """\
# written by tests/support/exim.py for one test
exim_path = {binary}
keep_environment = LD_LIBRARY_PATH : LD_PRELOAD : NSS_WRAPPER_PASSWD : NSS_WRAPPER_GROUP
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
primary_hostname = exim-test.example
qualify_domain = example.com
trusted_users = {caller}
deliver_drop_privilege
host_lookup =
rfc1413_hosts =
{limits}
received_header_text = Received: by exim-test with $received_protocol id $message_exim_id
acl_not_smtp = acl_check_not_smtp
# only for "exim -bd" (bench/backend_exim.py's baseline); -bS does not use them
acl_smtp_rcpt = acl_check_rcpt
smtp_accept_max = 200
smtp_accept_queue_per_connection = 0

begin acl

acl_check_rcpt:
  accept

acl_check_not_smtp:
{acl}  accept

begin routers
{slow_router}{dkim_router}
everything:
  driver = accept
  transport = maildir

begin transports
{slow_transport}{dkim_transport}
maildir:
  driver = appendfile
  directory = {dir}/maildir
  maildir_format
  envelope_to_add
  return_path_add
  user = {uid}
  group = {gid}
  mode = 0644

begin retry

*  *  F,1h,10m
"""


class EximUnavailable(Exception):
    """Exim could not be fetched or unpacked here."""


def _run(argv, cwd=None):
    result = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    return result.returncode, result.stdout.decode("utf-8", "replace")


def _installed(package):
    code, out = _run(["dpkg-query", "-W", "-f=${Status}", package])
    return code == 0 and out.strip() == "install ok installed"


def _download(packages, directory):
    argv = ["apt-get", "download", "-q"] + list(packages)
    code, out = _run(argv, cwd=directory)
    if code != 0 and os.geteuid() == 0:
        # a fresh machine may have no package lists yet
        _run(["apt-get", "update", "-qq"])
        code, out = _run(argv, cwd=directory)
    if code != 0:
        raise EximUnavailable("apt-get download %s failed: %s" % (" ".join(packages), out.strip()))


def _missing_dependencies(deb):
    """Packages ``deb`` depends on (first alternatives) that are not installed here."""
    code, out = _run(["dpkg-deb", "-f", deb, "Pre-Depends", "Depends"])
    if code != 0:
        raise EximUnavailable("dpkg-deb -f %s: %s" % (deb, out.strip()))
    missing = []
    for line in out.splitlines():
        value = line.split(":", 1)[1] if ":" in line.split(" ")[0] else line
        for alternatives in value.split(","):
            name = alternatives.split("|")[0].strip().split(" ")[0].split(":")[0]
            if name and name not in _NOT_NEEDED and not _installed(name):
                missing.append(name)
    return missing


def _fetch_with_dependencies(directory):
    """Download PACKAGES and, recursively, their dependencies that are not installed."""
    _download(PACKAGES, directory)
    inspected, fetched = set(), set(PACKAGES)
    while True:
        new = set()
        for name in sorted(os.listdir(directory)):
            if name in inspected:
                continue
            inspected.add(name)
            new.update(_missing_dependencies(os.path.join(directory, name)))
        new -= fetched
        if not new:
            return
        fetched |= new
        _download(sorted(new), directory)


def _check_owned(path):
    info = os.lstat(path)
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid()
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        raise EximUnavailable("%s is not a directory owned by uid %d and writable only by it: "
                              "remove it" % (path, os.geteuid()))


def _write_nss_files(directory):
    """passwd/group for nss_wrapper: the system's entries plus ``Debian-exim``."""
    me = os.geteuid()
    exim_uid, exim_gid = (65534, 65534) if me == 0 else (me, os.getegid())
    users = {p.pw_name: p for p in pwd.getpwall()}
    lines = ["%s:x:%d:%d:%s:%s:%s" % (p.pw_name, p.pw_uid, p.pw_gid, p.pw_gecos, p.pw_dir,
                                      p.pw_shell) for p in users.values()
             if p.pw_name != "Debian-exim"]
    if not any(p.pw_uid == me for p in users.values()):
        lines.append("qptx-caller:x:%d:%d::/nonexistent:/bin/false" % (me, os.getegid()))
    lines.append("Debian-exim:x:%d:%d:Exim for qpsmtpd-tx tests:/nonexistent:/bin/false"
                 % (exim_uid, exim_gid))
    with open(os.path.join(directory, "passwd"), "w") as f:
        f.write("\n".join(lines) + "\n")
    groups = [g for g in grp.getgrall() if g.gr_name != "Debian-exim"]
    glines = ["%s:x:%d:%s" % (g.gr_name, g.gr_gid, ",".join(g.gr_mem)) for g in groups]
    glines.append("Debian-exim:x:%d:" % exim_gid)
    with open(os.path.join(directory, "group"), "w") as f:
        f.write("\n".join(glines) + "\n")


class EximInstall:
    """The unpacked Exim: ``binary`` (the real one), ``command`` (the script to run)."""

    def __init__(self, directory):
        self.dir = directory
        self.binary = os.path.join(directory, "root", "usr", "sbin", "exim4")
        self.command = os.path.join(directory, "bin", "exim")


def exim_install():
    """The cached private Exim, fetched and unpacked first if needed; EximUnavailable if not."""
    ready = os.path.join(CACHE, "ready")
    if os.path.exists(ready):
        _check_owned(CACHE)
        return EximInstall(CACHE)
    for tool in ("apt-get", "dpkg-deb", "dpkg-query"):
        if shutil.which(tool) is None:
            raise EximUnavailable("%s not found (Debian's Exim is fetched with apt-get)" % tool)
    work = tempfile.mkdtemp(prefix="qpsmtpd-tx-exim-new-", dir="/tmp")
    try:
        os.chmod(work, 0o755)
        debs = os.path.join(work, "debs")
        os.mkdir(debs)
        _fetch_with_dependencies(debs)
        root = os.path.join(work, "root")
        for name in sorted(os.listdir(debs)):
            code, out = _run(["dpkg", "-x", os.path.join(debs, name), root])
            if code != 0:
                raise EximUnavailable("dpkg -x %s: %s" % (name, out.strip()))
        shutil.rmtree(debs)
        install = EximInstall(work)
        os.chmod(install.binary, 0o755)          # no setuid bit: see the module docstring
        _write_nss_files(work)
        libdir = os.path.join(CACHE, "root", "usr", "lib", "x86_64-linux-gnu")
        for candidate in os.listdir(os.path.join(root, "usr", "lib")):
            if os.path.exists(os.path.join(root, "usr", "lib", candidate, "libnss_wrapper.so")):
                libdir = os.path.join(CACHE, "root", "usr", "lib", candidate)
        os.mkdir(os.path.join(work, "bin"))
        with open(install.command, "w") as f:
            f.write("#!/bin/sh\n"
                    "# Debian's exim4 from %(cache)s/root, with its libraries and a private\n"
                    "# passwd (tests/support/exim.py)\n"
                    "LD_LIBRARY_PATH=%(lib)s NSS_WRAPPER_PASSWD=%(cache)s/passwd "
                    "NSS_WRAPPER_GROUP=%(cache)s/group LD_PRELOAD=%(lib)s/libnss_wrapper.so\n"
                    "export LD_LIBRARY_PATH NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP LD_PRELOAD\n"
                    "exec %(cache)s/root/usr/sbin/exim4 \"$@\"\n" % {"cache": CACHE, "lib": libdir})
        os.chmod(install.command, 0o755)
        with open(os.path.join(work, "ready"), "w") as f:
            f.write("%s\n" % time.ctime())
        try:
            os.rename(work, CACHE)
        except OSError:
            if not os.path.exists(ready):          # not a concurrent run that got there first
                raise
        else:
            work = None
    finally:
        if work is not None:
            shutil.rmtree(work, True)
    _check_owned(CACHE)
    return EximInstall(CACHE)


class PrivateExim:
    """One test's Exim configuration: ``config``, ``command``, ``dir``, ``maildir``."""

    def __init__(self, install, directory):
        self.install = install
        self.command = install.command
        self.dir = directory
        self.config = os.path.join(directory, "exim.conf")
        self.maildir = os.path.join(directory, "maildir")
        self.spool_input = os.path.join(directory, "spool", "input")

    def plugin_line(self, extra=""):
        """The ``plugins`` line for queue/exim-bsmtp with this Exim (``extra``: before -C)."""
        return ("queue/exim-bsmtp exim_path %s %s -C %s" % (self.command, extra, self.config)
                ).replace("  ", " ")

    def run(self, args, stdin=b""):
        """Run this Exim synchronously (for checks outside the reactor): (status, output)."""
        result = subprocess.run([self.command, "-C", self.config] + list(args), input=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return result.returncode, result.stdout

    def queued(self):
        """Message ids still in Exim's spool (received, not yet completely delivered)."""
        try:
            names = os.listdir(self.spool_input)
        except FileNotFoundError:
            return []
        return sorted(n[:-2] for n in names if n.endswith("-H"))

    def delivered(self):
        """The files in the Maildir's ``new/``, as bytes, sorted by name."""
        return maildir_messages(self.maildir)

    def idle(self):
        """True when nothing is in Exim's spool (every accepted message delivered)."""
        return not self.queued()

    def mainlog(self):
        """The text of Exim's main log so far."""
        return read_text(os.path.join(self.dir, "log", "mainlog"))

    def wait_idle_blocking(self, timeout=20.0):
        """Wait until Exim's queue is empty; True if it is."""
        return poll_until(lambda: not self.queued(), timeout)


DKIM_ROUTER = """
signed_smtp:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = dkim_smtp
"""

DKIM_TRANSPORT = """
dkim_smtp:
  driver = smtp
  port = {3}
  allow_localhost
  hosts_avoid_tls = *
  dkim_domain = {0}
  dkim_selector = {1}
  dkim_private_key = {2}
  dkim_canon = relaxed
"""

SLOW_ROUTER = """
slow:
  driver = accept
  domains = slow.example
  transport = slow_pipe
"""

SLOW_TRANSPORT = """
slow_pipe:
  driver = pipe
  command = /bin/sh -c "sleep {seconds}; cat > {dir}/slow/$message_exim_id"
  message_prefix =
  message_suffix =
  user = {uid}
  group = {gid}
"""


def private_exim(testcase, **options):
    """A fresh private Exim configuration for ``testcase``; SkipTest if Exim is unavailable.

    ``options``: see :func:`make_private_exim`.
    """
    try:
        install = exim_install()
    except EximUnavailable as e:
        raise SkipTest("no private Exim: %s" % e)
    directory = tempfile.mkdtemp(prefix="qptx-exim-")
    # Registered first, so it runs last: after the server is gone, once Exim has delivered.
    testcase.addCleanup(shutil.rmtree, directory, True)
    exim = make_private_exim(install, directory, **options)
    testcase.addCleanup(exim.wait_idle_blocking, 10.0)
    return exim


def make_private_exim(install, directory, message_size_limit=None, recipients_max=None,
                      refuse_sender=None, refuse_recipient=None, slow_delivery=None,
                      queue_only=False, dkim_sign=None, settings=()):
    """Write a private Exim configuration into the (existing, empty) ``directory``.

    ``queue_only``: Exim keeps each message in its spool instead of delivering it (for
    benchmarks of reception alone). ``dkim_sign``: ``(domain, selector, key file, port)``:
    every message goes by SMTP to 127.0.0.1 at ``port``, signed by Exim's smtp transport
    (``dkim_*`` options, relaxed/relaxed). ``settings``: more main configuration lines
    (e.g. ``"smtp_accept_max_per_connection = 1"``). The other options: see the module
    docstring.
    """
    os.chmod(directory, 0o755)
    exim = PrivateExim(install, directory)
    me = os.geteuid()
    if me == 0:
        caller, uid, gid = "root", 65534, 65534         # nobody, as Debian-exim
    else:
        caller = pwd.getpwuid(me).pw_name if _has_passwd(me) else "qptx-caller"
        uid, gid = me, os.getegid()
    for sub in ("spool", "log", "maildir", "slow"):
        path = os.path.join(directory, sub)
        os.mkdir(path)
        os.chown(path, uid, gid)
    limits = []
    if message_size_limit is not None:
        limits.append("message_size_limit = %s" % message_size_limit)
    if recipients_max is not None:
        limits.append("recipients_max = %d" % recipients_max)
    if queue_only:
        limits.append("queue_only")
    limits.extend(settings)
    acl = ""
    if refuse_sender:
        acl += "  deny senders = %s\n       message = sender refused by exim-test\n" % refuse_sender
    if refuse_recipient:
        acl += ("  deny condition = ${if inlisti{%s}{<, $recipients}}\n"
                "       message = recipient refused by exim-test\n" % refuse_recipient)
    with open(exim.config, "w") as f:
        f.write(CONFIG.format(
            binary=install.binary, dir=directory, caller=caller, uid=uid, gid=gid,
            limits="\n".join(limits), acl=acl,
            dkim_router=DKIM_ROUTER if dkim_sign else "",
            dkim_transport=DKIM_TRANSPORT.format(*dkim_sign) if dkim_sign else "",
            slow_router=SLOW_ROUTER if slow_delivery else "",
            slow_transport=SLOW_TRANSPORT.format(seconds=slow_delivery, dir=directory, uid=uid,
                                                 gid=gid) if slow_delivery else ""))
    os.chmod(exim.config, 0o644)
    return exim


def _has_passwd(uid):
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False
