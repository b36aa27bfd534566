"""MAIL and RCPT lines a hostile client may send, within the 512-byte command line: hundreds
of parameters, SIZE with hundreds of digits or non-ASCII digits, quoted local parts with
escapes and NUL, source routes, malformed address literals, NUL and 8-bit bytes. Each gets
a clear reply (250, 501 or 552), never a 451 or a logged error. In memory (MemoryClient)."""

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.testing import capture_log
from tests.support.harness import MemoryClient, make_server

OK_SENDER = "250 <%s>, sender OK - how exciting to get mail from you!\r\n"
BAD_SENDER = "501 could not parse your mail from command\r\n"
BAD_PARAMETERS = "501 Syntax error in parameters\r\n"

MAIL = [
    ("<a@b.example> " + "A " * 240, OK_SENDER % "a@b.example"),
    ("<a@b.example> SIZE=" + "9" * 480, "552 Message too big!\r\n"),
    ("<a@b.example> SIZE=" + "\u0669" * 200, BAD_PARAMETERS),
    ("<a@b.example> BODY=8BITMIME SMTPUTF8 AUTH=<> AUTH=x+2Bz", OK_SENDER % "a@b.example"),
    ('<"a\\"b\\\\c"@b.example>', OK_SENDER % '"a\\"b\\\\c"@b.example'),
    ('<"a\\\x00"@b.example>', BAD_SENDER),
    ('<"\\', BAD_SENDER),
    ("<@a.example,@b.example:u@c.example>", OK_SENDER % "u@c.example"),
    ("<@[192.0.2.1]:u@c.example>", BAD_SENDER),
    ("<u@[IPv6:::1]>", OK_SENDER % "u@[IPv6:::1]"),
    ("<u@[IPv6:1:2:3:4:5:6:7:8:9]>", BAD_SENDER),
    ("<u@[IPv6:fe80::1%eth0]>", BAD_SENDER),
    ("<u@[IPv6:::ffff:1.2.3.999]>", BAD_SENDER),
    ("<u@[300.1.1.1]>", BAD_SENDER),
    ("<u@[1.2.3]>", BAD_SENDER),
    ("<u@[]>", BAD_SENDER),
    ("<u@[IPv6:" + ":" * 200 + "]>", BAD_SENDER),
    ("<u\x00@b.example>", BAD_SENDER),
    ("<u@b.example\x00>", BAD_SENDER),
    ("<\xe9@b.example>", BAD_SENDER),
    ("<u@b.example> X=\xe9", BAD_PARAMETERS),
    ("<u@b.example> \x00=1", BAD_PARAMETERS),
    ("<" + "a" * 65 + "@b.example>", BAD_SENDER),
    ("<<<<>>>>", BAD_SENDER),
]


class HostileEnvelopeTests(unittest.TestCase):
    def test_mail_lines(self):
        server = make_server(self, ["rcpt_ok"], {"databytes": "1000"})
        client = MemoryClient(server)
        lines = capture_log(self, server)
        self.patch(server.chain.hooks, "log", lambda level, text, **kw: lines.append((level, text)))
        client.command("EHLO c.example")
        for rest, reply in MAIL:
            line = "MAIL FROM:" + rest
            self.assertLessEqual(len(line.encode("utf-8")), 510, rest)
            self.assertEqual(client.command(line), reply, rest)
        client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(client.command("RCPT TO:<\"x y\"@example.com> NOTIFY=NEVER " + "Q=1 " * 100),
                         "250 <\"x y\"@example.com>, recipient ok\r\n")
        self.assertEqual(client.command("RCPT TO:<a@example.com\r>"), BAD_PARAMETERS)
        self.assertEqual(client.command("RCPT TO:<>"), "501 could not parse recipient\r\n")
        self.assertEqual([text for level, text in lines if level <= codes.LOGWARN], [])
