"""virus/uvscan against a STAND-IN uvscan (tests/support/scanners.py: McAfee's program cannot
run here; the stand-in speaks its command line, ``Found`` lines and exit codes as qpsmtpd
0.94 parses them). Only multipart messages up to 250,000 bytes are scanned."""

from qpsmtpd_tx import codes
from tests.support.clamd import VIRUS_PATTERN
from tests.support.filter_cases import FilterTestCase
from tests.support.scanners import command_lines, multipart, startup_log, vendor_standin

FOUND = "the QPTX.Test.Pattern virus !!!"


class UVScanTests(FilterTestCase):
    def setUp(self):
        self.program = vendor_standin(self, "uvscan")

    def line(self, args=""):
        return "virus/uvscan uvscan_location %s %s" % (self.program, args)

    async def test_virus_is_refused_by_default(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(multipart(VIRUS_PATTERN))
        self.assertEqual(outcome.data, (552, "Virus Found: " + FOUND))
        self.assertEqual(command_lines(self.program)[0][1:-1],
                         ["--mime", "--unzip", "--secure", "--noboot"])

    async def test_deny_viruses_no_tags(self):
        self.serve(["rcpt_ok", self.line("deny_viruses no")])
        outcome = await self.send(multipart(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("X-Virus-Details"), [FOUND])

    async def test_password_protected_zip_is_refused(self):
        self.serve(["rcpt_ok", self.line("deny_viruses no")])
        outcome = await self.send(multipart("PASSWORD-ZIP"))
        self.assertEqual(outcome.data, (552, "We do not accept password-protected zip files!"))

    async def test_clean_and_dat_errors(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(multipart("clean"))
        self.assertEqual(outcome.header.get("X-Virus-Checked"),
                         ["Checked by McAfee uvscan on mx.example.org"])
        outcome = await self.send(multipart("QPTX-STANDIN-EXIT-8"))
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGERROR, "^cannot scan: The program could not find a DAT file.$")

    async def test_missing_program_is_an_error_not_a_virus(self):
        line = "virus/uvscan uvscan_location /nonexistent/uvscan"
        _, logged = startup_log(self, [line, "rcpt_ok"])
        self.assertIn((codes.LOGWARN, "/nonexistent/uvscan is not an executable file (yet): "
                       "messages are not scanned until it is"), logged)
        self.serve(["rcpt_ok", line])
        self.assertEqual((await self.send(multipart("clean"))).data[0], 250)
