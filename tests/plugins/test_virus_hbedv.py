"""virus/hbedv against a STAND-IN antivir (tests/support/scanners.py: H+BEDV's program cannot
run here; the stand-in speaks its command line, ``ALERT:`` lines and exit codes as qpsmtpd
0.94 parses them), with and without the hbedv_deny config file."""

from qpsmtpd_tx import codes
from tests.support.clamd import VIRUS_PATTERN
from tests.support.filter_cases import FilterTestCase, message
from tests.support.scanners import STANDIN_VIRUS, command_lines, startup_log, vendor_standin


class HBEDVTests(FilterTestCase):
    def setUp(self):
        self.program = vendor_standin(self, "antivir")

    def line(self, args=""):
        return "virus/hbedv hbedvscanner %s %s" % (self.program, args)

    async def test_any_virus_is_refused_without_hbedv_deny(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(message(VIRUS_PATTERN))
        self.assertEqual(outcome.data, (552, "Virus found: " + STANDIN_VIRUS))
        self.assertEqual(command_lines(self.program)[0][1:-1], [
            "--archive-max-recursion=50", "--alltypes", "-z", "-noboot", "-nombr", "-rs"])

    async def test_hbedv_deny_decides(self):
        self.serve(["rcpt_ok", self.line()], {"hbedv_deny": "Other/.*\n"})
        outcome = await self.send(message(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.top(3), ["X-H+BEDV-Virus-Checked: Checked",
                                          "X-H+BEDV-Virus-Details: " + STANDIN_VIRUS,
                                          "X-H+BEDV-Virus-Found: Yes"])
        outcome = await self.send(message(VIRUS_PATTERN + " SECOND-VIRUS"))
        self.assertEqual(outcome.data, (552, "Virus found: %s, Other/Worm" % STANDIN_VIRUS))

    async def test_clean_message(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(message("clean"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.top(1), ["X-H+BEDV-Virus-Checked: Checked"])

    async def test_error_exit_is_logged_and_accepted(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(message("QPTX-STANDIN-EXIT-214"))
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGWARN, "^License key not found$")

    async def test_missing_program(self):
        line = "virus/hbedv hbedvscanner /nonexistent/antivir"
        _, logged = startup_log(self, [line, "rcpt_ok"])
        self.assertIn((codes.LOGWARN, "/nonexistent/antivir is not an executable file (yet): "
                       "messages are not scanned until it is"), logged)
        self.serve(["rcpt_ok", line])
        outcome = await self.send(message(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.count("X-H+BEDV-Virus-Checked"), 0)

    def test_bad_arguments_and_patterns(self):
        prefix = "plugins:1: plugin virus/hbedv: "
        self.assertStartupError("virus/hbedv hbedvscanner", prefix + "arguments must be key/value")
        self.assertStartupError("virus/hbedv hbedvscanner /opt/anti vir",
                                prefix + "arguments must be key/value")
        self.assertStartupError("virus/hbedv", "hbedv_deny:1: bad regular expression 'Worm/(['",
                                {"hbedv_deny": "Worm/([\n"})
