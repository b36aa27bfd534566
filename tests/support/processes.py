"""Starting and stopping real server processes for end-to-end tests.

Each helper starts exactly one process on 127.0.0.1, waits until it accepts connections, and
stops exactly that process (by its PID) when the test ends.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import time

from tests.support import resolv_conf

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


#: free_port() picks from here up to the kernel's ephemeral range
LOWEST_PORT = 10000


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago, below the kernel's ephemeral range
    (/proc/sys/net/ipv4/ip_local_port_range) when there is room: a port from that range (a
    bind to port 0, the source port of an outgoing connection) may be handed to anyone in the
    moment before the server that is to use it binds it, and under load that moment is long."""
    low = _ephemeral_low()
    if low is not None and low > LOWEST_PORT + 1024:
        for _ in range(100):
            port = random.randrange(LOWEST_PORT, low)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    """The PIDs of process ``pid``'s children (``--workers``), sorted."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())


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


def poll_until(condition, timeout, step=0.05):
    """Call ``condition()`` every ``step`` seconds (blocking) until it is true or ``timeout``
    seconds have passed; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def wait_for_port(port, process, timeout=20.0):
    """Wait until ``port`` accepts connections; raise if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited with status %s before listening" % process.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen on port %d within %.0f s" % (port, timeout))


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


def start_twistd(testcase, config_dir, cwd=None, extra=(), nameservers=None):
    """Start ``twistd -n qpsmtpd-tx`` for a test; stopped at the test's end. Returns (process, port, log).
    With ``nameservers`` (IPs), it runs where /etc/resolv.conf names them (tests.support.resolv_conf)."""
    port = free_port()
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
        wait_for_port(port, process)
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
