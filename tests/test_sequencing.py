"""Sequencing through a real session: where the core's state and qpsmtpd's checks meet.

The core's table itself is driven in test_core; these tests keep qpsmtpd's checks that look at
the transaction rather than the state.
"""

import base64

from twisted.trial import unittest

from qpsmtpd_tx.core import State
from tests.support.harness import MemoryClient, make_server

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


class AuthStateTests(unittest.TestCase):
    """An AUTH exchange is the core's AUTH state from the command to its final reply."""

    def client(self):
        client = MemoryClient(make_server(self, ["auth/auth_flat_file", "rcpt_ok"], {
            "flat_auth_pw": "u@example.org:s3cr:et", "auth_failure_delay": "0"}))
        client.command("EHLO c.example")
        return client

    def test_exchange_states(self):
        client = self.client()
        core = client.session.core
        self.assertEqual(client.command("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n")
        self.assertIs(core.state, State.AUTH)
        client.command(base64.b64encode(b"u@example.org").decode())
        self.assertIs(core.state, State.AUTH)
        self.assertEqual(client.command("*"), "501 Authentication cancelled\r\n")
        self.assertIs(core.state, State.READY)
        self.assertEqual(client.command("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n")
        client.command(base64.b64encode(b"u@example.org").decode())
        self.assertEqual(client.command(base64.b64encode(b"wrong").decode()),
                         "535 5.7.8 Authentication credentials invalid\r\n")
        self.assertIs(core.state, State.READY)
        self.assertFalse(core.authenticated)
        plain = base64.b64encode(b"\0u@example.org\0s3cr:et").decode()
        self.assertEqual(client.command("AUTH PLAIN " + plain)[:4], "235 ")
        self.assertIs(core.state, State.READY)
        self.assertTrue(core.authenticated)
        self.assertEqual(client.command("AUTH PLAIN " + plain), "503 but you already said AUTH ...\r\n")

    def test_auth_plugin_that_disconnects(self):
        # The auth hook closes the connection itself (the core is CLOSED before the exchange
        # ends): the session answers and closes, without an internal error.
        server = make_server(self, ["hang_up auth-plain"], {"auth_failure_delay": "0"})
        logged = []
        server.log = lambda level, message, **kw: logged.append(message)
        client = MemoryClient(server)
        client.command("EHLO c.example")
        plain = base64.b64encode(b"\0u@example.org\0pw").decode()
        self.assertEqual(client.command("AUTH PLAIN " + plain),
                         "535 5.7.8 Authentication credentials invalid\r\n")
        self.assertTrue(client.closed)
        self.assertEqual([m for m in logged if "internal error" in m], [])
