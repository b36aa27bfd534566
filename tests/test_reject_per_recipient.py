"""qpsmtpd's ``reject`` / ``reject_type`` read per recipient (Plugin.read_reject_per_recipient),
shown with ``headers`` and ``bogus_bounce`` in memory (a real server, an in-memory client,
queue/maildir writing real files); ``dkim`` and ``dmarc`` declare the same settings."""

import os

from twisted.trial import unittest

from qpsmtpd_tx import policy
from tests.support.harness import (MemoryClient, codes_of, eventually, loaded_plugin,
                                   maildir_messages, make_server)

NOTES = ("note_rcpt lax@example.com headers_reject=0,bogus_bounce_reject=0"
         " soft@example.com headers_reject_type=temp")
NO_DATE = b"From: a@b.example\r\nSubject: no date\r\n\r\nbody\r\n.\r\n"


class RejectPerRecipientTests(unittest.TestCase):
    def setUp(self):
        self.maildir = os.path.abspath(self.mktemp())
        self.quarantine = os.path.abspath(self.mktemp())

    def client(self, plugin, sender, recipients, files=None):
        config = {"quarantine_dir": self.quarantine}
        config.update(files or {})
        server = make_server(self, [NOTES, plugin, "rcpt_ok", "queue/maildir %s %%u"
                                    % self.maildir], config)
        client = MemoryClient(server)
        client.command("EHLO c.example")
        client.command("MAIL FROM:%s" % sender)
        for rcpt in recipients:
            self.assertEqual(codes_of(client.command("RCPT TO:<%s>" % rcpt)), [250])
        self.assertEqual(codes_of(client.command("DATA")), [354])
        return client

    def delivered(self, rcpt):
        return maildir_messages(os.path.join(self.maildir, rcpt))

    async def test_headers_refuses_only_where_the_level_says(self):
        client = self.client("headers require From,Date", "<a@b.example>", ["lax@example.com", "plain@example.com"])
        client.protocol.dataReceived(NO_DATE)
        await eventually(lambda: client.transport.value())
        self.assertEqual(codes_of(client.take()), [250])
        self.assertEqual(len(self.delivered("lax@example.com")), 1)
        self.assertEqual(self.delivered("plain@example.com"), [])
        [held] = maildir_messages(self.quarantine)
        self.assertIn(b"X-Recipient-Rejected: <plain@example.com>; 552 We require a valid Date "
                      b"header (by headers)\n", held)

    def test_a_temporary_refusal_for_one_defers_the_message(self):
        client = self.client("headers require From,Date", "<a@b.example>", ["lax@example.com", "soft@example.com"])
        self.assertEqual(client.send(NO_DATE), "452 We require a valid Date header\r\n")
        self.assertEqual(self.delivered("lax@example.com"), [])

    def test_group_policy_refuses_the_mixed_recipient(self):
        client = self.client("headers require From,Date", "<a@b.example>", ["plain@example.com"],
                             {"recipient_policy": "group"})
        self.assertEqual(client.send(NO_DATE), "552 We require a valid Date header\r\n")

    async def test_bogus_bounce(self):
        client = self.client("bogus_bounce deny", "<>", ["lax@example.com", "plain@example.com"])
        client.protocol.dataReceived(b"Subject: bounce\r\n\r\nbody\r\n.\r\n")
        await eventually(lambda: client.transport.value())
        self.assertEqual(codes_of(client.take()), [250])
        self.assertEqual(len(self.delivered("lax@example.com")), 1)
        self.assertEqual(self.delivered("plain@example.com"), [])

    def test_dkim_and_dmarc_declare_the_settings(self):
        server = make_server(self, ["dkim reject 0", "dmarc reject_type temp", "rcpt_ok"])
        dkim, dmarc = loaded_plugin(server, "dkim"), loaded_plugin(server, "dmarc")
        self.assertEqual([(s.note, s.default) for s in dkim.recipient_settings],
                         [("dkim_reject", "0"), ("dkim_reject_type", "perm")])
        self.assertEqual([(s.note, s.default) for s in dmarc.recipient_settings],
                         [("dmarc_reject", "1"), ("dmarc_reject_type", "temp")])

    def test_strictest_values(self):
        self.assertEqual(policy.strictest_level(["0", "naughty"]), "naughty")
        self.assertEqual(policy.strictest_level(["0", None]), None)
        self.assertEqual(policy.strictest_type(["temp", "perm"]), "perm")
        self.assertEqual(policy.strictest_type(["temp", "soft"]), "temp")
