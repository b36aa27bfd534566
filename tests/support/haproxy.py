"""A private HAProxy (Debian package ``haproxy``) in front of qpsmtpd-tx servers.

``start_haproxy(testcase, backends)`` writes a config of its own into a fresh temp directory,
runs ``/usr/sbin/haproxy -db`` (foreground) on it and stops exactly that process, by its PID,
at the end of the test. TCP mode: a frontend on ``bind`` (127.0.0.1, or ``::1``) and a free port,
balanced round-robin over ``backends`` (``(address, port)``), each sent the PROXY header of
``send_proxy`` (``send-proxy`` for version 1, ``send-proxy-v2``). With ``check``, HAProxy
checks each backend every ``check_ms`` milliseconds by connecting to it (a plain TCP check:
the connection is closed before any header) and redispatches a connection that a dead
backend refused to the next one. Without the package, the test is skipped with the reason.
"""

import os
import socket
import tempfile

from twisted.trial.unittest import SkipTest

from tests.support.daemon import PrivateDaemon, die_with_parent, spawn, wait_started
from tests.support.processes import poll_until, release_port, reserve_port

HAPROXY = "/usr/sbin/haproxy"

CONFIG = """\
global
    maxconn 1000

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch

frontend smtp
    bind {bind}:{port}
    default_backend qpsmtpd_tx

backend qpsmtpd_tx
    balance roundrobin
{servers}
"""


class HAProxy(PrivateDaemon):
    """A running private haproxy: its frontend at ``bind``:``port``."""

    log_files = ("haproxy.out",)
    stop_timeout = 5.0


def config_text(port, backends, send_proxy, check, check_ms, bind="127.0.0.1"):
    """The haproxy.cfg of :func:`start_haproxy`."""
    options = send_proxy + (" check inter %dms fall 1 rise 1" % check_ms if check else "")
    servers = "\n".join("    server s%d %s:%d %s" % (n, address, backend_port, options)
                        for n, (address, backend_port) in enumerate(backends, 1))
    return CONFIG.format(bind="[%s]" % bind if ":" in bind else bind, port=port, servers=servers)


def accepting(address, port, process, timeout=30):
    """Wait until haproxy accepts connections on ``address``:``port``; RuntimeError if it
    exits or does not within ``timeout`` seconds."""
    def connects():
        if process.poll() is not None:
            raise RuntimeError("haproxy exited with status %s" % process.returncode)
        try:
            socket.create_connection((address, port), timeout=0.5).close()
            return True
        except OSError:
            return False
    if not poll_until(connects, timeout):
        raise RuntimeError("haproxy did not listen on %s port %d" % (address, port))


def start_haproxy(testcase, backends, send_proxy="send-proxy-v2", check=False, check_ms=200,
                  bind="127.0.0.1"):
    """Start haproxy for ``testcase`` (stopped at its end); the :class:`HAProxy`."""
    if not os.path.exists(HAPROXY):
        raise SkipTest("haproxy is not installed (apt-get install haproxy)")
    directory = tempfile.mkdtemp(prefix="qptx-haproxy-")
    port = reserve_port(testcase)
    path = os.path.join(directory, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(config_text(port, backends, send_proxy, check, check_ms, bind))
    process, started = spawn([HAPROXY, "-db", "-f", path], directory, "haproxy.out",
                             preexec_fn=die_with_parent)
    haproxy = HAProxy(directory, port, process)
    wait_started(haproxy, "haproxy", lambda: accepting(bind, port, process), started)
    release_port(port)
    testcase.addCleanup(haproxy.stop)
    return haproxy
