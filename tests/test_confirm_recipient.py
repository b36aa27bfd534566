"""The session's recipient confirmation (plugins with ``confirm_recipient``, as
queue/smtp-forward ``proxy``): asked after the rcpt hooks accepted a recipient, before the
250; its refusal is the reply; alias targets are asked one by one (in memory)."""

from twisted.trial import unittest

from qpsmtpd_tx.codes import LOGERROR
from tests.support.harness import MemoryClient, capture_log, make_server


class ConfirmTests(unittest.TestCase):
    def client(self, line, before=(), files=None):
        server = make_server(self, list(before) + ["rcpt_ok", line], files)
        self.log = capture_log(self, server)
        client = MemoryClient(server)
        client.command("EHLO c.example")
        client.command("MAIL FROM:<a@b.example>")
        return client

    def test_refusal_is_the_rcpt_reply(self):
        client = self.client("confirm_rcpt gone@example.com 550 5.1.1 no such user there")
        self.assertEqual(client.command("RCPT TO:<gone@example.com>"),
                         "550 5.1.1 no such user there\r\n")
        self.assertEqual(client.command("RCPT TO:<here@example.com>"),
                         "250 <here@example.com>, recipient ok\r\n")
        self.assertEqual([r.address for r in client.session.transaction.recipients],
                         ["here@example.com"])

    def test_refused_by_rcpt_hooks_is_not_asked(self):
        client = self.client("confirm_rcpt x@example.com 550 no")
        self.assertEqual(client.command("RCPT TO:<x@elsewhere.example>")[:3], "550")
        self.assertNotIn("confirmed", client.session.connection.notes)

    def test_alias_targets_are_asked(self):
        client = self.client("confirm_rcpt b@example.com 450 4.2.1 try later",
                             before=["aliases aliases"],
                             files={"aliases": "list@example.com -> a@example.com, b@example.com"})
        self.assertEqual(client.command("RCPT TO:<list@example.com>"), "450 4.2.1 try later\r\n")
        self.assertEqual(client.session.connection.notes["confirmed"],
                         ["a@example.com", "b@example.com"])
        self.assertEqual(client.session.transaction.recipients, [])

    def test_a_failing_confirmer_is_a_temporary_failure(self):
        client = self.client("confirm_rcpt x@example.com raise")
        self.assertEqual(client.command("RCPT TO:<x@example.com>"),
                         "451 4.3.0 Internal error, try again later\r\n")
        self.assertIn((LOGERROR, "confirming a recipient failed: broken confirmer"), self.log)
