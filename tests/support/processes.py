"""Starting and stopping real server processes for end-to-end tests.

Each helper starts exactly one process on 127.0.0.1, waits until that process itself listens
and accepts connections, and stops exactly that process (by its PID) when the test ends. The
ports of the servers a test starts are held for them until they listen (:func:`reserve_port`).
"""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from tests.support import resolv_conf

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


#: free_port() picks from here up to the kernel's ephemeral range
LOWEST_PORT = 10000


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago, below the kernel's ephemeral range
    (/proc/sys/net/ipv4/ip_local_port_range) when there is room: a port from that range (a
    bind to port 0, the source port of an outgoing connection) may be handed to anyone in the
    moment before the server that is to use it binds it, and under load that moment is long
    (:func:`reserve_port` holds one until the server listens)."""
    with socket.socket() as s:
        return _bind_low(s)


def _bind_low(s):
    """Bind ``s`` on 127.0.0.1 to a port below the ephemeral range if there is room (else any
    free port); the port."""
    low = _ephemeral_low()
    if low is not None and low > LOWEST_PORT + 1024:
        for _ in range(100):
            port = random.randrange(LOWEST_PORT, low)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


#: port → the socket that holds it for a server not listening yet (:func:`reserve_port`)
_reserved = {}


def reserve_port(testcase=None):
    """A TCP port on 127.0.0.1 for a server that ``testcase`` starts, held until it listens.

    A :func:`free_port` is free only when it is chosen: a twistd takes a second or more to
    bind it (more on a loaded machine), and any process on the machine may take it meanwhile
    (another suite's server, or an outgoing connection's local port). This one stays bound
    here, with SO_REUSEADDR and not listening: the kernel gives it to no other bind to port 0
    and to no outgoing connection, while a server binding it with SO_REUSEADDR (Twisted does)
    can listen on it. :func:`wait_for_port` lets it go once the server listens, the test's
    cleanup in any case (without ``testcase``, as for a daemon shared by the test run:
    :meth:`tests.support.daemon.PrivateDaemon.stop`, or :func:`release_port`). Only for
    servers that bind with SO_REUSEADDR (Twisted, redis-server, clamd …): another one fails
    to bind.
    """
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = _bind_low(s)
    _reserved[port] = s
    if testcase is not None:
        testcase.addCleanup(release_port, port)
    return port


def release_port(port):
    """Stop holding ``port`` (:func:`reserve_port`); nothing if it is not held."""
    s = _reserved.pop(port, None)
    if s is not None:
        s.close()


def _descendants(pid):
    """``pid`` and the PIDs of all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def listens_on(pid, port):
    """True if process ``pid`` or one of its descendants has a TCP socket listening on
    ``port`` (in its network namespace, any address)."""
    inodes = set()
    for name in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add("socket:[%s]" % fields[9])
    if not inodes:
        return False
    for member in _descendants(pid):
        try:
            fds = os.listdir("/proc/%d/fd" % member)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%d/fd/%s" % (member, fd)) in inodes:
                    return True
            except OSError:
                pass
    return False


def listening_sockets(port):
    """How many sockets listen on TCP ``port`` (IPv4), from /proc/net/tcp."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    # local address is HEXIP:HEXPORT; state 0A is LISTEN
    return sum(1 for r in rows if int(r[1].split(":")[1], 16) == port and r[3] == "0A")


def _ephemeral_low():
    """The first port of the kernel's ephemeral range, or None if it cannot be read."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_text(path):
    """The text of file ``path`` (undecodable bytes replaced), or "" if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def processes_running(text):
    """The PIDs (as strings) of the processes whose command line contains ``text``."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if text.encode() in f.read():
                        pids.append(pid)
            except OSError:
                pass
    return pids


def child_pids(pid):
    """The PIDs of process ``pid``'s ``--workers`` workers, sorted: its children that run
    ``-m qpsmtpd_tx.worker``. Its Maildir delivery child (:func:`delivery_child_pids`) is not
    one of them, nor is a child that has not exec'ed its program yet (between fork and exec
    it has the server's command line, whichever child it is to become): poll for a count."""
    return [p for p in _children(pid) if _runs_module(p, _WORKER)]


def readable_temp_dir(testcase, prefix):
    """A new directory (mode 755, removed when ``testcase`` ends) for a server that runs as
    another user (``--uid``): trial's temp dir is not readable by it."""
    path = tempfile.mkdtemp(prefix=prefix)
    testcase.addCleanup(shutil.rmtree, path, True)
    os.chmod(path, 0o755)
    return path


def delivery_child_pids(pid):
    """The PIDs of process ``pid``'s children that run the Maildir delivery child
    (``-m qpsmtpd_tx.maildir_child``, exec'ed), sorted."""
    return [p for p in _children(pid) if _runs_module(p, _MAILDIR_CHILD)]


_WORKER = b"qpsmtpd_tx.worker"
_MAILDIR_CHILD = b"qpsmtpd_tx.maildir_child"


def _runs_module(pid, module):
    """Whether process ``pid``'s command line is ``PYTHON -m module ...``."""
    return _cmdline(pid).split(b"\0")[1:3] == [b"-m", module]


def _children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""      # gone


def setenv(testcase, name, value):
    """Set environment variable ``name`` to ``value`` (made a string), or with None unset it,
    until ``testcase`` ends (for the server processes a test starts)."""
    old = os.environ.get(name)
    testcase.addCleanup(_restore_env, name, old)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = str(value)


def _restore_env(name, old):
    if old is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = old


def recv_exactly(sock, count):
    """``count`` bytes from the blocking socket ``sock``; ConnectionError if the peer closes
    it first."""
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        data += chunk
    return data


def poll_until(condition, timeout, step=0.05):
    """Call ``condition()`` every ``step`` seconds (blocking) until it is true or ``timeout``
    seconds have passed; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def wait_for_port(port, process, timeout=20.0, connect=True, address="127.0.0.1"):
    """Wait until ``process`` itself (or a child of it) listens on ``port`` and, with
    ``connect``, accepts a connection there at ``address``; then stop holding the port
    (:func:`reserve_port`). Raise if the process exits or time runs out.

    Only a listener of ``process`` counts (in its own network namespace): another process
    that took the port before the server could bind it also accepts connections, and the test
    would then talk to it, or be refused once it is gone, while the server failed to start.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited with status %s before listening" % process.returncode)
        if listens_on(process.pid, port):
            release_port(port)
            if not connect:
                return
            try:
                with socket.create_connection((address, port), timeout=0.5):
                    return
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError("server did not listen on %s port %d within %.0f s"
                       % (address, port, timeout))


def stop_process(process, timeout=10.0, sig=signal.SIGTERM):
    """``sig`` (SIGTERM), then SIGKILL if it does not exit in time; return the exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def twistd_argv(config_dir, port, extra=()):
    """The command line of a foreground ``twistd qpsmtpd-tx`` on 127.0.0.1:``port``."""
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    return [twistd, "-n", "--pidfile=", "qpsmtpd-tx", "--config", config_dir,
            "--listen", "tcp:%d:interface=127.0.0.1" % port] + list(extra)


def server_env():
    """The environment for a server child: the checkout importable, no stray qpsmtpd config."""
    env = dict(os.environ)
    env["PYTHONPATH"] = CHECKOUT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("QPSMTPD_CONFIG", None)
    return env


def _endpoint_ports(args):
    """The ports of the ``tcp:PORT…`` endpoints that options ``--listen…`` in ``args`` name."""
    return [int(m.group(1)) for option, value in zip(args, args[1:])
            if option.startswith("--listen")
            for m in [re.match(r"tcp6?:(\d+)", value)] if m and int(m.group(1))]


def start_twistd(testcase, config_dir, cwd=None, extra=(), nameservers=None, probe=True):
    """Start ``twistd -n qpsmtpd-tx`` for a test; stopped at the test's end. Returns (process, port, log).
    With ``nameservers`` (IPs), it runs where /etc/resolv.conf names them (tests.support.resolv_conf).
    ``probe=False``: ready once it listens, without a connection of ours (which the server
    counts until it has seen it close: a test of per-IP limits would find it there)."""
    port = reserve_port(testcase)
    argv = twistd_argv(config_dir, port, extra)
    if nameservers is not None:
        argv = resolv_conf.for_test(testcase, nameservers, argv)
    log_path = os.path.abspath(testcase.mktemp() + ".log")
    log = open(log_path, "wb")
    process = subprocess.Popen(argv, cwd=cwd or CHECKOUT,
                               env=server_env(), stdout=log, stderr=subprocess.STDOUT)
    testcase.addCleanup(log.close)
    testcase.addCleanup(stop_process, process)
    try:
        wait_for_port(port, process, connect=probe)
        # the other TCP endpoints (--listen-tls …): bound at once after the first one
        for other in _endpoint_ports(extra):
            wait_for_port(other, process, connect=False)
    except RuntimeError:
        stop_process(process)
        with open(log_path, "rb") as f:
            raise RuntimeError(f.read().decode(errors="replace"))
    return process, port, log_path


def start_maildir_twistd(testcase, extra=(), loglevel="5"):
    """``twistd qpsmtpd-tx`` with ``rcpt_ok`` and ``queue/maildir`` on a temporary config that
    logs at ``loglevel``; returns (process, port, log path, Maildir path)."""
    from tests.support.harness import write_config
    root = os.path.abspath(testcase.mktemp())
    maildir = os.path.join(root, "maildir")
    write_config(os.path.join(root, "config"), ["rcpt_ok", "queue/maildir %s" % maildir],
                 {"loglevel": loglevel})
    process, port, log = start_twistd(testcase, os.path.join(root, "config"), extra=extra)
    return process, port, log, maildir
