"""queue/maildir's two delivery paths, end to end over a real socket: a body held in memory
(written and committed by the delivery child process) and a body spooled to a file
(the I/O thread pool), each with one and with several per-recipient copies."""

import os
import smtplib

from twisted.internet import threads
from twisted.trial import unittest

from tests.support.harness import maildir_messages
from tests.support.server import start_server

SMALL = b"Subject: small\r\n\r\n" + b"line of the body\r\n" * 10
#: above the size_threshold the tests set, so it is spooled to a file
LARGE = b"Subject: large\r\n\r\n" + (b"y" * 70 + b"\r\n") * 200


def send(port, recipients, message):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return client.sendmail("a@b.example", recipients, message)


class DeliveryPathTests(unittest.TestCase):
    def start(self, pattern=""):
        self.maildir = os.path.abspath(self.mktemp())
        plugin = ("queue/maildir %s %s" % (self.maildir, pattern)).strip()
        _, port = start_server(self, ["rcpt_ok", plugin], {"size_threshold": "4096"})
        return port

    def bodies(self, maildir):
        return [m.decode() for m in maildir_messages(maildir)]

    async def check(self, message, word):
        port = self.start()
        self.assertEqual(await threads.deferToThread(send, port, ["u@example.com"], message), {})
        [body] = self.bodies(self.maildir)
        self.assertIn(word, body)
        self.assertEqual(os.listdir(os.path.join(self.maildir, "tmp")), [])

    async def test_small_message(self):
        await self.check(SMALL, "line of the body")

    async def test_spooled_message(self):
        await self.check(LARGE, "yyyy")

    async def test_copies_per_recipient(self):
        port = self.start("%l")
        for message in (SMALL, LARGE):
            self.assertEqual(await threads.deferToThread(
                send, port, ["alice@example.com", "bob@example.com"], message), {})
        for user in ("alice", "bob"):
            self.assertEqual(len(self.bodies(os.path.join(self.maildir, user))), 2)
