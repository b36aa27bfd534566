"""spamassassin with ``recipient_policy split`` (the default) against the real spamd: one scan
per message, each recipient's thresholds applied to that score, one outcome per recipient in
one transaction, the Subject munged only in the copies whose munge threshold says so.

spamd is the suite's shared one (tests/support/spamd.py; skipped with the reason when its
Debian package is missing); the server listens on a loopback socket and delivers with
queue/maildir (one Maildir per recipient).
"""

import os

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.testing import capture_log, maildir_by_recipient, maildir_messages
from tests.support.filter_cases import record_calls
from tests.support.server import Transcript, connect, start_server
from tests.support.spamd import GTUBE, SIX_POINTS, shared_spamd

NOTES = ("note_rcpt low@example.com spamassassin_reject_threshold=5"
         " mid@example.com spamassassin_reject_threshold=10"
         " high@example.com spamassassin_reject_threshold=2000,"
         "spamassassin_munge_subject_threshold=5")
RECIPIENTS = ("low@example.com", "mid@example.com", "high@example.com")


class SplitTests(unittest.TestCase):
    async def session(self, body, files=None, notes=NOTES):
        """One transaction to the three recipients; ``(transcript lines, delivered, scans)``."""
        spamd = shared_spamd()
        self.maildir = os.path.abspath(self.mktemp())
        self.quarantine = os.path.abspath(self.mktemp())
        config = {"quarantine_dir": self.quarantine}
        config.update(files or {})
        server, port = start_server(self, [
            notes, "rcpt_ok", "spamassassin spamd_socket 127.0.0.1:%d" % spamd.port,
            "queue/maildir %s %%u" % self.maildir], config)
        self.addCleanup(server.stop_plugins)
        self.log = capture_log(self, server)
        plugin = next(p for p in server.plugins if p.path == "spamassassin")
        scans = record_calls(self, plugin, "_ask_spamd", lambda message, user: user)
        client = await connect(self, port)
        transcript = Transcript(client)
        await transcript.say("EHLO client.example")
        await transcript.say("MAIL FROM:<sender@client.example>")
        for rcpt in RECIPIENTS:
            await transcript.say("RCPT TO:<%s>" % rcpt)
        await transcript.say("DATA")
        await transcript.say("Subject: offer\r\n\r\n%s\r\n." % body, "<message>")
        await transcript.say("QUIT")
        return transcript.lines, maildir_by_recipient(self.maildir, RECIPIENTS), scans

    async def test_one_scan_three_thresholds_one_transaction(self):
        lines, delivered, scans = await self.session(SIX_POINTS)
        self.assertEqual(len(scans), 1)
        self.assertEqual(lines[2:6], ["RCPT TO:<%s> -> 250 <%s>, recipient ok" % (r, r)
                                      for r in RECIPIENTS] + ["DATA -> 354 go ahead"])
        self.assertEqual(lines[6], "<message> -> 250 Queued!")
        # low (5) refuses 6 points: quarantined; mid (10) and high (2000) take it
        self.assertEqual(delivered["low@example.com"], [])
        [held] = maildir_messages(self.quarantine)
        self.assertIn(b"Delivered-To: low@example.com\n", held)
        self.assertIn(b"X-Recipient-Rejected: <low@example.com>; 552 spam score exceeded "
                      b"threshold (by spamassassin)\n", held)
        [mid], [high] = delivered["mid@example.com"], delivered["high@example.com"]
        for copy in (mid, high):
            self.assertIn(b"\nX-Spam-Status: Yes, score=6.0 required=5.0 tests=QPTX_SIX ", copy)
            self.assertIn(b"X-Spam-User: ", copy)
        # only high's munge threshold (5) is set: only its copy has the munged subject
        self.assertIn(b"\nSubject: offer\n", mid)
        self.assertIn(b"\nSubject: *** SPAM *** offer\n", high)
        self.assertIn((codes.LOGNOTICE, "recipient <low@example.com> refused by spamassassin: "
                       "552 spam score exceeded threshold; its copy is quarantined in %s"
                       % self.quarantine), self.log)

    async def test_gtube_refused_for_two_discarded(self):
        lines, delivered, scans = await self.session(GTUBE, {"rejected_recipients": "discard"})
        self.assertEqual(len(scans), 1)
        # GTUBE (1000) reaches 5 and 10; high's 2000 is not reached: high gets it
        self.assertEqual(lines[6], "<message> -> 250 Queued!")
        self.assertEqual([len(delivered[r]) for r in RECIPIENTS], [0, 0, 1])
        self.assertEqual(maildir_messages(self.quarantine), [])

    async def test_everyone_refused_is_the_5xx(self):
        notes = NOTES.replace("=2000", "=500")
        lines, delivered, scans = await self.session(GTUBE, notes=notes)
        self.assertEqual(len(scans), 1)
        self.assertEqual(lines[6], "<message> -> 552 spam score exceeded threshold")
        self.assertEqual([len(delivered[r]) for r in RECIPIENTS], [0, 0, 0])
        self.assertEqual(maildir_messages(self.quarantine), [])

    async def test_group_policy_is_still_there(self):
        lines, delivered, scans = await self.session(SIX_POINTS, {"recipient_policy": "group"})
        self.assertEqual(lines[3], "RCPT TO:<mid@example.com> -> 452 4.5.3 Try this recipient "
                                   "in another transaction")
        self.assertEqual(lines[6], "<message> -> 552 spam score exceeded threshold")
