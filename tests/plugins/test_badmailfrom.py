"""Tests of the badmailfrom plugin, its old name check_badmailfrom, and
check_badmailfrom_patterns (badmailfrom reading the file badmailfrom_patterns): senders
refused at MAIL, through MemoryClient (a real SMTPProtocol in memory) and, in
``EndToEndTests``, over a loopback socket. Reply texts are qpsmtpd 0.94's.
"""

from tests.support.envelope_cases import EndToEndTestCase, PluginTestCase, mail_ok


BADMAILFROM = """\
# comments and blank lines are skipped

spammer@bad.example
@worse.example   Go away,  now
^Admin.*\\.PPOONN\\.com$   No admins
UPPER@CASE.example
"""


class BadMailFromTests(PluginTestCase):
    def mail(self, sender, args="", files=None, name="badmailfrom", plugins_before=()):
        """The reply to MAIL FROM:<sender> after HELO, and the client."""
        files = {"badmailfrom": BADMAILFROM} if files is None else files
        client = self.client(list(plugins_before) + [("%s %s" % (name, args)).strip(),
                                                     "rcpt_ok"], files)
        client.command("HELO c.example")
        return client.command("MAIL FROM:%s" % sender), client

    def test_exact_address(self):
        for sender in ("<spammer@bad.example>", "<Spammer@BAD.example>", "<upper@case.example>"):
            self.assertEqual(self.mail(sender)[0],
                             "550 Your envelope sender is in my badmailfrom list\r\n", sender)
        self.assertEqual(self.mail("<other@bad.example>")[0], mail_ok("<other@bad.example>"))

    def test_domain_with_reason(self):
        self.assertEqual(self.mail("<a@Worse.example>")[0], "550 Go away,  now\r\n")
        self.assertEqual(self.mail("<a@sub.worse.example>")[0], mail_ok("<a@sub.worse.example>"))

    def test_pattern(self):
        # case-insensitive: 0.94 never matched a pattern holding capitals
        for sender in ("<admin1@www.ppoonn.com>", "<ADMIN@WWW.PPOONN.COM>"):
            self.assertEqual(self.mail(sender)[0], "550 No admins\r\n", sender)
        self.assertEqual(self.mail("<xadmin@www.ppoonn.com>")[0],
                         mail_ok("<xadmin@www.ppoonn.com>"))

    def test_first_matching_line_wins(self):
        files = {"badmailfrom": "^nomatch\n@bad.example First\nspammer@bad.example Second"}
        self.assertEqual(self.mail("<spammer@bad.example>", files=files)[0], "550 First\r\n")

    def test_null_sender_and_senders_without_domain_pass(self):
        files = {"badmailfrom": "^"}  # a pattern matching every address
        self.assertEqual(self.mail("<>", files=files)[0], mail_ok("<>"))
        self.assertEqual(self.mail("<postmaster>", files=files)[0], mail_ok("<postmaster>"))
        self.assertEqual(self.mail("<x@y.example>", files=files)[0],
                         "550 Your envelope sender is in my badmailfrom list\r\n")

    def test_empty_or_missing_list(self):
        self.assertEqual(self.mail("<spammer@bad.example>", files={})[0],
                         mail_ok("<spammer@bad.example>"))

    def test_karma(self):
        _, client = self.mail("<spammer@bad.example>")
        self.assertEqual(client.session.connection.notes["karma"], -1)
        _, client = self.mail("<fine@good.example>")
        self.assertNotIn("karma", client.session.connection.notes)

    def test_reject_and_reject_type(self):
        table = [
            ("reject 1", "550 Your envelope sender is in my badmailfrom list\r\n", False),
            ("reject_type temp", "450 Your envelope sender is in my badmailfrom list\r\n", False),
            ("reject_type disconnect",
             "550 Your envelope sender is in my badmailfrom list\r\n", True),
            ("reject_type temp_disconnect",
             "421 Your envelope sender is in my badmailfrom list\r\n", True),
            ("reject 0", mail_ok("<spammer@bad.example>"), False),
        ]
        for args, reply, closed in table:
            got, client = self.mail("<spammer@bad.example>", args)
            self.assertEqual(got, reply, args)
            self.assertEqual(client.closed, closed, args)

    def test_reject_naughty(self):
        got, client = self.mail("<a@worse.example>", "reject naughty", plugins_before=["naughty"])
        self.assertEqual(got, mail_ok("<a@worse.example>"))
        self.assertEqual(client.session.connection.notes["naughty"], "Go away,  now")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "550 Go away,  now\r\n")
        self.assertTrue(client.closed)

    def test_relay_clients_are_not_checked(self):
        files = {"badmailfrom": BADMAILFROM, "relayclients": "192.0.2.1"}
        got, client = self.mail("<spammer@bad.example>", files=files, plugins_before=["relay"])
        self.assertEqual(got, mail_ok("<spammer@bad.example>"))

    def test_check_badmailfrom_is_badmailfrom(self):
        got, client = self.mail("<spammer@bad.example>", "reject_type temp",
                                name="check_badmailfrom")
        self.assertEqual(got, "450 Your envelope sender is in my badmailfrom list\r\n")
        self.assertEqual(self.mail("<a@worse.example>", name="check_badmailfrom")[0],
                         "550 Go away,  now\r\n")
        self.assertEqual(client.session.server.plugins[0].name, "check_badmailfrom")

    def test_check_badmailfrom_patterns_reads_its_own_file(self):
        files = {"badmailfrom_patterns": "^return.*@.*\\.pidplate\\.biz$\nfoo   Custom text",
                 "badmailfrom": "ok@x.example"}
        name = "check_badmailfrom_patterns"
        self.assertEqual(self.mail("<Return1@x.pidplate.biz>", files=files, name=name)[0],
                         "550 Your envelope sender is in my badmailfrom_patterns list\r\n")
        # every line is a pattern, even one without pattern characters
        self.assertEqual(self.mail("<myfoo@x.example>", files=files, name=name)[0],
                         "550 Custom text\r\n")
        self.assertEqual(self.mail("<ok@x.example>", files=files, name=name)[0],
                         mail_ok("<ok@x.example>"))
        got, client = self.mail("<myfoo@x.example>", "reject 0", files=files, name=name)
        self.assertEqual(got, mail_ok("<myfoo@x.example>"))
        self.assertEqual(client.session.connection.notes["karma"], -1)

    def test_bad_lines_stop_startup(self):
        self.assertConfigLineError(["badmailfrom"], {"badmailfrom": "a@b.example\nnobody  text"},
                                   "badmailfrom", 2,
                                   "'nobody' is not user@host, @host or a regular expression")
        self.assertConfigLineError(["check_badmailfrom"], {"badmailfrom": "^(x@"},
                                   "badmailfrom", 1, "bad regular expression '^(x@'")
        self.assertConfigLineError(["check_badmailfrom_patterns"],
                                   {"badmailfrom_patterns": "ok\n# c\n(x"},
                                   "badmailfrom_patterns", 3, "bad regular expression '(x'")

    def test_bad_arguments(self):
        table = [
            ("badmailfrom reject 2", "plugin badmailfrom: reject must be 0, 1 or naughty, not '2'"),
            ("badmailfrom reject_type sometimes", "plugin badmailfrom: reject_type must be one of"),
            ("badmailfrom reject", "plugin badmailfrom: arguments must be key/value pairs"),
            ("check_badmailfrom_patterns foo bar",
             "plugin check_badmailfrom_patterns: unknown argument 'foo'"),
        ]
        for line, expected in table:
            self.assertStartupError([line], expected)


class EndToEndTests(EndToEndTestCase):
    async def test_badmailfrom_and_its_old_names(self):
        files = {"badmailfrom": "@bad.example go away", "badmailfrom_patterns": "^spam"}
        for name, sender, reply in [
                ("badmailfrom", "<x@bad.example>", "go away"),
                ("check_badmailfrom", "<x@bad.example>", "go away"),
                ("check_badmailfrom_patterns", "<spammer@x.example>",
                 "Your envelope sender is in my badmailfrom_patterns list")]:
            _, replies = await self.talk([name, "rcpt_ok"], files,
                                         ["HELO c.example", "MAIL FROM:%s" % sender,
                                          "MAIL FROM:<ok@good.example>"])
            self.assertEqual(replies[1:], [
                (550, [reply]),
                (250, ["<ok@good.example>, sender OK - how exciting to get mail from you!"])], name)
