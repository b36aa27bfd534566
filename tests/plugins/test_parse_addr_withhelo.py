"""Tests of the parse_addr_withhelo plugin: no MAIL/RCPT parameters after HELO, only after
EHLO. In memory (MemoryClient), its parser directly, and a session over a loopback socket.
"""

from qpsmtpd_tx import codes
from tests.support.envelope_cases import EndToEndTestCase, PluginTestCase, mail_ok, rcpt_ok
from tests.support.harness import plugin_module


class ParseAddrWithHeloTests(PluginTestCase):
    def session(self, greeting="HELO c.example", plugins=("parse_addr_withhelo", "rcpt_ok")):
        client = self.client(list(plugins))
        client.command(greeting)
        return client

    def test_no_parameters_after_helo(self):
        client = self.session()
        table = [
            ("MAIL FROM:<a@b.example> SIZE=10", "501 No parameters allowed in MAIL\r\n"),
            ("MAIL FROM:a@b.example SIZE=10", "501 No parameters allowed in MAIL\r\n"),
            ("MAIL FROM:<a@b.example>x", "501 No parameters allowed in MAIL\r\n"),
            ("MAIL FROM:foo", "501 Could not parse your MAIL FROM command\r\n"),
            ("MAIL FROM :<a@b.example>", "501 Syntax error in command\r\n"),
            ("MAIL FROM:a@b.example", "501 could not parse your mail from command\r\n"),
            ("MAIL FROM:", mail_ok("<>")),
            ("MAIL FROM: <a@b.example>  ", mail_ok("<a@b.example>")),
            ("RCPT TO:<u@example.com> NOTIFY=NEVER", "501 No parameters allowed in RCPT\r\n"),
            ("RCPT TO:foo", "501 Could not parse your RCPT TO command\r\n"),
            ("RCPT TO <u@example.com>", "501 Syntax error in command\r\n"),
            ("RCPT TO:postmaster", "501 could not parse recipient\r\n"),
            ("RCPT TO:<u@example.com>", rcpt_ok("<u@example.com>")),
            ("RCPT TO:<Postmaster>", rcpt_ok("<postmaster>")),
        ]
        for line, reply in table:
            self.assertEqual(client.command(line), reply, line)

    def test_with_dont_require_anglebrackets(self):
        client = self.session(plugins=("parse_addr_withhelo", "dont_require_anglebrackets",
                                       "rcpt_ok"))
        self.assertEqual(client.command("MAIL FROM:a@b.example"), mail_ok("<a@b.example>"))
        self.assertEqual(client.command("RCPT TO:postmaster"), rcpt_ok("<postmaster>"))
        self.assertEqual(client.command("RCPT TO:u@example.com"), rcpt_ok("<u@example.com>"))

    def test_parameters_allowed_after_ehlo(self):
        client = self.session("EHLO c.example")
        self.assertEqual(client.command("MAIL FROM:<a@b.example> SIZE=10"),
                         mail_ok("<a@b.example>"))
        self.assertEqual(client.command("RCPT TO:<u@example.com> NOTIFY=NEVER"),
                         rcpt_ok("<u@example.com>"))

    def test_parse(self):
        parse = plugin_module("parse_addr_withhelo").parse
        table = [
            ("mail", "FROM:<a@b.example>", (codes.OK, ("<a@b.example>", {}))),
            ("mail", "from:   <a@b.example>  ", (codes.OK, ("<a@b.example>", {}))),
            ("mail", "FROM:<a@b> <c@d>", (codes.OK, ("<a@b> <c@d>", {}))),
            ("mail", "FROM:a@b.example", (codes.OK, ("a@b.example", {}))),
            ("mail", "FROM:", (codes.OK, ("<>", {}))),
            ("mail", "FROM:<a@b.example> BODY=8BITMIME",
             (codes.DENY, "No parameters allowed in MAIL")),
            ("mail", "TO:<a@b.example>", (codes.DENY, "Syntax error in command")),
            ("rcpt", "To:POSTMASTER", (codes.OK, ("POSTMASTER", {}))),
            ("rcpt", "TO:", (codes.DENY, "Could not parse your RCPT TO command")),
            ("rcpt", "TO:x@y z", (codes.DENY, "No parameters allowed in RCPT")),
        ]
        for kind, line, expected in table:
            self.assertEqual(parse(kind, line), expected, line)

    def test_takes_no_arguments(self):
        self.assertStartupError(["parse_addr_withhelo 1"],
                                ":1: plugin parse_addr_withhelo: arguments must be key/value pairs")


class EndToEndTests(EndToEndTestCase):
    async def test_parse_addr_withhelo(self):
        _, replies = await self.talk(["parse_addr_withhelo", "rcpt_ok"], {},
                                     ["HELO c.example", "MAIL FROM:<a@b.example> SIZE=100",
                                      "MAIL FROM:<a@b.example>",
                                      "RCPT TO:<u@example.com> NOTIFY=NEVER"])
        self.assertEqual(replies[1:], [
            (501, ["No parameters allowed in MAIL"]),
            (250, ["<a@b.example>, sender OK - how exciting to get mail from you!"]),
            (501, ["No parameters allowed in RCPT"])])
