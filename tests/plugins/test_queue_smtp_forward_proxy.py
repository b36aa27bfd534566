"""queue/smtp-forward ``proxy``: the transaction at the next hop follows the client's (MAIL at
MAIL, each RCPT as it is accepted, the hop's refusal as the client's RCPT reply), and
``partial defer``: LMTP refusals after the message answered by the outcome table.

Against the REAL Dovecot LMTP (tests/support/dovecot.py: ``alice``; ``bob`` and ``carol``
with a 1 KiB quota, permanent and temporary; no ``nobody``) and the REAL Postfix smtpd
(tests/support/postfix.py with the refusing settings of tests/support/postfix_cases.py:
``refused@`` REJECT, ``later@`` DEFER), each skipped with the reason where it cannot run.
"""

import os

from qpsmtpd_tx.codes import LOGERROR, LOGNOTICE
from tests.plugins.test_queue_smtp_forward import HEADER, ForwardTestCase
from tests.support.dovecot import start_dovecot
from tests.support.harness import capture_log, maildir_messages
from tests.support.postfix import start_postfix
from tests.support.postfix_cases import STRICT, PostfixTestCase

BIG = HEADER + b"\r\n" + b"z" * 3000 + b"\r\n"


class RcptReplies:
    """Mixin: one transaction whose RCPT replies are returned, not required to be 250."""

    async def transaction(self, client, recipients, data=None):
        """``(rcpt replies, reply to the message or None)``."""
        self.assertEqual((await client.command("MAIL FROM:<a@b.example>"))[0], 250)
        replies = [await client.command("RCPT TO:%s" % r) for r in recipients]
        if not any(code == 250 for code, _ in replies):
            await client.command("RSET")
            return replies, None
        self.assertEqual((await client.command("DATA"))[0], 354)
        client.transport.write((data or self.default_message) + b".\r\n")
        return replies, await client.reply()


class DovecotProxyTests(RcptReplies, ForwardTestCase):
    def setUp(self):
        self.dovecot = start_dovecot(self)

    def front(self, args="", files=None):
        self.quarantine = os.path.abspath(self.mktemp())
        server, port = self.start_front("127.0.0.1 %d lmtp proxy %s" % (self.dovecot.port, args),
                                        dict({"quarantine_dir": self.quarantine}, **(files or {})))
        self.log = capture_log(self, server)
        return port

    async def test_unknown_user_is_refused_at_rcpt_the_others_get_it(self):
        client = await self.session(self.front())
        replies, end = await self.transaction(client, ["<alice@example.com>",
                                                       "<nobody@example.com>"])
        self.assertEqual(replies[1], (550, ["5.1.1 <nobody@example.com> User doesn't exist: "
                                            "nobody@example.com"]))
        self.assertEqual(end[0], 250, end)
        self.assertEqual(len(self.dovecot.delivered("alice")), 1)

    async def test_full_mailbox_after_the_message_is_quarantined(self):
        client = await self.session(self.front())
        replies, end = await self.transaction(client, ["<alice@example.com>", "<bob@example.com>"],
                                              BIG)
        self.assertEqual([code for code, _ in replies], [250, 250])
        self.assertEqual(end, (250, ["delivered to 1 of 2 recipients",
                                     "not delivered to <bob@example.com>: 5.2.2 <bob@example.com> "
                                     "Quota exceeded (mailbox for user is full)"]))
        [held] = maildir_messages(self.quarantine)
        self.assertIn(b"Delivered-To: bob@example.com\nX-Recipient-Rejected: <bob@example.com>; "
                      b"552 5.2.2 <bob@example.com> Quota exceeded", held)
        self.assertTrue(any(level == LOGNOTICE and m.startswith(
            "recipient <bob@example.com> refused by queue::smtp_2dforward after the message")
            for level, m in self.log), self.log)

    async def test_a_temporary_failure_after_the_message_defers_everyone(self):
        client = await self.session(self.front())
        replies, end = await self.transaction(client, ["<alice@example.com>",
                                                       "<carol@example.com>"], BIG)
        self.assertEqual(end[0], 451, end)
        # alice has it, and will get it again when the client retries: the documented price
        self.assertEqual(len(self.dovecot.delivered("alice")), 1)
        self.assertTrue(any(level == LOGERROR and "answering 451 for all 2 recipients" in m
                            for level, m in self.log), self.log)

    async def test_partial_accept_keeps_the_250(self):
        client = await self.session(self.front("partial accept"))
        replies, end = await self.transaction(client, ["<alice@example.com>",
                                                       "<carol@example.com>"], BIG)
        self.assertEqual(end[0], 250, end)
        self.assertEqual(maildir_messages(self.quarantine), [])

    async def test_dovecot_down_at_mail_is_a_temporary_refusal(self):
        port = self.front()
        self.dovecot.process.terminate()
        self.dovecot.process.wait(10)
        client = await self.session(port)
        self.assertEqual(await client.command("MAIL FROM:<a@b.example>"),
                         (450, ["Unable to reach the next hop, try again later"]))


class PostfixProxyTests(RcptReplies, PostfixTestCase):
    async def test_refusals_at_rcpt_and_one_delivery(self):
        postfix = start_postfix(self, settings=STRICT["settings"], files=STRICT["files"])
        server, port = self.start_front("queue/smtp-forward 127.0.0.1 %d proxy" % postfix.port)
        client = await self.session(port)
        replies, end = await self.transaction(client, [
            "<u@example.com>", "<refused@example.com>", "<later@example.com>", "<v@example.com>"])
        self.assertEqual([code for code, _ in replies], [250, 554, 450, 250], replies)
        self.assertIn("no such user here", " ".join(replies[1][1]))
        self.assertEqual(end[0], 250, end)
        await self.settle(postfix)
        [delivery] = postfix.deliveries()
        self.assertEqual(sorted(delivery.recipients), ["u@example.com", "v@example.com"])
        # a second message on the same connection: a new transaction at the hop
        replies, end = await self.transaction(client, ["<v@example.com>"])
        self.assertEqual(end[0], 250, end)
        await self.settle(postfix)
        self.assertEqual(len(postfix.deliveries()), 2)

    async def test_a_recipient_refused_by_a_filter_is_taken_off_at_the_hop(self):
        postfix = start_postfix(self)
        quarantine = os.path.abspath(self.mktemp())
        server, port = self.start_front(
            "queue/smtp-forward 127.0.0.1 %d proxy" % postfix.port,
            {"quarantine_dir": quarantine},
            plugins=["note_rcpt low@example.com test_threshold=2", "split_score"])
        client = await self.session(port)
        replies, end = await self.transaction(client, ["<low@example.com>", "<u@example.com>"],
                                              b"Subject: s\r\nX-Test-Score: 3\r\n\r\nbody\r\n")
        self.assertEqual(end[0], 250, end)
        await self.settle(postfix)
        [delivery] = postfix.deliveries()
        self.assertEqual(delivery.recipients, ["u@example.com"])
        self.assertEqual(len(maildir_messages(quarantine)), 1)
