"""A client that half-closes its connection (TCP FIN after its last command) still gets every
reply: Exim 4.96 pipelines QUIT after the final dot and then shuts down its sending side; a
data_post hook still working on the message must not turn that into a lost connection (Exim
saw "Remote host closed connection in response to end of data" and deferred the message)."""

import socket

from twisted.internet import threads
from twisted.trial import unittest

from tests.support.server import start_server


def talk(port, data):
    """Send ``data``, half-close, and read until the server closes; the bytes read."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.recv(1024)                        # the greeting
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return received
            received += chunk


class HalfCloseTests(unittest.TestCase):
    def serve(self):
        self.server, self.port = start_server(self, [
            "rcpt_ok", "scripted data_post DECLINED delay 0.2", "scripted queue OK Queued"])

    async def test_replies_after_the_clients_fin(self):
        self.serve()
        data = (b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.com>\r\n"
                b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        replies = (await threads.deferToThread(talk, self.port, data)).decode().splitlines()
        self.assertEqual([r[:3] for r in replies if r[3:4] == " "],
                         ["250", "250", "250", "354", "250", "221"])
        self.assertIn("250 Queued", replies)

    async def test_fin_in_the_middle_of_a_message(self):
        self.serve()
        data = (b"HELO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.com>\r\n"
                b"DATA\r\nSubject: x\r\n\r\nbody without an end\r\n")
        replies = (await threads.deferToThread(talk, self.port, data)).decode().splitlines()
        self.assertEqual([r[:3] for r in replies], ["250", "250", "250", "354"])
