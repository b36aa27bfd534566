"""The STARTTLS layer (``qpsmtpd_tx/tls_transport.py``) at its edges: the close_notify
exchange in both directions, a broken record after the handshake, several records in one read.

A real ``twistd qpsmtpd-tx`` with the ``tls`` plugin; the client is Python's ssl module.
"""

import os
import socket
import ssl

from twisted.trial import unittest

from tests.plugins.test_tls import (WAIT, client_context, delivered, plain_socket_after_starttls,
                                    recv_until_closed_or, write_pair)
from tests.plugins.test_tls_records import RecordingTLSClient
from tests.support.harness import write_config
from tests.support.processes import read_text, start_twistd


class StartTLSTransportTests(unittest.TestCase):
    """Closing and failing on TLS, and what one read of several records gives the session."""

    def setUp(self):
        config = os.path.abspath(self.mktemp())
        self.maildir = os.path.join(config, "maildir")
        write_config(config, ["tls", "rcpt_ok", "queue/maildir %s" % self.maildir],
                     {"loglevel": "LOGINFO"})
        write_pair(os.path.join(config, "ssl"))
        _, self.port, self.log = start_twistd(self, config)

    def starttls(self):
        """A plain socket that has said EHLO and STARTTLS (the 220 read)."""
        return plain_socket_after_starttls(self, self.port)

    def test_quit_then_close_notify_from_the_server(self):
        """After 221 the server sends close_notify; the client's answer closes the connection."""
        tls = client_context().wrap_socket(self.starttls())
        tls.sendall(b"EHLO client.example\r\nQUIT\r\n")
        self.assertIn(b"221 ", recv_until_closed_or(tls, rb"221 [^\r\n]*\r\n"))
        plain = tls.unwrap()        # reads the server's close_notify, sends ours
        plain.settimeout(WAIT)
        self.assertEqual(plain.recv(100), b"")

    def test_client_closing_tcp_after_quit_without_close_notify(self):
        """Most clients (smtplib, swaks) read the 221 and close TCP without a close_notify of
        their own: once the client has closed its side, the server closes at once, instead of
        waiting for a close_notify that can no longer come."""
        tls = client_context().wrap_socket(self.starttls())
        tls.sendall(b"EHLO client.example\r\nQUIT\r\n")
        self.assertIn(b"221 ", recv_until_closed_or(tls, rb"221 [^\r\n]*\r\n"))
        tls.settimeout(WAIT)
        self.assertEqual(tls.recv(100), b"")      # the server's close_notify
        tls.shutdown(socket.SHUT_WR)              # a TCP FIN, no close_notify of ours
        self.assertEqual(tls.recv(100), b"")      # the server's close (not a timeout)

    def test_close_notify_from_the_client(self):
        """A client that ends TLS first gets the server's close_notify, then the close."""
        tls = client_context().wrap_socket(self.starttls())
        tls.sendall(b"EHLO client.example\r\n")
        recv_until_closed_or(tls, rb"250 [^\r\n]*\r\n$")
        plain = tls.unwrap()
        plain.settimeout(WAIT)
        self.assertEqual(plain.recv(100), b"")
        self.assertNotIn("Traceback", read_text(self.log))

    def test_broken_record_after_the_handshake(self):
        """Garbage where a TLS record should be: the connection is dropped, nothing answered,
        and the server goes on serving."""
        sock = self.starttls()
        client = RecordingTLSClient(sock)
        client.handshake()
        sock.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)    # a record that does not decrypt
        self.assertNotIn(b"250", recv_until_closed_or(sock, rb"(?!)"))
        tls = client_context().wrap_socket(self.starttls())
        tls.sendall(b"NOOP\r\n")
        self.assertTrue(recv_until_closed_or(tls, rb"\r\n").startswith(b"250"))
        self.assertNotIn("Traceback", read_text(self.log))

    def test_message_in_many_records(self):
        """A message split into many small records, all sent at once, arrives whole."""
        client = RecordingTLSClient(self.starttls())
        client.handshake()
        client.send(b"EHLO client.example\r\n")
        client.read_until(b"250 ")
        lines = [b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<u@example.com>\r\n", b"DATA\r\n"]
        client.send(*lines)
        client.read_until(b"354 ")
        body = [b"Subject: records\r\n", b"\r\n"] + [b"line %d\r\n" % i for i in range(50)]
        client.send(*(body + [b".\r\n"]))
        self.assertRegex(client.read_until(b"250 "), rb"^250 Queued")
        message = delivered(self.maildir)
        self.assertIn(b"Subject: records\n\nline 0\n", message)
        self.assertIn(b"line 49\n", message)
