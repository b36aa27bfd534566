"""Tests of the dont_require_anglebrackets plugin (MAIL FROM:a@b without brackets), on a
real SMTPProtocol in memory (MemoryClient) and over a loopback socket (``EndToEndTests``).
"""

from tests.support.envelope_cases import EndToEndTestCase, PluginTestCase, mail_ok, rcpt_ok


class DontRequireAnglebracketsTests(PluginTestCase):
    def test_bare_addresses_are_wrapped(self):
        client = self.client(["dont_require_anglebrackets", "rcpt_ok"])
        client.command("EHLO c.example")
        self.assertEqual(client.command("MAIL FROM:a@b.example"), mail_ok("<a@b.example>"))
        self.assertEqual(client.session.connection.notes["karma"], -2)
        self.assertEqual(client.command("RCPT TO:u@example.com"), rcpt_ok("<u@example.com>"))
        self.assertEqual(client.command("RCPT TO:postmaster"), rcpt_ok("<postmaster>"))
        self.assertEqual(client.session.connection.notes["karma"], -6)
        self.assertEqual(client.command("RCPT TO:<v@example.com>"), rcpt_ok("<v@example.com>"))
        self.assertEqual(client.command("MAIL FROM:<c@d.example>"), mail_ok("<c@d.example>"))
        self.assertEqual(client.command("MAIL FROM:"), mail_ok("<>"))
        self.assertEqual(client.session.connection.notes["karma"], -6)

    def test_without_the_plugin_brackets_are_required(self):
        client = self.client(["rcpt_ok"])
        client.command("EHLO c.example")
        self.assertEqual(client.command("MAIL FROM:a@b.example"),
                         "501 could not parse your mail from command\r\n")
        client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(client.command("RCPT TO:u@example.com"),
                         "501 could not parse recipient\r\n")

    def test_what_is_still_no_address_is_refused(self):
        client = self.client(["dont_require_anglebrackets", "rcpt_ok"])
        client.command("EHLO c.example")
        self.assertEqual(client.command("MAIL FROM:<a@b.example"),
                         "501 could not parse your mail from command\r\n")
        self.assertEqual(client.command("MAIL FROM:a@b.example c@d.example"),
                         "501 Syntax error in parameters\r\n")

    def test_bracketed_addresses_go_to_the_next_plugin(self):
        client = self.client(["dont_require_anglebrackets", "scripted mail_pre OK <x@y.example>",
                              "rcpt_ok"])
        client.command("EHLO c.example")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), mail_ok("<x@y.example>"))

    def test_takes_no_arguments(self):
        self.assertStartupError(["dont_require_anglebrackets yes"],
                                ":1: plugin dont_require_anglebrackets: arguments must be "
                                "key/value pairs")


class EndToEndTests(EndToEndTestCase):
    async def test_dont_require_anglebrackets(self):
        _, replies = await self.talk(["dont_require_anglebrackets", "rcpt_ok"], {},
                                     ["EHLO c.example", "MAIL FROM:a@b.example",
                                      "RCPT TO:u@example.com"])
        self.assertEqual(replies[1:], [
            (250, ["<a@b.example>, sender OK - how exciting to get mail from you!"]),
            (250, ["<u@example.com>, recipient ok"])])
