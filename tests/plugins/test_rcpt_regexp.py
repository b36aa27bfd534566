"""Tests of the rcpt_regexp plugin: per-recipient rules (address or /pattern/, return code,
text) at RCPT, through MemoryClient and over a loopback socket (``EndToEndTests``).
"""

from tests.support.envelope_cases import (
    DENIED, ROUTING_RECIPIENTS, EndToEndTestCase, PluginTestCase, rcpt_ok)


RCPT_REGEXP = """\
# rcpt_regexp - config for rcpt_regexp plugin
me@myhost.org           OK       Accepting mail
/^USER\\d+@doma\\.in$/   OK       Accepting mail
info@myhost.org         DENY     User not found.
/^unused@.*/            DENY_DISCONNECT  Gone.
/^fall@/                DECLINED Fall through to the next plugin
/^nocomment@/           DENY
/^soft@/                DENYSOFT later   please
/^num@/                 902      by number
lower@x.example         deny     lower case
/foo/i                  DENY     not a pattern: compared as an address
"""


class RcptRegexpTests(PluginTestCase):
    def session(self, files=None):
        files = {"rcpt_regexp": RCPT_REGEXP} if files is None else files
        client = self.client(["rcpt_regexp", "rcpt_ok"], files)
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        return client

    def test_rules(self):
        client = self.session()
        table = [
            ("me@myhost.org", rcpt_ok("<me@myhost.org>")),      # rcpt_ok would refuse it
            ("User12@Doma.in", rcpt_ok("<User12@Doma.in>")),
            ("Info@MyHost.org", "550 User not found.\r\n"),
            ("fall@elsewhere.example", "550 Relaying denied (#5.7.1)\r\n"),  # rcpt_ok decides
            ("fall@example.com", rcpt_ok("<fall@example.com>")),
            ("nocomment@x.example", "550 relaying denied\r\n"),
            ("soft@x.example", "450 later   please\r\n"),
            ("num@x.example", "450 by number\r\n"),
            ("lower@x.example", "550 lower case\r\n"),
            ("foo@x.example", "550 Relaying denied (#5.7.1)\r\n"),
            ("other@example.com", rcpt_ok("<other@example.com>")),
            ("postmaster", rcpt_ok("<postmaster>")),
        ]
        for rcpt, reply in table:
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt), reply, rcpt)
        self.assertFalse(client.closed)
        self.assertEqual(client.command("RCPT TO:<unused@x.example>"), "550 Gone.\r\n")
        self.assertTrue(client.closed)

    def test_an_ok_rule_does_not_accept_routing_local_parts(self):
        # A broad OK rule would hand <victim%evil.example@example.com> to a back end that
        # relays it (see RcptOkTests); rcpt_ok is not even loaded here.
        client = self.client(["rcpt_regexp"], {"rcpt_regexp": "/@example\\.com$/ OK"})
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        for address, _ in ROUTING_RECIPIENTS[:5]:
            self.assertEqual(client.command("RCPT TO:%s" % address), DENIED, address)
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), rcpt_ok("<u@example.com>"))
        relay = self.client(["relay", "rcpt_regexp"], {"relayclients": "192.0.2.1",
                                                       "rcpt_regexp": "/@example\\.com$/ OK"})
        relay.command("HELO c.example")
        relay.command("MAIL FROM:<a@b.example>")
        self.assertRegex(relay.command("RCPT TO:<victim%evil.example@example.com>"), "^250 ")

    def test_first_matching_line_wins(self):
        client = self.session({"rcpt_regexp": "/^a/ DENY first\na@example.com OK second"})
        self.assertEqual(client.command("RCPT TO:<a@example.com>"), "550 first\r\n")

    def test_no_file_declines(self):
        client = self.session({})
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), rcpt_ok("<u@example.com>"))

    def test_bad_lines_stop_startup(self):
        table = [
            ("ok@x.example OK\nlonely@x.example", 2, "no return code after 'lonely@x.example'"),
            ("/x/ MAYBE text", 1, "'MAYBE' is not a return code a rcpt rule can give"),
            ("/x/ DONE", 1, "'DONE' is not a return code a rcpt rule can give"),
            ("/x/ YIELD", 1, "'YIELD' is not a return code a rcpt rule can give"),
            ("# c\n/^(x/ DENY", 2, "bad regular expression '^(x'"),
        ]
        for text, lineno, expected in table:
            self.assertConfigLineError(["rcpt_regexp"], {"rcpt_regexp": text}, "rcpt_regexp",
                                       lineno, expected)
        self.assertStartupError(["rcpt_regexp foo bar"],
                                ":1: plugin rcpt_regexp: unknown argument 'foo'")


class EndToEndTests(EndToEndTestCase):
    async def test_rcpt_regexp(self):
        _, replies = await self.talk(["rcpt_regexp", "rcpt_ok"],
                                     {"rcpt_regexp": "/^v@/ DENYSOFT come back later"},
                                     ["HELO c.example", "MAIL FROM:<a@b.example>",
                                      "RCPT TO:<u@example.com>", "RCPT TO:<V@example.com>"])
        self.assertEqual(replies[2:], [(250, ["<u@example.com>, recipient ok"]),
                                       (450, ["come back later"])])
