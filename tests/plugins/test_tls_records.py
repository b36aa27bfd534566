"""Replies under TLS: a pipelined group is answered in one TLS record, not one per reply.

A real ``twistd qpsmtpd-tx`` with the ``tls`` plugin; the client is Python's ``ssl.SSLObject``
over a plain socket, so the test sees the TLS records the server sends.
"""

import os
import socket
import ssl
import struct

from twisted.trial import unittest

from tests.plugins.test_tls import client_context, plain_socket_after_starttls, write_pair
from tests.support.harness import write_config
from tests.support.processes import start_twistd

GROUP = (b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<u@example.com>\r\n", b"DATA\r\n")


class RecordingTLSClient:
    """A TLS client over ``sock`` that counts the records it receives."""

    def __init__(self, sock):
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_context().wrap_bio(self.incoming, self.outgoing)
        self.raw = b""      # received bytes not yet split into records
        self.records = 0

    def send(self, *chunks):
        """Each chunk in a record of its own, all of them in one socket write."""
        for chunk in chunks:
            self.tls.write(chunk)
        self.flush()

    def flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def receive(self):
        """Read from the socket once; count the complete records; feed them to TLS."""
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.raw += data
        while len(self.raw) >= 5:
            length = struct.unpack("!H", self.raw[3:5])[0]
            if len(self.raw) < 5 + length:
                break
            self.incoming.write(self.raw[:5 + length])
            self.raw = self.raw[5 + length:]
            self.records += 1

    def handshake(self):
        while True:
            try:
                self.tls.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                self.receive()

    def read_until(self, ending):
        """Decrypted text up to and including a line starting with ``ending``."""
        text = b""
        while not (ending in text and text.endswith(b"\r\n")):
            try:
                text += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.receive()
        return text


class ReplyRecordsTests(unittest.TestCase):
    """The replies of one pass go out as one write, hence one TLS record."""

    def test_pipelined_group_in_one_record(self):
        config = os.path.abspath(self.mktemp())
        write_config(config, ["tls", "rcpt_ok", "queue/maildir %s" % os.path.join(config, "md")])
        write_pair(os.path.join(config, "ssl"))
        _, port, _ = start_twistd(self, config)
        sock = plain_socket_after_starttls(self, port)
        client = RecordingTLSClient(sock)
        client.handshake()
        client.send(b"EHLO client.example\r\n")
        client.read_until(b"250 ")
        for chunks in (GROUP, (b"".join(GROUP),)):
            before = client.records
            client.send(*chunks)
            replies = client.read_until(b"354 ")
            self.assertRegex(replies, rb"^250 [^\r\n]*\r\n250 [^\r\n]*\r\n354 [^\r\n]*\r\n$")
            self.assertEqual(client.records - before, 1, (len(chunks), replies))
            client.send(b"Subject: t\r\n\r\nbody\r\n.\r\n")
            self.assertRegex(client.read_until(b"250 "), rb"^250 Queued")
