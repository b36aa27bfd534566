"""A client silent in the middle of a TLS handshake (an SMTPS connect, or after STARTTLS's 220)
is closed by the idle timeout (``timeout``, 2 s here), not only by the handshake's own limit
(``command_deadline``, 120 s here): no 421 can reach it there, so the connection is aborted
and the log says why. A real ``twistd qpsmtpd-tx`` with the tls plugin; raw sockets."""

import os
import socket

from twisted.trial import unittest

from tests.plugins.test_tls import write_pair
from tests.support.harness import write_config
from tests.support.processes import poll_until, read_text, reserve_port, start_twistd

#: seconds a read waits: far less than command_deadline, far more than timeout
WAIT = 30.0
LINE = "silent during the TLS handshake for 2 s, closing"


def closed(sock):
    """True once the server has closed ``sock`` (reads b"" or a reset within WAIT)."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        return False
    return True


class SilentHandshakeTests(unittest.TestCase):
    def setUp(self):
        config = os.path.join(os.path.abspath(self.mktemp()), "config")
        write_config(config, ["tls", "rcpt_ok"], {"timeout": "2", "command_deadline": "120",
                                                   "loglevel": "LOGINFO"})
        write_pair(os.path.join(config, "ssl"))
        self.smtps = reserve_port(self)
        _, self.port, self.log = start_twistd(
            self, config, extra=["--listen-tls", "tcp:%d:interface=127.0.0.1" % self.smtps])

    def connect(self, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.addCleanup(sock.close)
        return sock

    def assertClosedByIdleTimeout(self, sock):
        self.assertTrue(closed(sock))
        self.assertTrue(poll_until(lambda: LINE in read_text(self.log), WAIT))
        log = read_text(self.log)
        self.assertNotIn("TLS handshake not complete", log)
        self.assertNotIn("421 Connection Timed Out", log)       # (it could not be sent)

    def test_smtps_client_that_never_starts_the_handshake(self):
        self.assertClosedByIdleTimeout(self.connect(self.smtps))
        self.assertNotIn("click, disconnecting", read_text(self.log))    # no connect hook ran

    def test_starttls_client_silent_after_the_220(self):
        sock = self.connect(self.port)
        sock.recv(4096)
        sock.sendall(b"EHLO client.example\r\n")
        self.assertTrue(poll_until(lambda: "250 STARTTLS" in read_text(self.log), WAIT))
        sock.sendall(b"STARTTLS\r\n")
        self.assertTrue(poll_until(lambda: "220 Go ahead with TLS" in read_text(self.log), WAIT))
        self.assertClosedByIdleTimeout(sock)
