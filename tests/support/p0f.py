"""A private p0f 3 (Debian's /usr/sbin/p0f) for the tests of ident/p0f: it sniffs the
loopback interface for one TCP port and answers on an API socket in its own temp directory.
Sniffing needs CAP_NET_RAW (the suite runs as root); where p0f cannot run, the test is
skipped with p0f's own words."""

import os
import shutil
import struct
import tempfile

from twisted.trial.unittest import SkipTest

from tests.support.daemon import PrivateDaemon, die_with_parent, spawn, wait_started
from tests.support.processes import poll_until

P0F = "/usr/sbin/p0f"
FINGERPRINTS = "/etc/p0f/p0f.fp"


class P0fDaemon(PrivateDaemon):
    """A running p0f; ``socket`` is its API socket."""

    log_files = ("p0f.log",)

    def query(self, ip):
        """p0f's answer about IPv4 address ``ip``, as (status, os_name), asked with a blocking
        socket (p0f answers at once); written from p0f's README, apart from the plugin."""
        import socket
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.socket)
            s.sendall(struct.pack("=IB16s", 0x50304601, 4, socket.inet_aton(ip) + b"\0" * 12))
            data = b""
            while len(data) < 232:
                chunk = s.recv(232 - len(data))
                if not chunk:
                    break
                data += chunk
        status = struct.unpack("=I", data[4:8])[0]
        return status, data[40:72].split(b"\0")[0].decode()


def p0f_socket_path(testcase):
    """A path for p0f's API socket (short enough for a unix socket), removed after the test."""
    directory = tempfile.mkdtemp(prefix="qptx-p0f-")
    testcase.addCleanup(shutil.rmtree, directory, True)
    return os.path.join(directory, "p0f.sock")


def start_p0f(testcase, port, socket_path):
    """Start p0f watching TCP port ``port`` on ``lo``, answering on ``socket_path``; stopped
    when the test ends."""
    if not os.access(P0F, os.X_OK):
        raise SkipTest("p0f is not installed (Debian package p0f)")
    directory = tempfile.mkdtemp(prefix="qptx-p0f-")
    process, started = spawn([P0F, "-i", "lo", "-f", FINGERPRINTS, "-s", socket_path,
                              "tcp port %d" % port], directory, "p0f.log",
                             preexec_fn=die_with_parent)
    daemon = P0fDaemon(directory, None, process)
    daemon.socket = socket_path

    def ready():
        if not poll_until(lambda: os.path.exists(socket_path) or process.poll() is not None, 20, 0.02):
            raise RuntimeError("no API socket after 20 s")
        if process.poll() is not None:
            raise RuntimeError("p0f exited with status %s" % (process.returncode,))

    try:
        wait_started(daemon, "p0f", ready, started)
    except RuntimeError as e:
        raise SkipTest("p0f cannot sniff lo here: %s" % (e,))
    testcase.addCleanup(daemon.stop)
    return daemon
