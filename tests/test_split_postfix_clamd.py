"""Issue 14's end-to-end test for a virus scanner: the suite's REAL Postfix as the client relays
one infected message to two recipients of a real ``twistd qpsmtpd-tx`` scanning with the
suite's real clamd — through ``virus/clamdscan`` (INSTREAM), and through ``virus/clamav``
running ClamAV's ``clamdscan`` program on the spooled file: ``strict`` has ``virus_action
reject``, ``tagged`` ``virus_action tag`` (from the aliases file).

With ``recipient_policy split`` (the default) both outcomes happen in one transaction: clamd
is asked once, ``strict``'s copy is quarantined (untagged, with its X-Recipient-Rejected
field), ``tagged``'s is delivered with ``X-Virus-Found: Yes``; Postfix's log shows one
delivery to us (one queue id, both recipients ``sent``, nothing deferred, no bounce).

Postfix and clamd are the suite's private instances (tests/support/postfix.py, clamd.py);
the test is skipped with the reason where they cannot run.
"""

import os
import smtplib

from twisted.trial import unittest

from qpsmtpd_tx.testing import maildir_by_recipient, maildir_messages
from tests.support.clamd import VIRUS_NAME, VIRUS_PATTERN, shared_clamd
from tests.support.harness import write_config
from tests.support.postfix import start_relaying_postfix
from tests.support.processes import poll_until, start_twistd

WAIT = 30
STRICT, TAGGED = "strict@example.com", "tagged@example.com"
ALIASES = """\
strict@example.com     virus_action=reject
tagged@example.com     virus_action=tag
"""


class PostfixRelaysOneVirusToTwoActions(unittest.TestCase):
    def test_clamdscan(self):
        clamd = shared_clamd()
        self.relay("virus/clamdscan clamd_host 127.0.0.1 clamd_port %d" % clamd.port,
                   "552 Virus found: %s (by virus::clamdscan)" % VIRUS_NAME,
                   "\nX-Virus-Found: Yes\nX-Virus-Details: %s\n" % VIRUS_NAME)

    def test_clamav_running_clamdscan(self):
        clamd = shared_clamd()
        self.relay("virus/clamav clamscan_path=/usr/bin/clamdscan clamd_conf=%s action=reject"
                   % os.path.join(clamd.dir, "clamd.conf"),
                   "552 Virus Found: %s (by virus::clamav)" % VIRUS_NAME,
                   "\nX-Virus-Found: Yes\nX-Virus-Details: %s\n" % VIRUS_NAME)

    def relay(self, scanner, refusal, tag):
        """Relay the message through Postfix to our server filtering with ``scanner``;
        check one delivery, STRICT's copy quarantined with ``refusal`` and TAGGED's
        delivered with ``tag``."""
        config = os.path.abspath(self.mktemp())
        maildir = os.path.join(config, "maildir")
        quarantine = os.path.join(config, "quarantine")
        write_config(config, ["aliases aliases", "rcpt_ok", scanner,
                              "queue/maildir %s %%u" % maildir],
                     {"aliases": ALIASES, "quarantine_dir": quarantine, "loglevel": "LOGINFO"})
        _, port, server_log = start_twistd(self, config)
        postfix = start_relaying_postfix(self, port)
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=WAIT) as client:
            refused = client.sendmail("sender@client.example", [STRICT, TAGGED],
                                      b"Subject: files\r\n\r\nsee " + VIRUS_PATTERN.encode()
                                      + b"\r\n")
        self.assertEqual(refused, {})

        def deliveries():
            return [line for line in postfix.maillog().splitlines()
                    if " to=<" in line and "relay=127.0.0.1[127.0.0.1]" in line]
        self.assertTrue(poll_until(lambda: len(deliveries()) >= 2, WAIT, 0.05),
                        postfix.maillog()[-3000:])
        self.assertTrue(poll_until(lambda: not postfix.queued(), WAIT, 0.05))
        lines = deliveries()
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(all("status=sent (250 Queued!" in line for line in lines), lines)
        self.assertEqual(len({line.split(": to=")[0].split()[-1] for line in lines}), 1, lines)
        log = postfix.maillog()
        self.assertNotIn("status=deferred", log)
        self.assertNotIn("sender non-delivery notification", log)

        delivered = maildir_by_recipient(maildir, [STRICT, TAGGED])
        self.assertEqual(delivered[STRICT], [])
        [copy] = delivered[TAGGED]
        self.assertIn(tag.encode(), b"\n" + copy)
        [held] = maildir_messages(quarantine)
        self.assertIn(("X-Recipient-Rejected: <%s>; %s\n" % (STRICT, refusal)).encode(), held)
        self.assertNotIn(b"X-Virus-Found", held)
        with open(server_log, "rb") as f:
            server_text = f.read().decode("utf-8", "replace")
        # one scan: clamd found it once
        self.assertEqual(server_text.count("fail, found virus %s" % VIRUS_NAME), 1, server_text)
        code_text, by = refusal.rsplit(" (by ", 1)
        self.assertIn("recipient <%s> refused by %s: %s; its copy is quarantined in %s"
                      % (STRICT, by.rstrip(")"), code_text, quarantine), server_text)
