"""A private Redis for the tests (Debian package ``redis-server``).

``shared_redis()`` starts one ``redis-server`` per test run, the first time a test asks for
it, and stops exactly that process (by its PID) when the test process exits;
``start_redis()`` starts one of a test's own (to kill it in the middle of a test). Private:
a fresh temp directory as its working directory, 127.0.0.1 (and the addresses a test asks
for, e.g. the host ends of tests/support/netns.py's namespaces) on a free port (redis-server
cannot be given port 0), no persistence (``--save ''``, no AOF), no unix socket.
Without the package, the tests that need it are skipped with the reason.
"""

import os
import socket
import tempfile

from twisted.trial.unittest import SkipTest

from tests.support.daemon import PrivateDaemon, die_with_parent, listening, spawn, wait_started
from tests.support.processes import reserve_port
from tests.support.shared import SharedDaemon

REDIS_SERVER = "/usr/bin/redis-server"


class Redis(PrivateDaemon):
    """A running private redis-server: ``port``, ``url`` (``redis://127.0.0.1:PORT/0``)."""

    log_files = ("redis.log",)

    @property
    def url(self):
        """``redis://127.0.0.1:PORT/0``."""
        return "redis://127.0.0.1:%d/0" % self.port

    def command(self, *words):
        """Send one command in Redis's inline form, blocking; the first line of the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall((" ".join(words) + "\r\n").encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data.decode().split("\r\n", 1)[0]

    def flush(self):
        """Remove every key."""
        self.command("FLUSHALL")


def start_redis(port=None, also_bind=()):
    """Start a private redis-server (on ``port``, else a free one; on 127.0.0.1 and the
    addresses ``also_bind``); SkipTest if it is not installed. The caller stops it."""
    if not os.path.exists(REDIS_SERVER):
        raise SkipTest("redis-server is not installed (apt-get install redis-server; "
                       ".ci/run does)")
    directory = tempfile.mkdtemp(prefix="qptx-redis-")
    port = port or reserve_port()
    process, started = spawn(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", *also_bind, "--save", "",
         "--appendonly", "no", "--dir", directory, "--daemonize", "no",
         "--logfile", os.path.join(directory, "redis.log"),
         # else clients of the other addresses (no password) get DENIED
         "--protected-mode", "no" if also_bind else "yes"],
        directory, "redis.out", preexec_fn=die_with_parent)
    redis = Redis(directory, port, process)
    return wait_started(redis, "redis-server", listening(redis, 30), started)


#: the redis-server of this test run: ``shared_redis()`` starts it at the first call
shared_redis = SharedDaemon("redis-server", start_redis).get
