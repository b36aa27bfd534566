"""The ``milter`` plugin against real milters from Debian: clamav-milter in front of the
suite's clamd, opendkim signing, and rspamd's proxy in milter mode. Each is started privately
(tests/support/milters.py, tests/support/rspamd.py: their own config and socket in a temp
dir, stopped by PID); the SMTP server runs on a loopback socket
(tests/support/filter_cases.py), and in one test as a real twistd. Without the packages the
tests are skipped with the reason.
"""

import os
import shutil
import subprocess

import dkim
from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.testing import maildir_messages, write_config
from tests.support.clamd import VIRUS_NAME, VIRUS_PATTERN, shared_clamd
from tests.support.filter_cases import FilterTestCase, message
from tests.support.milters import start_clamav_milter, start_opendkim
from tests.support.processes import start_twistd
from tests.support.rspamd import GTUBE, shared_rspamd
from tests.support.shared import SharedDaemon

shared_clamav_milter = SharedDaemon("clamav-milter", lambda: start_clamav_milter(shared_clamd())).get
shared_opendkim = SharedDaemon("opendkim", start_opendkim).get


class ClamavMilterTests(FilterTestCase):
    def setUp(self):
        self.milter = shared_clamav_milter()

    def plugin(self, args=""):
        return "milter clamav unix:%s %s" % (self.milter.socket, args)

    def assertCode(self, outcome, code):
        """The message got ``code``; if not, say whose reply it was (our log lines, the
        milter's log): a fresh clamav-milter's first message got a 452 twice under trial -j2."""
        self.assertEqual(outcome.data[0], code, (outcome.data, self.logs, self.milter.log()[-3000:]))

    async def test_virus_is_rejected_with_the_milters_text(self):
        self.serve([self.plugin(), "rcpt_ok"])
        outcome = await self.send(message("hello " + VIRUS_PATTERN))
        self.assertCode(outcome, 550)
        self.assertEqual(outcome.data, (550, "5.7.1 Virus found: %s" % VIRUS_NAME))
        self.assertIsNone(outcome.queued)
        self.assertIn(VIRUS_NAME, self.milter.log())

    async def test_clean_message_passes_with_its_header(self):
        self.serve([self.plugin(), "rcpt_ok"])
        outcome = await self.send(message("clean and simple", extra="X-Virus-Status: Infected\r\n"))
        self.assertCode(outcome, 250)
        self.assertEqual(outcome.header.get("X-Virus-Status"), ["Clean"])
        self.assertRegex(outcome.header.get_first("X-Virus-Scanned"),
                         r"^clamav-milter \d+\.\d+\.\d+ at milter\.test$")

    async def test_one_milter_connection_serves_several_transactions(self):
        self.serve([self.plugin(), "rcpt_ok"])
        client = await self.open()
        first = await self.transaction(client, ["alice@example.com"], message(VIRUS_PATTERN))
        self.assertCode(first, 550)
        self.assertEqual((await client.command("RSET"))[0], 250)
        second = await self.transaction(client, ["alice@example.com"], message("clean"))
        self.assertEqual(second.data[0], 250)
        self.assertEqual(second.header.get("X-Virus-Status"), ["Clean"])
        self.assertEqual(self.logged(codes.LOGERROR, "milter"), [])


class OpendkimTests(FilterTestCase):
    def setUp(self):
        self.milter = shared_opendkim()

    def verify(self, queued):
        """dkimpy's verdict on the queued message (LF line endings, as spooled), with the
        milter's public key given directly instead of looked up in DNS."""
        name = ("%s._domainkey.%s." % (self.milter.selector, self.milter.domain)).encode()

        def dnsfunc(qname, timeout=5):
            return self.milter.public_key.encode() if qname == name else None

        return dkim.verify(queued.replace(b"\n", b"\r\n"), dnsfunc=dnsfunc)

    async def test_signed_message_verifies(self):
        self.serve(["milter dkim %s" % self.milter.socket, "rcpt_ok"])
        text = ("From: Sender <sender@example.org>\r\nTo: someone@example.com\r\n"
                "Subject: signed,\r\n\tfolded\r\n\r\n"
                "body line\r\n\r\n.leading dot\r\n")
        outcome = await self.send(text)
        self.assertEqual(outcome.data[0], 250)
        signature = outcome.header.get_first("DKIM-Signature")
        self.assertIsNotNone(signature, outcome.queued)
        self.assertIn("d=example.org", signature)
        self.assertIn("s=qptx", signature)
        self.assertIn("c=simple/simple", signature)
        self.assertRegex(signature, r"h=[^;]*(?i:subject)")
        self.assertTrue(self.verify(outcome.queued), outcome.queued)
        # the check can fail: a changed body no longer verifies
        self.assertFalse(self.verify(outcome.queued.replace(b"body line", b"body lime")))


class RspamdProxyTests(FilterTestCase):
    """rspamd's proxy worker in milter mode (``milter = yes``), in front of the suite's rspamd
    (tests/support/rspamd.py): the milter protocol version 6 that qpsmtpd 0.94 cannot speak."""

    def setUp(self):
        self.rspamd = shared_rspamd()

    def serve_rspamd(self):
        self.serve(["milter rspamd 127.0.0.1:%d" % self.rspamd.milter_port, "rcpt_ok"])

    async def test_gtube_is_rejected_with_rspamds_text(self):
        self.serve_rspamd()
        outcome = await self.send(message(GTUBE))
        self.assertEqual(outcome.data[0], 554)
        self.assertIn("Gtube pattern", outcome.data[1])
        self.assertIsNone(outcome.queued)

    async def test_rspamd_sees_the_envelope_from_our_macros(self):
        self.serve_rspamd()
        outcome = await self.send(message("hello", extra="X-Test-Echo: 1\r\n"))
        self.assertEqual(outcome.data[0], 250)
        echo = outcome.header.get_first("X-Test-Envelope")
        self.assertIsNotNone(echo, outcome.queued)
        self.assertIn("ip=127.0.0.1;", echo)
        self.assertIn("helo=client.example;", echo)
        self.assertIn("from=sender@client.example;", echo)
        self.assertIn("rcpt=alice@example.com;", echo)
        self.assertRegex(echo, r"qid=[0-9a-fw.]+\.[0-9]+;")   # our transaction id

    async def test_soft_reject_defers(self):
        self.serve_rspamd()
        outcome = await self.send(message("x", extra="X-Test-Action: soft reject\r\n"
                                               "X-Test-Message: come back later\r\n"))
        self.assertEqual(outcome.data[0] // 100, 4)
        self.assertIn("come back later", outcome.data[1])

    async def test_spam_gets_rspamds_headers(self):
        self.serve_rspamd()
        outcome = await self.send(message("x", extra="X-Test-Score: 7\r\n"))
        self.assertEqual(outcome.data[0], 250)
        self.assertTrue(outcome.header.get_first("X-Spamd-Bar", "").startswith("+++++++"),
                        outcome.queued)


class TwistdTests(unittest.TestCase):
    """A real ``twistd qpsmtpd-tx`` with clamav-milter in front of the suite's clamd and
    ``queue/maildir``; swaks sends (it is what the README's quick start uses)."""

    def setUp(self):
        self.milter = shared_clamav_milter()
        if not shutil.which("swaks"):
            raise unittest.SkipTest("swaks is not installed (apt-get install swaks; .ci/run does)")

    def swaks(self, port, body):
        return subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, "--from",
                               "a@client.example", "--to", "u@example.com", "--body", body,
                               "--timeout", "20"], capture_output=True, text=True, timeout=60)

    def test_swaks_through_twistd(self):
        maildir = os.path.abspath(self.mktemp())
        config = write_config(os.path.abspath(self.mktemp()), [
            "milter clamav unix:%s" % self.milter.socket, "rcpt_ok", "queue/maildir " + maildir])
        _, port, log = start_twistd(self, config)
        refused = self.swaks(port, "infected " + VIRUS_PATTERN)
        self.assertIn("<** 550 5.7.1 Virus found: %s" % VIRUS_NAME, refused.stdout)
        accepted = self.swaks(port, "clean")
        self.assertEqual(accepted.returncode, 0, accepted.stdout + accepted.stderr)
        [delivered] = maildir_messages(maildir)
        self.assertIn(b"\nX-Virus-Status: Clean\n", delivered)
        with open(log, "rb") as f:
            self.assertNotIn(b"Traceback", f.read())
