"""Tests of the badmailfromto plugin: sender/recipient pairs refused at RCPT, on an
in-memory client (MemoryClient) and in one session over a loopback socket (``EndToEndTests``).
"""

from tests.support.envelope_cases import EndToEndTestCase, PluginTestCase, mail_ok, rcpt_ok


BADMAILFROMTO = """\
stalker@example.net\tvictim@example.com
@spammy.example      sales@example.com   (a comment)
a@from.example u@example.com
@from.example v@example.com
both@x.example @example.com
"""


class BadMailFromToTests(PluginTestCase):
    def session(self, sender):
        client = self.client(["badmailfromto", "rcpt_ok"], {"badmailfromto": BADMAILFROMTO})
        client.command("HELO c.example")
        self.assertEqual(client.command("MAIL FROM:%s" % sender), mail_ok(sender))
        return client

    def test_pair_refused_and_others_pass(self):
        client = self.session("<Stalker@Example.NET>")
        self.assertEqual(client.command("RCPT TO:<Victim@example.com>"),
                         "550 mail to victim@example.com not accepted here\r\n")
        self.assertEqual(client.command("RCPT TO:<other@example.com>"),
                         rcpt_ok("<other@example.com>"))
        client = self.session("<other@example.net>")
        self.assertEqual(client.command("RCPT TO:<victim@example.com>"),
                         rcpt_ok("<victim@example.com>"))

    def test_sender_domain(self):
        client = self.session("<anyone@spammy.example>")
        self.assertEqual(client.command("RCPT TO:<sales@example.com>"),
                         "550 mail to sales@example.com not accepted here\r\n")
        self.assertEqual(client.command("RCPT TO:<support@example.com>"),
                         rcpt_ok("<support@example.com>"))

    def test_every_matching_sender_line_counts(self):
        # 0.94 kept only the last matching sender line: u@example.com got through.
        client = self.session("<a@from.example>")
        self.assertEqual(client.session.transaction.notes["badmailfromto_senders"],
                         ["@from.example", "a@from.example"])
        for rcpt in ("u@example.com", "v@example.com"):
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt),
                             "550 mail to %s not accepted here\r\n" % rcpt)

    def test_recipient_domain(self):
        client = self.session("<both@x.example>")
        self.assertEqual(client.command("RCPT TO:<Anyone@Example.com>"),
                         "550 mail to anyone@example.com not accepted here\r\n")
        self.assertEqual(client.command("RCPT TO:<postmaster>"), rcpt_ok("<postmaster>"))

    def test_null_sender_is_not_matched(self):
        client = self.session("<>")
        self.assertNotIn("badmailfromto_senders", client.session.transaction.notes)
        self.assertEqual(client.command("RCPT TO:<victim@example.com>"),
                         rcpt_ok("<victim@example.com>"))

    def test_bad_lines_stop_startup(self):
        self.assertConfigLineError(["badmailfromto"], {"badmailfromto": "a@b.example c@d.example\n"
                                                                        "lonely@example.com"},
                                   "badmailfromto", 2, "need a sender and a recipient")
        self.assertConfigLineError(["badmailfromto"],
                                   {"badmailfromto": "nobody victim@example.com"},
                                   "badmailfromto", 1, "'nobody' is not user@host or @host")
        self.assertStartupError(["badmailfromto now"],
                                "plugin badmailfromto: arguments must be key/value pairs")


class EndToEndTests(EndToEndTestCase):
    async def test_badmailfromto(self):
        _, replies = await self.talk(["badmailfromto", "rcpt_ok"],
                                     {"badmailfromto": "a@b.example\tu@example.com"},
                                     ["HELO c.example", "MAIL FROM:<a@b.example>",
                                      "RCPT TO:<u@example.com>", "RCPT TO:<v@example.com>"])
        self.assertEqual(replies[2:], [(550, ["mail to u@example.com not accepted here"]),
                                       (250, ["<v@example.com>, recipient ok"])])
