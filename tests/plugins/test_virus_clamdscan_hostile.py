"""The ``virus/clamdscan`` plugin against a broken or hostile clamd: a virus name holding line
breaks (it reaches the reply and a header field), an answer of megabytes, one that never
ends. Against stand-in clamds on 127.0.0.1 ports (tests/support/filter_cases.py; the real
clamd of tests/plugins/test_virus_clamdscan.py does not answer like this); the SMTP server
is real, on a loopback socket."""

from qpsmtpd_tx import codes
from tests.support.endless import endless_server
from tests.support.filter_cases import FilterTestCase, answering_server, message

UNABLE = (452, "Unable to scan for viruses")


class HostileClamdTests(FilterTestCase):
    def clamd(self, port, args=""):
        self.serve(["rcpt_ok", "virus/clamdscan clamd_host 127.0.0.1 clamd_port %d %s" % (port, args)])

    async def test_virus_name_with_line_breaks_in_the_reply(self):
        self.clamd(answering_server(self, b"stream: Evil\r250 fine\rX\n250 OK FOUND\0"))
        client = await self.open()
        await client.command("MAIL FROM:<a@client.example>")
        await client.command("RCPT TO:<alice@example.com>")
        await client.command("DATA")
        client.send(message("x") + ".")
        code, lines = await client.reply()
        # the session drops a bare CR and makes a line of each LF-separated part, with the code
        self.assertEqual((code, lines), (552, ["Virus found: Evil250 fineX", "250 OK"]))

    async def test_virus_name_with_line_breaks_in_the_header(self):
        self.clamd(answering_server(self, b"stream: Evil\r\nBcc: forged@example.net FOUND\0"),
                   "action tag")
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("Bcc"), [])
        self.assertEqual(outcome.header.get("X-Virus-Details"), ["Evil Bcc: forged@example.net"])

    async def test_answer_of_megabytes(self):
        self.clamd(answering_server(self, b"stream: " + b"E" * (3 << 20) + b" FOUND\0"))
        self.assertEqual((await self.send(message("x"))).data, UNABLE)
        self.assertLogged(codes.LOGERROR, "answer longer than 65536 bytes")

    async def test_answer_that_never_ends(self):
        port, _ = endless_server(self, b"stream: ", b"E" * 65536)
        self.clamd(port, "timeout 60")
        self.assertEqual((await self.send(message("x"))).data, UNABLE)
        self.assertLogged(codes.LOGERROR, "answer longer than 65536 bytes")
