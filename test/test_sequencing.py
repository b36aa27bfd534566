"""Sequencing through a real session: where the core's state and qpsmtpd's checks meet.

The core's table itself is driven in test_core; these tests keep qpsmtpd's checks that look at
the transaction rather than the state.
"""

from twisted.trial import unittest

from test.support.harness import MemoryClient, make_server

ENVELOPE = ["EHLO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"]


class DataCheckTests(unittest.TestCase):
    """DATA looks at the transaction, as qpsmtpd's SMTP.pm does, not only at the state."""

    def client(self):
        client = MemoryClient(make_server(self, ["rcpt_ok"]))
        for line in ENVELOPE:
            client.command(line)
        return client

    def test_recipients_removed_after_rcpt(self):
        # a plugin may drop recipients (Transaction.remove_recipient) after they were accepted
        client = self.client()
        client.session.transaction.remove_recipient("u@example.com")
        self.assertEqual(client.command("DATA"), "503 RCPT first\r\n")
        self.assertEqual(client.command("RCPT TO:<v@example.com>"),
                         "250 <v@example.com>, recipient ok\r\n")
        self.assertEqual(client.command("DATA"), "354 go ahead\r\n")

    def test_sender_removed_after_mail(self):
        client = self.client()
        client.session.transaction.sender = None
        self.assertEqual(client.command("DATA"), "503 MAIL first\r\n")
