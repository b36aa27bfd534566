"""virus/bitdefender against a STAND-IN bdc (tests/support/scanners.py: BitDefender's program
cannot run here; the stand-in speaks its command line and output as qpsmtpd 0.94 parses
them). Only multipart messages up to ``max_size`` KB are scanned."""

from qpsmtpd_tx import codes
from tests.support.clamd import VIRUS_PATTERN
from tests.support.filter_cases import FilterTestCase, message
from tests.support.scanners import (STANDIN_VIRUS, command_lines, multipart, startup_log,
                                    vendor_standin)


class BitDefenderTests(FilterTestCase):
    def setUp(self):
        self.program = vendor_standin(self, "bdc")

    def line(self, args=""):
        return "virus/bitdefender bitdefender_location %s %s" % (self.program, args)

    async def test_virus_is_refused(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(multipart(VIRUS_PATTERN))
        self.assertEqual(outcome.data, (552, "Virus Found: " + STANDIN_VIRUS))
        self.assertEqual(command_lines(self.program)[0][1:4], ["--mail", "--all", "--arc"])

    async def test_clean_and_non_multipart_messages_pass(self):
        self.serve(["rcpt_ok", self.line()])
        self.assertEqual((await self.send(multipart("clean"))).data[0], 250)
        outcome = await self.send(message(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGINFO, "^skip, non-multipart mail$")
        self.assertEqual(len(command_lines(self.program)), 1)

    async def test_deny_viruses_no_tags(self):
        self.serve(["rcpt_ok", self.line("deny_viruses no")])
        outcome = await self.send(multipart(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("X-Virus-Details"), [STANDIN_VIRUS])

    async def test_max_size(self):
        self.serve(["rcpt_ok", self.line("max_size 1")])
        outcome = await self.send(multipart(VIRUS_PATTERN + "\r\n" + "padding " * 200))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(command_lines(self.program), [])

    async def test_timeout_skips(self):
        self.serve(["rcpt_ok", self.line("timeout 0.5")])
        outcome = await self.send(multipart(VIRUS_PATTERN + " QPTX-STANDIN-HANG"))
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGERROR, "did not finish within 0.5 seconds")

    async def test_missing_program(self):
        line = "virus/bitdefender bitdefender_location /nonexistent/bdc"
        _, logged = startup_log(self, [line, "rcpt_ok"])
        self.assertIn((codes.LOGWARN, "/nonexistent/bdc is not an executable file (yet): "
                       "messages are not scanned until it is"), logged)
        self.serve(["rcpt_ok", line])
        self.assertEqual((await self.send(multipart(VIRUS_PATTERN))).data[0], 250)

    def test_bad_arguments(self):
        prefix = "plugins:1: plugin virus/bitdefender: "
        for args, expected in [
            ("deny_viruses maybe", "deny_viruses must be yes or no"),
            ("max_size 0", "max_size must be a positive number"),
            ("deny_viruses yes action tag", "deny_viruses and action disagree"),
        ]:
            self.assertStartupError("virus/bitdefender " + args, prefix + expected)
