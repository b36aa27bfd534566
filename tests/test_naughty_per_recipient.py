"""``reject naughty`` read per recipient at data time: a filter whose level is ``naughty`` for
some recipients only hands its refusal to the ``naughty`` plugin for those recipients, not for
the connection — with ``recipient_policy split`` the ``naughty`` plugin then refuses the
message for them (their copy quarantined) and lets it go to the others. ``headers`` is the
filter (its ``headers_reject`` note), in memory (a real server, an in-memory client,
queue/maildir writing real files)."""

import os

from twisted.trial import unittest

from tests.support.harness import (MemoryClient, codes_of, eventually, maildir_messages,
                                   make_server)

NOTES = ("note_rcpt naughty@example.com headers_reject=naughty"
         " lax@example.com headers_reject=0")
NO_DATE = b"From: a@b.example\r\nSubject: no date\r\n\r\nbody\r\n.\r\n"
DATED = (b"From: a@b.example\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nSubject: dated\r\n\r\n"
         b"body\r\n.\r\n")


class NaughtyPerRecipientTests(unittest.TestCase):
    def setUp(self):
        self.maildir = os.path.abspath(self.mktemp())
        self.quarantine = os.path.abspath(self.mktemp())

    def client(self, recipients, files=None, naughty="naughty reject data_post"):
        config = {"quarantine_dir": self.quarantine}
        config.update(files or {})
        server = make_server(self, [NOTES, "headers require From,Date days 36500", naughty,
                                    "rcpt_ok", "queue/maildir %s %%u" % self.maildir], config)
        client = MemoryClient(server)
        client.command("EHLO c.example")
        return client

    def transaction(self, client, recipients):
        client.command("MAIL FROM:<a@b.example>")
        for rcpt in recipients:
            self.assertEqual(codes_of(client.command("RCPT TO:<%s>" % rcpt)), [250])
        self.assertEqual(codes_of(client.command("DATA")), [354])

    def delivered(self, rcpt):
        return maildir_messages(os.path.join(self.maildir, rcpt))

    async def test_refused_for_the_naughty_level_only(self):
        client = self.client(["naughty@example.com", "lax@example.com"])
        self.transaction(client, ["naughty@example.com", "lax@example.com"])
        client.protocol.dataReceived(NO_DATE)
        await eventually(lambda: client.transport.value())
        self.assertEqual(codes_of(client.take()), [250])
        self.assertEqual(len(self.delivered("lax@example.com")), 1)
        self.assertEqual(self.delivered("naughty@example.com"), [])
        [held] = maildir_messages(self.quarantine)
        self.assertIn(b"X-Recipient-Rejected: <naughty@example.com>; 552 We require a valid "
                      b"Date header (by naughty)\n", held)
        # the connection is not marked: its next message goes through
        self.transaction(client, ["naughty@example.com"])
        client.protocol.dataReceived(DATED)
        await eventually(lambda: client.transport.value())
        self.assertEqual(codes_of(client.take()), [250])
        self.assertEqual(len(self.delivered("naughty@example.com")), 1)

    def test_everyone_naughty_marks_the_connection_as_before(self):
        client = self.client(["naughty@example.com"])
        self.transaction(client, ["naughty@example.com"])
        self.assertEqual(client.send(NO_DATE), "552 We require a valid Date header\r\n")
        # qpsmtpd's deferred rejection: the connection stays naughty
        self.transaction(client, ["lax@example.com"])
        self.assertEqual(client.send(DATED), "552 We require a valid Date header\r\n")
