"""``--max-from-ip`` and connections that are closing: a session that has sent its final reply
(221 after QUIT, a 421) no longer counts for its IP, even while its TLS shutdown waits for the
client; and such a connection is closed for good within ``command_deadline``.

A real ``twistd qpsmtpd-tx`` with the ``tls`` plugin and ``--max-from-ip 2``; the clients are
Python's ssl over real sockets, one that never answers the server's close_notify.
"""

import os
import socket

from twisted.trial import unittest

from tests.plugins.test_tls import WAIT, client_context, recv_until_closed_or, write_pair
from tests.support.harness import write_config
from tests.support.processes import poll_until, read_text, start_twistd


class ClosingConnectionsTests(unittest.TestCase):
    """Two STARTTLS clients that QUIT and then neither read nor close: a third one is served."""

    def setUp(self):
        config = os.path.abspath(self.mktemp())
        write_config(config, ["tls", "rcpt_ok"], {"loglevel": "LOGINFO", "command_deadline": "3"})
        write_pair(os.path.join(config, "ssl"))
        _, self.port, self.log = start_twistd(self, config, extra=["--max-from-ip", "2"])
        # start_twistd's readiness probe is a connection from 127.0.0.1 too: let it end first
        self.assertTrue(poll_until(lambda: "cleaning up after" in read_text(self.log), WAIT, 0.05))

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        self.addCleanup(sock.close)
        return sock, recv_until_closed_or(sock, rb"\r\n")

    def quit_without_tls_shutdown(self):
        """A client that says QUIT on TLS, reads the 221 and then leaves the connection open
        without answering the server's close_notify. Returns a plain socket on the same
        connection (a dup of the TLS socket's descriptor), to see when the server closes it."""
        sock, greeting = self.connect()
        self.assertTrue(greeting.startswith(b"220 "), greeting)
        sock.sendall(b"EHLO client.example\r\n")
        recv_until_closed_or(sock, rb"250 [^\r\n]*\r\n$")
        sock.sendall(b"STARTTLS\r\n")
        self.assertEqual(recv_until_closed_or(sock, rb"\r\n"), b"220 Go ahead with TLS\r\n")
        tls = client_context().wrap_socket(sock)
        self.addCleanup(tls.close)
        tls.sendall(b"QUIT\r\n")
        self.assertTrue(recv_until_closed_or(tls, rb"\r\n").startswith(b"221 "))
        raw = socket.socket(fileno=os.dup(tls.fileno()))
        self.addCleanup(raw.close)
        return raw

    def test_closing_sessions_do_not_count(self):
        held = [self.quit_without_tls_shutdown() for _ in range(2)]
        sock, greeting = self.connect()
        self.assertTrue(greeting.startswith(b"220 "), greeting)
        # the limit still holds for sessions that are not closing
        second, greeting = self.connect()
        self.assertTrue(greeting.startswith(b"220 "), greeting)
        third, greeting = self.connect()
        self.assertTrue(greeting.startswith(b"451 too many connections from 127.0.0.1"),
                        greeting)
        # the held connections are closed by the server within command_deadline (3 s here)
        for raw in held:
            raw.settimeout(WAIT)
            try:
                while raw.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        self.assertIn("close not complete within 3 s", read_text(self.log))
        self.assertNotIn("Traceback", read_text(self.log))
