"""Issue 14's end-to-end test: the suite's REAL Postfix as the client relays one message to three
recipients with three spamassassin thresholds to a real ``twistd qpsmtpd-tx`` scanning with the
suite's real spamd.

With ``recipient_policy split`` (the default) all three outcomes happen in one transaction:
``low`` (threshold 5) refuses a message of 6 points (spamd's ``QPTX_SIX`` rule) and its copy is
quarantined, ``mid`` (10, munge 5) takes it with a munged Subject, ``high`` (2000) takes it as
it is; Postfix's log shows one delivery to us (one queue id, three recipients ``sent``, nothing
deferred, no bounce). With ``group`` the same message shows the deferral (452 4.5.3) that made
``split`` the default: Postfix keeps two recipients for a later queue run (documented; the
test only checks that Postfix deferred them, it does not wait minutes for the retry).

Postfix and spamd are the suite's private instances (tests/support/postfix.py, spamd.py);
the test is skipped with the reason where they cannot run.
"""

import os
import re
import smtplib

from twisted.trial import unittest

from qpsmtpd_tx.testing import maildir_by_recipient, maildir_messages
from tests.support.harness import write_config
from tests.support.postfix import start_relaying_postfix
from tests.support.processes import poll_until, start_twistd
from tests.support.spamd import SIX_POINTS, shared_spamd

WAIT = 30
RECIPIENTS = ["low@example.com", "mid@example.com", "high@example.com"]
ALIASES = """\
low@example.com     spamassassin_reject_threshold=5
mid@example.com     spamassassin_reject_threshold=10    spamassassin_munge_subject_threshold=5
high@example.com    spamassassin_reject_threshold=2000
"""


class PostfixRelaysThreeThresholds(unittest.TestCase):
    def relay(self, files=None):
        """Our server (twistd) behind a private Postfix; one message to the three recipients
        through Postfix. Returns the Postfix instance."""
        spamd = shared_spamd()
        config = os.path.abspath(self.mktemp())
        self.maildir = os.path.join(config, "maildir")
        self.quarantine = os.path.join(config, "quarantine")
        contents = {"aliases": ALIASES, "quarantine_dir": self.quarantine,
                    "loglevel": "LOGNOTICE"}
        contents.update(files or {})
        write_config(config, ["aliases aliases", "rcpt_ok",
                              "spamassassin spamd_socket 127.0.0.1:%d" % spamd.port,
                              "queue/maildir %s %%u" % self.maildir], contents)
        _, port, self.server_log = start_twistd(self, config)
        postfix = start_relaying_postfix(self, port)
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=WAIT) as client:
            refused = client.sendmail("sender@client.example", RECIPIENTS,
                                      b"Subject: offer\r\n\r\n" + SIX_POINTS.encode() + b"\r\n")
        self.assertEqual(refused, {})
        return postfix

    def delivery_lines(self, postfix):
        """Postfix's log lines about deliveries to our server (``to=<…>, relay=…``)."""
        return [line for line in postfix.maillog().splitlines()
                if " to=<" in line and "relay=127.0.0.1[127.0.0.1]" in line]

    def test_split_three_outcomes_one_delivery(self):
        postfix = self.relay()
        self.assertTrue(poll_until(lambda: len(self.delivery_lines(postfix)) >= 3, WAIT, 0.05),
                        postfix.maillog()[-3000:])
        self.assertTrue(poll_until(lambda: not postfix.queued(), WAIT, 0.05))
        lines = self.delivery_lines(postfix)
        self.assertEqual(len(lines), 3, lines)
        self.assertTrue(all("status=sent (250 Queued!" in line for line in lines), lines)
        # one queue id, one SMTP transaction to us (Postfix's log numbers no second attempt)
        self.assertEqual(len({line.split(": to=")[0].split()[-1] for line in lines}), 1, lines)
        log = postfix.maillog()
        self.assertNotIn("status=deferred", log)
        self.assertNotIn("sender non-delivery notification", log)
        delivered = maildir_by_recipient(self.maildir, RECIPIENTS)
        self.assertEqual([len(delivered[r]) for r in RECIPIENTS], [0, 1, 1])
        [mid], [high] = delivered["mid@example.com"], delivered["high@example.com"]
        self.assertIn(b"\nSubject: *** SPAM *** offer\n", mid)
        self.assertIn(b"\nSubject: offer\n", high)
        for copy in (mid, high):
            self.assertIn(b"\nX-Spam-Status: Yes, score=6.0 required=5.0 tests=QPTX_SIX ", copy)
        [held] = maildir_messages(self.quarantine)
        self.assertIn(b"X-Recipient-Rejected: <low@example.com>; 552 spam score exceeded "
                      b"threshold (by spamassassin)\n", held)
        with open(self.server_log, "rb") as f:
            server_log = f.read().decode("utf-8", "replace")
        self.assertIn("recipient <low@example.com> refused by spamassassin: 552 spam score "
                      "exceeded threshold; its copy is quarantined in " + self.quarantine,
                      server_log)

    def test_group_defers_recipients_to_postfixs_next_queue_run(self):
        postfix = self.relay({"recipient_policy": "group"})
        deferred = lambda: [line for line in postfix.maillog().splitlines()  # noqa: E731
                            if "status=deferred" in line and "4.5.3 Try this recipient" in line]
        self.assertTrue(poll_until(lambda: len(deferred()) == 2, WAIT, 0.05),
                        postfix.maillog()[-3000:])
        # Postfix sends the recipients in its own order: the first one is taken alone (and
        # refused or delivered by its own threshold), the other two wait for the next run
        waiting = {re.search(r"to=<([^>]+)>", line).group(1) for line in deferred()}
        self.assertEqual(len(waiting), 2, deferred())
        [first] = set(RECIPIENTS) - waiting
        self.assertTrue(poll_until(lambda: any(
            "to=<%s>" % first in line and "status=deferred" not in line
            for line in postfix.maillog().splitlines()), WAIT, 0.05), postfix.maillog()[-3000:])
