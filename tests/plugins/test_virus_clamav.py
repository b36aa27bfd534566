"""virus/clamav with ClamAV's real command-line scanners: clamscan loading the suite's
signature file (``database=``), and clamdscan asking the suite's private clamd
(tests/support/clamd.py) through its own clamd.conf (``clamd_conf=``). Also: a missing
program (start-up warning, then qpsmtpd's 452 or, with ``declined_on_fail``, acceptance), a
scanner error, one that hangs (a stand-in shell-less script, killed after ``timeout``), and
the per-recipient ``virus_action``; and the same replies as Perl qpsmtpd 0.94's plugin with
clamdscan (when it is installed)."""

import os

from twisted.trial import unittest

from qpsmtpd_tx import codes
from tests.support.clamd import VIRUS_NAME, VIRUS_PATTERN, shared_clamd
from tests.support.filter_cases import FilterTestCase, message
from tests.support.perl_qpsmtpd import start_both
from tests.support.scanners import command_lines, standin, startup_log
from tests.support.smtp_session import data_reply

CLAMSCAN = "/usr/bin/clamscan"
CLAMDSCAN = "/usr/bin/clamdscan"


class ClamAVTests(FilterTestCase):
    def setUp(self):
        self.clamd = shared_clamd()
        self.database = os.path.join(self.clamd.dir, "db")
        self.conf = os.path.join(self.clamd.dir, "clamd.conf")

    def clamscan(self, args=""):
        return "virus/clamav clamscan_path=%s database=%s %s" % (CLAMSCAN, self.database, args)

    def clamdscan(self, args=""):
        return "virus/clamav clamscan_path=%s clamd_conf=%s %s" % (CLAMDSCAN, self.conf, args)

    async def test_clamscan_refuses_a_virus_with_qpsmtpds_text(self):
        self.serve(["rcpt_ok", self.clamscan("action=reject")])
        outcome = await self.send(message("hello " + VIRUS_PATTERN))
        self.assertEqual(outcome.data, (552, "Virus Found: %s" % VIRUS_NAME))
        self.assertIsNone(outcome.queued)

    async def test_clamscan_passes_a_clean_message(self):
        self.serve(["rcpt_ok", self.clamscan("action=reject")])
        outcome = await self.send(message("clean"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("X-Virus-Checked"),
                         ["Checked by ClamAV on mx.example.org"])
        self.assertEqual(outcome.header.fields[-1][0], "X-Virus-Checked")
        self.assertEqual(os.listdir(self.server.spool_dir), [])

    async def test_clamdscan_asks_the_clamd(self):
        self.serve(["rcpt_ok", self.clamdscan("action=reject")])
        outcome = await self.send(message("hello " + VIRUS_PATTERN))
        self.assertEqual(outcome.data, (552, "Virus Found: %s" % VIRUS_NAME))
        outcome = await self.send(message("clean"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("X-Virus-Checked"),
                         ["Checked by ClamAV on mx.example.org"])

    async def test_default_action_adds_headers(self):
        self.serve(["rcpt_ok", self.clamscan()])
        outcome = await self.send(message(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual([n for n, _ in outcome.header.fields[-2:]],
                         ["X-Virus-Found", "X-Virus-Details"])
        self.assertEqual(outcome.header.get("X-Virus-Details"), [VIRUS_NAME])
        self.assertEqual(outcome.header.count("X-Virus-Checked"), 0)

    async def test_per_recipient_virus_action(self):
        self.serve(["note_rcpt strict@example.com virus_action=reject", "rcpt_ok",
                    self.clamscan()])
        outcome = await self.send(message(VIRUS_PATTERN), rcpts=["strict@example.com"])
        self.assertEqual(outcome.data, (552, "Virus Found: %s" % VIRUS_NAME))
        outcome = await self.send(message(VIRUS_PATTERN), rcpts=["other@example.com"])
        self.assertEqual(outcome.data[0], 250)

    async def test_max_size_skips_bigger_messages(self):
        self.serve(["rcpt_ok", self.clamscan("action=reject max_size=1000")])
        outcome = await self.send(message(VIRUS_PATTERN + "\r\n" + "padding " * 200))
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGWARN, r"^skip, too big to scan \(\d+ > 1000\)$")

    async def test_missing_program_warns_at_start_and_defers(self):
        line = "virus/clamav /nonexistent/clamdscan action=reject"
        _, logged = startup_log(self, [line, "rcpt_ok"])
        self.assertIn((codes.LOGWARN, "/nonexistent/clamdscan is not an executable file (yet): "
                       "messages get 452 until it is"), logged)
        self.serve(["rcpt_ok", line])
        outcome = await self.send(message(VIRUS_PATTERN))
        self.assertEqual(outcome.data, (452, "Message denied temporarily"))
        self.assertLogged(codes.LOGERROR, "^cannot scan: cannot run /nonexistent/clamdscan: ")

    async def test_missing_program_with_declined_on_fail_accepts(self):
        self.serve(["rcpt_ok", "virus/clamav /nonexistent/clamscan declined_on_fail"])
        outcome = await self.send(message(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.count("X-Virus-Checked"), 0)

    async def test_scanner_error_defers(self):
        # clamscan exits 2 when it cannot load the signatures
        self.serve(["rcpt_ok", "virus/clamav clamscan_path=%s database=/nonexistent" % CLAMSCAN])
        outcome = await self.send(message("clean"))
        self.assertEqual(outcome.data, (452, "Message denied temporarily"))
        self.assertLogged(codes.LOGERROR, "^cannot scan: ClamAV error: %s exited 2$" % CLAMSCAN)

    async def test_scanner_that_hangs_is_killed_and_defers(self):
        # a stand-in for a clamscan that never finishes
        program = standin(self, "clamscan", "marker(open(sys.argv[-1]).read())\n")
        self.serve(["rcpt_ok", "virus/clamav clamscan_path=%s timeout=0.5" % program])
        outcome = await self.send(message("QPTX-STANDIN-HANG"))
        self.assertEqual(outcome.data, (452, "Message denied temporarily"))
        self.assertLogged(codes.LOGERROR, "did not finish within 0.5 seconds")
        self.assertEqual(command_lines(program)[0][:3], [program, "--stdout", "--no-summary"])
        self.assertEqual(os.listdir(self.server.spool_dir), [])

    async def test_scanner_that_crashes_defers(self):
        program = standin(self, "clamdscan", "marker(open(sys.argv[-1]).read())\n")
        self.serve(["rcpt_ok", "virus/clamav clamscan_path=%s back_compat" % program])
        outcome = await self.send(message("QPTX-STANDIN-CRASH"))
        self.assertEqual(outcome.data, (452, "Message denied temporarily"))
        self.assertLogged(codes.LOGERROR, "killed by signal 11")
        self.assertEqual(command_lines(program)[0][1:6], [
            "--stdout", "-i", "--max-recursion=50", "--config-file=/etc/clamd.conf",
            "--no-summary"])

    def test_bad_arguments(self):
        prefix = "plugins:1: plugin virus/clamav: "
        for args, expected in [
            ("action=delete", "action must be add-header or reject, got 'delete'"),
            ("colour=blue", "unrecognized argument 'colour=blue'"),
            ("max_size=big", "max_size must be a positive number"),
            ("timeout=-1", "timeout must be a positive number of seconds"),
            ("clamscan_path=/usr/bin/clam$scan", "unexpected characters in clamscan_path"),
            ("tmp_dir=/nonexistent", "tmp_dir /nonexistent does not exist"),
        ]:
            self.assertStartupError("virus/clamav " + args, prefix + expected)


class PerlComparisonTests(unittest.TestCase):
    """Both servers run clamdscan against the suite's clamd (it reads the spool files: it
    runs as root here)."""

    def test_same_replies_as_qpsmtpd_with_clamdscan(self):
        clamd = shared_clamd()
        line = "virus/clamav clamscan_path=%s clamd_conf=%s action=reject" % (
            CLAMDSCAN, os.path.join(clamd.dir, "clamd.conf"))
        perl, ours, _ = start_both(self, ["rcpt_ok", line, "queue/maildir {}"], {}, None,
                                   "qptx-clamav-")
        messages = [message("hello " + VIRUS_PATTERN), message("clean")]
        replies = {port: [data_reply(port, m) for m in messages] for port in (perl, ours)}
        self.assertEqual(replies[ours][0], (552, "Virus Found: %s" % VIRUS_NAME))
        self.assertEqual(replies[perl][0], replies[ours][0])
        self.assertEqual([code for code, _ in replies[perl]], [552, 250])
        self.assertEqual([code for code, _ in replies[ours]], [552, 250])
