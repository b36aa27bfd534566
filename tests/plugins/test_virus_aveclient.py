"""virus/aveclient against a STAND-IN aveclient (tests/support/scanners.py: Kaspersky's
program cannot run here; the stand-in speaks its command line, output and exit codes as
qpsmtpd 0.94 parses them)."""

from qpsmtpd_tx import codes
from tests.support.clamd import VIRUS_PATTERN
from tests.support.filter_cases import FilterTestCase, message
from tests.support.scanners import command_lines, startup_log, vendor_standin

CONTACT = ("Unable to scan for virus, please contact admin of mx.example.org, if you feel "
           "this is an error!")


class AveClientTests(FilterTestCase):
    def setUp(self):
        self.program = vendor_standin(self, "aveclient")

    def line(self, args=""):
        return "virus/aveclient avclient_bin %s avdaemon_sock /run/aveserver %s" % (
            self.program, args)

    async def test_virus_is_refused_with_the_report(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(message("x " + VIRUS_PATTERN))
        self.assertRegex(outcome.data[1],
                         r"^Virus found: REPORT: /\S+ infected: QPTX\.Test\.Pattern$")
        self.assertEqual(outcome.data[0], 552)
        argv = command_lines(self.program)[0]
        self.assertEqual(argv[1:5], ["-p", "/run/aveserver", "-s", argv[-1]])
        self.assertTrue(argv[-1].startswith(self.server.spool_dir + "/"))

    async def test_clean_message_is_marked(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(message("clean"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("X-Virus-Checked"),
                         ["Checked by Kaspersky on mx.example.org"])

    async def test_tag(self):
        self.serve(["rcpt_ok", self.line("action tag")])
        outcome = await self.send(message(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("X-Virus-Found"), ["Yes"])

    async def test_scanner_error_is_skipped_or_deferred_with_blockonerror(self):
        # exit 1: cannot connect to aveserver
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(message("QPTX-STANDIN-EXIT-1"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.count("X-Virus-Checked"), 0)
        self.assertLogged(codes.LOGERROR, "^cannot scan: aveclient exited 1: error 1$")
        self.serve(["rcpt_ok", self.line("blockonerror 1")])
        outcome = await self.send(message("QPTX-STANDIN-EXIT-1"))
        self.assertEqual(outcome.data, (452, CONTACT))

    async def test_crash_with_blockonerror_defers(self):
        self.serve(["rcpt_ok", self.line("blockonerror 1")])
        outcome = await self.send(message("QPTX-STANDIN-CRASH"))
        self.assertEqual(outcome.data, (452, CONTACT))

    async def test_missing_program(self):
        line = "virus/aveclient avclient_bin /nonexistent/aveclient"
        _, logged = startup_log(self, [line, "rcpt_ok"])
        self.assertIn((codes.LOGWARN, "/nonexistent/aveclient is not an executable file (yet): "
                       "messages are accepted unscanned until it is"), logged)
        self.serve(["rcpt_ok", line])
        self.assertEqual((await self.send(message(VIRUS_PATTERN))).data[0], 250)
        self.serve(["rcpt_ok", line + " blockonerror 1"])
        self.assertEqual((await self.send(message(VIRUS_PATTERN))).data, (452, CONTACT))

    def test_bad_arguments(self):
        prefix = "plugins:1: plugin virus/aveclient: "
        for args, expected in [
            ("avclient_bin bin/aveclient", "unexpected characters in avclient_bin"),
            ("blockonerror maybe", "blockonerror must be 0 or 1"),
            ("avclient_bin", "arguments must be key/value pairs"),
            ("action drop", "action must be reject or tag"),
        ]:
            self.assertStartupError("virus/aveclient " + args, prefix + expected)
