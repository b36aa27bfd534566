"""rspamd with ``recipient_policy split`` (the default), against the suite's real rspamd: one
transaction, three recipients on three settings profiles, one scan per profile, and each
profile's answer for its own recipients (refused, tagged, clean), with each copy's headers.

rspamd is the suite's shared one (tests/support/rspamd.py; skipped with the reason when its
Debian package is missing); the server listens on a loopback socket and delivers with
queue/maildir (one Maildir per recipient).
"""

import os

from twisted.trial import unittest

from qpsmtpd_tx.testing import maildir_by_recipient, maildir_messages
from tests.plugins.test_rspamd import SHOW_ALIASES, assert_profile_headers, message
from tests.support.filter_cases import record_calls
from tests.support.rspamd import GTUBE, shared_rspamd
from tests.support.server import Transcript, connect, start_server

RECIPIENTS = ("strict@example.com", "plain@example.com", "lenient@example.com")


class SplitTests(unittest.TestCase):
    async def deliver(self, text):
        """One transaction to the three recipients; ``(reply line, delivered, scans)``."""
        rspamd = shared_rspamd()
        maildir = os.path.abspath(self.mktemp())
        self.quarantine = os.path.abspath(self.mktemp())
        server, port = start_server(self, [
            "aliases aliases", "rspamd url %s" % rspamd.url, "rcpt_ok",
            "queue/maildir %s %%u" % maildir],
            {"aliases": SHOW_ALIASES, "quarantine_dir": self.quarantine})
        self.addCleanup(server.stop_plugins)
        plugin = next(p for p in server.plugins if p.path == "rspamd")
        profiles = record_calls(self, plugin, "_scan", lambda producer, pairs, txn: (
            dict(pairs).get("Settings-ID"), [v for n, v in pairs if n == "Rcpt"]))
        client = await connect(self, port)
        transcript = Transcript(client)
        await transcript.say("EHLO client.example")
        await transcript.say("MAIL FROM:<sender@client.example>")
        for rcpt in RECIPIENTS:
            self.assertEqual(await transcript.say("RCPT TO:<%s>" % rcpt), 250)
        await transcript.say("DATA")
        await transcript.say(text, "<message>")
        return transcript.lines[-1], maildir_by_recipient(maildir, RECIPIENTS), profiles

    async def test_three_profiles_three_outcomes_one_transaction(self):
        reply, delivered, profiles = await self.deliver(
            message("X-Test-Score: 7", "X-Test-Echo: 1"))
        # one scan per profile, each naming its own recipients only
        self.assertEqual(sorted(profiles, key=str), sorted([
            (None, ["<plain@example.com>"]), ("lenient", ["<lenient@example.com>"]),
            ("strict", ["<strict@example.com>"])], key=str))
        self.assertEqual(reply, "<message> -> 250 Queued!")
        self.assertEqual(delivered["strict@example.com"], [])
        [held] = maildir_messages(self.quarantine)
        self.assertIn(b"X-Recipient-Rejected: <strict@example.com>; 552 Spam message rejected "
                      b"(by rspamd)\n", held)
        assert_profile_headers(self, delivered)

    async def test_gtube_is_refused_for_everyone(self):
        reply, delivered, profiles = await self.deliver(message(body=GTUBE + "\r\n"))
        self.assertEqual(len(profiles), 3)
        self.assertEqual(reply, "<message> -> 552 Gtube pattern")
        self.assertEqual([len(m) for m in delivered.values()], [0, 0, 0])
        self.assertEqual(maildir_messages(self.quarantine), [])
