"""recipient_policy split: the per-recipient outcome table, copies per header, and sessions
that end in each row of the table (an in-memory client; queue/maildir writes real files)."""

import os

from twisted.trial import unittest

from qpsmtpd_tx import outcomes
from qpsmtpd_tx.address import Address
from qpsmtpd_tx.codes import LOGERROR, LOGINFO, LOGNOTICE
from qpsmtpd_tx.message import Header
from qpsmtpd_tx.objects import Transaction
from qpsmtpd_tx.testing import (MemoryClient, capture_log, codes_of, eventually,
                                maildir_messages, make_server)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = [os.path.join(HERE, "fixture_plugins")]


def rcpt(text):
    return Address.parse("<%s>" % text)


SPAM = outcomes.Outcome(outcomes.REJECT, 552, "spam", "spamassassin")
VIRUS = outcomes.Outcome(outcomes.REJECT, 552, "Virus found: X", "virus/clamdscan")
DOWN = outcomes.Outcome(outcomes.TEMPFAIL, 452, "Unable to scan for spam", "spamassassin")


class DataReplyTableTests(unittest.TestCase):
    """outcomes.data_reply: one row per case of the issue's table, no sockets."""

    a, b, c = rcpt("a@example.com"), rcpt("b@example.com"), rcpt("c@example.com")

    def test_all_accepted(self):
        verdict = outcomes.data_reply([self.a, self.b], {})
        self.assertEqual((verdict.code, verdict.deliver, verdict.refused),
                         (None, [self.a, self.b], []))

    def test_all_rejected_answers_the_last_refusal(self):
        verdict = outcomes.data_reply([self.a, self.b], {self.a: SPAM, self.b: VIRUS})
        self.assertEqual((verdict.code, verdict.text, verdict.deliver), (552, "Virus found: X", []))

    def test_any_temporary_failure_defers_the_whole_message(self):
        verdict = outcomes.data_reply([self.a, self.b, self.c], {self.a: SPAM, self.b: DOWN})
        self.assertEqual((verdict.code, verdict.text, verdict.deliver, verdict.refused),
                         (452, "Unable to scan for spam", [], []))

    def test_mixed_delivers_to_the_accepted_and_lists_the_refused(self):
        verdict = outcomes.data_reply([self.a, self.b, self.c], {self.b: SPAM})
        self.assertEqual((verdict.code, verdict.deliver, verdict.refused),
                         (None, [self.a, self.c], [(self.b, SPAM)]))


class CopiesTests(unittest.TestCase):
    """outcomes.edit_header and outcomes.copies: one copy per distinct set of changes."""

    def transaction(self, *addresses):
        txn = Transaction(recipients=[rcpt(a) for a in addresses])
        txn.header = Header.parse(b"Subject: hi\n")
        return txn

    def test_a_change_for_everyone_changes_the_message(self):
        txn = self.transaction("a@example.com", "b@example.com")
        outcomes.edit_header(txn, txn.recipients, Header.add, "X-All", "1")
        self.assertEqual(txn.header.get("X-All"), ["1"])
        self.assertEqual(len(outcomes.copies(txn)), 1)

    def test_changes_for_some_make_copies(self):
        txn = self.transaction("a@example.com", "b@example.com", "c@example.com", "d@example.com")
        a, b, c, d = txn.recipients
        outcomes.edit_header(txn, [b, d], Header.replace, "Subject", "*** SPAM *** hi")
        outcomes.edit_header(txn, [c], Header.add, "X-Tag", "yes")
        copies = outcomes.copies(txn)
        self.assertEqual([members for members, _ in copies], [[a], [b, d], [c]])
        self.assertIs(copies[0][1], txn.header)
        self.assertEqual(copies[1][1].get("Subject"), ["*** SPAM *** hi"])
        self.assertEqual(copies[2][1].get("X-Tag"), ["yes"])
        self.assertEqual(txn.header.get("Subject"), ["hi"])  # the message's own is untouched

    def test_refused_recipients_are_not_accepted_any_more(self):
        txn = self.transaction("a@example.com", "b@example.com")
        outcomes.refuse(txn, [txn.recipients[0]], SPAM)
        self.assertEqual(outcomes.accepted(txn), [txn.recipients[1]])
        # a change for every recipient still accepted goes to their copy only: the refused
        # one's copy (quarantined, or delivered tagged) is written from the message's header
        a, b = txn.recipients
        outcomes.edit_header(txn, [b], Header.add, "X-B", "1")
        self.assertEqual(txn.header.get("X-B"), [])
        copies = dict((tuple(members), header) for members, header in outcomes.copies(txn))
        self.assertEqual(copies[(b,)].get("X-B"), ["1"])
        self.assertEqual(copies[(a,)].get("X-B"), [])


NOTES = ("note_rcpt low@example.com test_threshold=2 high@example.com test_threshold=10"
         " mid@example.com test_threshold=5")


class SplitSessionTests(unittest.TestCase):
    """A whole session per row of the table, with the split_score test filter."""

    def setUp(self):
        self.top = self.mktemp()
        self.maildir = os.path.join(self.top, "maildir")
        self.quarantine = os.path.join(self.top, "quarantine")

    def server(self, files=None):
        config = {"quarantine_dir": self.quarantine}
        config.update(files or {})
        return make_server(self, [NOTES, "split_score", "rcpt_ok",
                                  "queue/maildir %s %%u" % self.maildir],
                           config, plugin_dirs=FIXTURES)

    def send(self, server, score, recipients=("low", "mid", "high")):
        client = MemoryClient(server)
        client.command("EHLO c.example")
        client.command("MAIL FROM:<s@sender.example>")
        for name in recipients:
            self.assertEqual(codes_of(client.command("RCPT TO:<%s@example.com>" % name)), [250])
        self.assertEqual(codes_of(client.command("DATA")), [354])
        client.protocol.dataReceived(
            b"Subject: test\r\nX-Test-Score: %s\r\n\r\nbody\r\n.\r\n" % score.encode())
        return client

    def delivered(self, name):
        return maildir_messages(os.path.join(self.maildir, name + "@example.com"))

    async def answer(self, client):
        await eventually(lambda: client.transport.value())
        return client.take()

    async def test_mixed_outcomes_in_one_transaction(self):
        server = self.server({"loglevel": "LOGINFO"})
        log = capture_log(self, server)
        client = self.send(server, "6")
        reply = await self.answer(client)
        self.assertEqual(codes_of(reply), [250])
        self.assertEqual(client.session.connection.notes["split_score_runs"], 3)
        self.assertEqual((self.delivered("low"), self.delivered("mid")), ([], []))
        [copy] = self.delivered("high")
        self.assertIn(b"X-Test-Threshold: 10.0\n", copy)
        [held] = maildir_messages(self.quarantine)
        self.assertIn(b"Delivered-To: low@example.com\nDelivered-To: mid@example.com\n", held)
        self.assertIn(b"X-Recipient-Rejected: <low@example.com>; 552 score 6 reaches threshold "
                      b"2.0 (by split_score)\n", held)
        self.assertIn(b"\nbody\n", held)
        refusals = [m for level, m in log if level == LOGNOTICE and m.startswith("recipient ")]
        self.assertEqual(len(refusals), 2)
        self.assertIn("recipient <mid@example.com> refused by split_score: 552 score 6 reaches "
                      "threshold 5.0; its copy is quarantined in %s" % os.path.abspath(
                          self.quarantine), refusals)
        outcome = [m for level, m in log if level == LOGNOTICE and m.startswith("message ")]
        self.assertIn("to <high@example.com>, ", outcome[0])

    async def test_all_accepted_each_copy_has_its_own_header(self):
        client = self.send(self.server(), "1")
        self.assertEqual(codes_of(await self.answer(client)), [250])
        for name, threshold in (("low", b"2.0"), ("mid", b"5.0"), ("high", b"10.0")):
            [copy] = self.delivered(name)
            self.assertIn(b"X-Test-Threshold: " + threshold + b"\n", copy)
            self.assertEqual(copy.count(b"X-Test-Threshold"), 1)
        self.assertEqual(maildir_messages(self.quarantine), [])

    def test_all_rejected_is_the_5xx(self):
        client = self.send(self.server(), "20")
        self.assertEqual(client.take(), "552 score 20 reaches threshold 10.0\r\n")
        self.assertEqual([self.delivered(n) for n in ("low", "mid", "high")], [[], [], []])
        self.assertEqual(maildir_messages(self.quarantine), [])

    def test_a_temporary_failure_defers_the_whole_message(self):
        client = self.send(self.server(), "temp")
        self.assertEqual(client.take(), "452 scanner down\r\n")
        self.assertEqual([self.delivered(n) for n in ("low", "mid", "high")], [[], [], []])

    async def test_discard(self):
        client = self.send(self.server({"rejected_recipients": "discard"}), "6")
        self.assertEqual(codes_of(await self.answer(client)), [250])
        self.assertEqual(len(self.delivered("high")), 1)
        self.assertEqual(maildir_messages(self.quarantine), [])
        self.assertEqual((self.delivered("low"), self.delivered("mid")), ([], []))

    async def test_tag_delivers_the_refused_copies_tagged(self):
        client = self.send(self.server({"rejected_recipients": "tag"}), "6")
        self.assertEqual(codes_of(await self.answer(client)), [250])
        [low] = self.delivered("low")
        self.assertIn(b"X-Recipient-Rejected: <low@example.com>; 552 score 6 reaches threshold "
                      b"2.0 (by split_score)\n", low)
        [high] = self.delivered("high")
        self.assertNotIn(b"X-Recipient-Rejected", high)
        self.assertEqual(maildir_messages(self.quarantine), [])

    async def test_quarantine_that_cannot_be_written_defers_the_message(self):
        os.makedirs(self.top)
        with open(os.path.join(self.top, "file"), "w"):
            pass
        self.quarantine = os.path.join(self.top, "file", "q")
        client = self.send(self.server(), "6")
        self.assertEqual(codes_of(await self.answer(client)), [451])
        self.assertEqual(self.delivered("high"), [])

    async def test_a_failing_copy_answers_for_the_message(self):
        os.makedirs(self.maildir)
        with open(os.path.join(self.maildir, "high@example.com"), "w"):
            pass     # high's Maildir cannot be made: its copy (the second) fails
        server = self.server()
        log = capture_log(self, server)
        client = self.send(server, "1", ("mid", "high"))
        reply = await self.answer(client)
        self.assertTrue(reply.startswith("451 queue error ("), reply)
        self.assertEqual(len(self.delivered("mid")), 1)
        self.assertIn((LOGERROR, "copies 1-1 were queued before copy 2 failed: a retry by the "
                       "client delivers them again"), log)

    def test_group_names_the_setting_that_differed(self):
        server = self.server({"recipient_policy": "group"})
        log = capture_log(self, server)
        client = MemoryClient(server)
        client.command("EHLO c.example")
        client.command("MAIL FROM:<s@sender.example>")
        client.command("RCPT TO:<high@example.com>")
        self.assertEqual(codes_of(client.command("RCPT TO:<low@example.com>")), [452])
        self.assertIn((LOGINFO, "<low@example.com> has other filter settings than "
                       "<high@example.com> (split_score test_threshold: 2.0, not 10.0): "
                       "deferred to another transaction"), log)
