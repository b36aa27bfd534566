"""virus/kavscanner against a STAND-IN kavscanner (tests/support/scanners.py: Kaspersky's
program cannot run here; the stand-in speaks its command line, ``infected:``/``suspicion:``
lines and exit codes as qpsmtpd 0.94 parses them). As in 0.94, viruses are tagged."""

from qpsmtpd_tx import codes
from tests.support.clamd import VIRUS_PATTERN
from tests.support.filter_cases import FilterTestCase, message
from tests.support.scanners import command_lines, startup_log, vendor_standin

DETAILS = "infected by: QPTX.Test.Pattern; suspicions: Type_Win32"


class KavScannerTests(FilterTestCase):
    def setUp(self):
        self.program = vendor_standin(self, "kavscanner")

    def line(self, args=""):
        return "virus/kavscanner kavscanner_bin %s %s" % (self.program, args)

    async def test_virus_is_tagged_and_bcc_added(self):
        self.serve(["rcpt_ok", self.line("bcc_virusadmin viradm@example.com")])
        client = await self.open()
        outcome = await self.transaction(client, ["alice@example.com"],
                                         message(VIRUS_PATTERN + " SUSPICIOUS"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual([raw.decode().rstrip("\n") for _, raw in outcome.header.fields[-3:]], [
            "X-Virus-Found: Yes", "X-Virus-Details: " + DETAILS,
            "X-Virus-Checked: Checked by mx.example.org"])
        self.assertEqual(command_lines(self.program)[0][1:-1],
                         ["-Y", "-P", "-B", "-MP", "-MD", "-*"])
        self.assertLogged(codes.LOGINFO, "^adding <viradm@example.com> as a recipient$")

    async def test_action_reject(self):
        self.serve(["rcpt_ok", self.line("action reject")])
        outcome = await self.send(message(VIRUS_PATTERN))
        self.assertEqual(outcome.data,
                         (552, "Virus found: infected by: QPTX.Test.Pattern; suspicions: "))

    async def test_clean(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(message("clean"))
        self.assertEqual(outcome.header.get("X-Virus-Checked"), ["Checked by mx.example.org"])

    async def test_error_exit_skips(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(message("QPTX-STANDIN-EXIT-5"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.count("X-Virus-Checked"), 0)
        self.assertLogged(codes.LOGERROR, "exit status 5$")

    async def test_missing_program(self):
        _, logged = startup_log(self, ["virus/kavscanner", "rcpt_ok"])
        self.assertIn((codes.LOGWARN, "/opt/AVP/kavscanner is not an executable file (yet): "
                       "messages are not scanned until it is"), logged)

    def test_bad_arguments(self):
        prefix = "plugins:1: plugin virus/kavscanner: "
        self.assertStartupError("virus/kavscanner bcc_virusadmin nobody",
                                prefix + "bcc_virusadmin: 'nobody' is not an address")
        self.assertStartupError("virus/kavscanner kavscanner_bin", prefix + "arguments must be")
