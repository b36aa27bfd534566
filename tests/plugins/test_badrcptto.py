"""Tests of the badrcptto plugin, its old name check_badrcptto, and check_badrcptto_patterns
(badrcptto reading badrcptto_patterns): recipients refused at RCPT, in memory with
MemoryClient and over a loopback socket (``EndToEndTests``, one session per name).
"""

from qpsmtpd_tx import codes
from tests.support.envelope_cases import EndToEndTestCase, PluginTestCase, rcpt_ok
from tests.support.harness import MemoryClient


BADRCPTTO = """\
bad@example.com
@badhost.example   nope, gone
^x\\D+@example\\.com$
"""


class BadRcptToTests(PluginTestCase):
    def session(self, files=None, name="badrcptto", plugins_before=()):
        files = {"badrcptto": BADRCPTTO} if files is None else files
        client = self.client(list(plugins_before) + [name, "rcpt_ok"], files)
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        return client

    def test_address(self):
        client = self.session()
        for rcpt in ("bad@example.com", "BAD@Example.COM"):
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt),
                             "550 mail to bad@example.com not accepted here (#5.1.1)\r\n")
        self.assertEqual(client.command("RCPT TO:<good@example.com>"),
                         rcpt_ok("<good@example.com>"))
        self.assertFalse(client.closed)

    def test_domain_with_reason(self):
        # 0.94 dropped the reason: "550 mail to @badhost.example not accepted here"
        client = self.session(files={"badrcptto": BADRCPTTO, "rcpthosts": "badhost.example"})
        self.assertEqual(client.command("RCPT TO:<x@BadHost.example>"), "550 nope, gone\r\n")
        self.assertEqual(client.command("RCPT TO:<x@sub.badhost.example>"),
                         "550 Relaying denied (#5.7.1)\r\n")

    def test_pattern_used_as_written(self):
        # 0.94 lower-cased the pattern: \D became \d and the rule meant the opposite
        client = self.session()
        self.assertEqual(client.command("RCPT TO:<Xyz@example.com>"),
                         "550 mail to ^x\\D+@example\\.com$ not accepted here (#5.1.1)\r\n")
        self.assertEqual(client.command("RCPT TO:<x12@example.com>"), rcpt_ok("<x12@example.com>"))

    def test_recipients_without_domain_pass(self):
        client = self.session(files={"badrcptto": "^"})
        self.assertEqual(client.command("RCPT TO:<postmaster>"), rcpt_ok("<postmaster>"))
        self.assertEqual(client.command("RCPT TO:<u@example.com>"),
                         "550 mail to ^ not accepted here (#5.1.1)\r\n")

    def test_empty_list(self):
        client = self.session(files={})
        self.assertEqual(client.command("RCPT TO:<bad@example.com>"), rcpt_ok("<bad@example.com>"))

    def test_karma(self):
        client = self.session()
        client.command("RCPT TO:<bad@example.com>")
        client.command("RCPT TO:<good@example.com>")
        client.command("RCPT TO:<x@badhost.example>")
        self.assertEqual(client.session.connection.notes["karma"], -4)

    def test_relay_clients_are_not_checked(self):
        client = self.session(files={"badrcptto": BADRCPTTO, "relayclients": "192.0.2.1"},
                              plugins_before=["relay"])
        self.assertEqual(client.command("RCPT TO:<bad@example.com>"), rcpt_ok("<bad@example.com>"))

    def test_check_badrcptto_is_badrcptto(self):
        client = self.session(name="check_badrcptto")
        self.assertEqual(client.command("RCPT TO:<bad@example.com>"),
                         "550 mail to bad@example.com not accepted here (#5.1.1)\r\n")
        self.assertEqual(client.command("RCPT TO:<ok@example.com>"), rcpt_ok("<ok@example.com>"))

    def test_check_badrcptto_patterns_reads_its_own_file(self):
        files = {"badrcptto_patterns": "[!%]   No bang paths\nzz", "badrcptto": "ok@example.com"}
        client = self.session(files=files, name="check_badrcptto_patterns")
        self.assertEqual(client.command("RCPT TO:<a%b@example.com>"), "550 No bang paths\r\n")
        self.assertEqual(client.command("RCPT TO:<fuzz@example.com>"),
                         "550 mail to zz not accepted here (#5.1.1)\r\n")
        self.assertEqual(client.command("RCPT TO:<ok@example.com>"), rcpt_ok("<ok@example.com>"))
        self.assertEqual(client.session.connection.notes["karma"], -4)

    def test_a_bad_edit_keeps_the_previous_list(self):
        # badmailfrom's list code, which badrcptto shares (ListFile)
        for name, first, command, refused in (
                ("badmailfrom", "x@bad.example", "MAIL FROM:<x@bad.example>", "550 Your envelope"),
                ("badrcptto", "x@example.com", "RCPT TO:<x@example.com>", "550 mail to x@")):
            server, records = self.recording_server([name, "rcpt_ok"], {name: first})
            with open(server.config.path_of(name), "w") as f:
                f.write("not-an-address\n")
            server.config.clear_cache()          # as SIGHUP does
            for _ in range(3):       # the broken file is logged once, not at each command
                client = MemoryClient(server)
                client.command("HELO c.example")
                if name == "badrcptto":
                    client.command("MAIL FROM:<a@b.example>")
                self.assertTrue(client.command(command).startswith(refused), name)
            errors = [r[2] for r in records if r[0] == codes.LOGERROR]
            self.assertEqual(len(errors), 1, records)
            self.assertIn("keeping the previous %s: " % name, errors[0])

    def test_bad_lines_and_arguments_stop_startup(self):
        self.assertConfigLineError(["badrcptto"], {"badrcptto": "bad@example.com\n\nnobody"},
                                   "badrcptto", 3,
                                   "'nobody' is not user@host, @host or a regular expression")
        self.assertConfigLineError(["check_badrcptto"], {"badrcptto": "x+(@"},
                                   "badrcptto", 1, "bad regular expression 'x+(@'")
        self.assertConfigLineError(["check_badrcptto_patterns"], {"badrcptto_patterns": "a)"},
                                   "badrcptto_patterns", 1, "bad regular expression 'a)'")
        self.assertStartupError(["badrcptto reject 1"],
                                ":1: plugin badrcptto: unknown argument 'reject'")


class EndToEndTests(EndToEndTestCase):
    async def test_badrcptto_and_its_old_names(self):
        files = {"badrcptto": "bad@example.com", "badrcptto_patterns": "^bad  pattern says no"}
        not_here = "mail to bad@example.com not accepted here (#5.1.1)"
        for name, reply in [("badrcptto", not_here), ("check_badrcptto", not_here),
                            ("check_badrcptto_patterns", "pattern says no")]:
            _, replies = await self.talk([name, "rcpt_ok"], files,
                                         ["HELO c.example", "MAIL FROM:<a@b.example>",
                                          "RCPT TO:<bad@example.com>", "RCPT TO:<u@example.com>"])
            self.assertEqual(replies[2:], [(550, [reply]),
                                           (250, ["<u@example.com>, recipient ok"])], name)
