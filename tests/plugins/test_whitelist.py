"""Tests of the whitelist plugin (a connection-level policy plugin: whitelisted hosts, HELO names,
senders and recipients are immune to later plugins), per hook and per recipient.

Protocol-level cases use MemoryClient (a real SMTPProtocol on an in-memory transport); two
cases run over a real loopback socket (tests.support.server). Reply texts are qpsmtpd 0.94's,
read from its plugins in /usr/share/qpsmtpd/plugins and checked against the Perl server where
they differ from the documentation.
"""

from twisted.internet.task import Clock
from twisted.trial import unittest

from qpsmtpd_tx.address import Address
from qpsmtpd_tx.codes import OK
from tests.support.connection_cases import GREETING, HELO_OK, fake_transaction, run_lines
from tests.support.harness import MemoryClient, StartupErrorMixin, make_server
from tests.support.harness import loaded_plugin as plugin_of
from tests.support.server import connect, start_server


class WhitelistTests(StartupErrorMixin, unittest.TestCase):
    FILES = {
        "whitelisthosts": "192.0.2.1\n198.51.100.\n10.1\n203.0.113.0/28\n2001:db8:0:0::25\n",
        "whitelisthelo": "Friend.Example\n",
        "whitelistsenders": "boss@example.org\npartner.example\n",
        "whitelistrcpt": "example.net\nvip@example.org\n",
    }

    def client(self, plugins, ip="192.0.2.1", files=None, environ=None):
        server = make_server(self, plugins, files or self.FILES)
        for plugin in server.plugins:
            if plugin.name == "whitelist":
                plugin.environ = environ or {}
        return MemoryClient(server, remote_ip=ip)

    # connect

    def test_whitelisted_hosts_skip_later_connect_plugins(self):
        plugins = ["whitelist", "scripted connect DENY go away"]
        for ip in ("192.0.2.1", "198.51.100.77", "10.1.2.3", "10.10.0.1", "203.0.113.15",
                   "2001:db8::25"):
            client = self.client(plugins, ip)
            self.assertEqual(client.greeting, GREETING, ip)
            notes = client.session.connection.notes
            self.assertEqual((notes.get("whitelisthost"), notes.get("karma")), (1, 5), ip)

    def test_other_hosts_are_not_whitelisted(self):
        plugins = ["whitelist", "scripted connect DENY go away"]
        # 192.0.2.10 starts with the text 192.0.2.1, but that entry is one full address.
        for ip in ("192.0.2.10", "198.51.101.1", "10.2.0.1", "203.0.113.16", "2001:db8::26"):
            client = self.client(plugins, ip)
            self.assertEqual(client.greeting, "550 go away\r\n", ip)
            self.assertNotIn("whitelisthost", client.session.connection.notes)

    def test_whitelistclient_environment(self):
        client = self.client(["whitelist", "scripted connect DENY go away"], "192.0.2.99",
                             environ={"WHITELISTCLIENT": ""})
        self.assertEqual(client.greeting, GREETING)
        notes = client.session.connection.notes
        self.assertEqual((notes.get("whitelistclient"), notes.get("whitelisthost")), (1, None))

    def test_whitelisthost_makes_other_plugins_immune(self):
        server = make_server(self, ["whitelist", "earlytalker"], self.FILES)
        plugin_of(server, "whitelist").environ = {}
        plugin_of(server, "earlytalker").clock = Clock()
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.1").greeting, GREETING)
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.99").greeting, "")

    # helo

    def test_helo(self):
        plugins = ["whitelist", "scripted helo DENY no helo", "scripted:1 ehlo DENY no ehlo"]
        client = self.client(plugins, "192.0.2.99")
        self.assertEqual(client.command("HELO friend.example"), HELO_OK % "192.0.2.99")
        self.assertEqual(client.session.connection.notes["whitelisthelo"], 1)
        client = self.client(plugins, "192.0.2.99")
        self.assertTrue(client.command("EHLO FRIEND.example").startswith("250-mx.example.org Hi Unknown"))
        client = self.client(plugins, "192.0.2.99")
        self.assertEqual(client.command("HELO stranger.example"), "550 no helo\r\n")
        self.assertEqual(client.command("EHLO stranger.example"), "550 no ehlo\r\n")
        self.assertNotIn("whitelisthelo", client.session.connection.notes)

    # mail

    def test_senders(self):
        plugins = ["whitelist", "scripted mail DENY no sender"]
        client = self.client(plugins, "192.0.2.99")
        client.command("HELO x")
        self.assertEqual(client.command("MAIL FROM:<Boss@Example.ORG>"),
                         "250 <Boss@Example.ORG>, sender OK - how exciting to get mail from you!\r\n")
        self.assertEqual(client.session.transaction.notes["whitelistsender"], 1)
        self.assertEqual(client.command("MAIL FROM:<anyone@partner.example>"),
                         "250 <anyone@partner.example>, sender OK - how exciting to get mail from you!\r\n")
        for sender in ("<other@example.org>", "<boss@sub.partner.example>", "<>"):
            self.assertEqual(client.command("MAIL FROM:%s" % sender), "550 no sender\r\n", sender)
            self.assertNotIn("whitelistsender", client.session.transaction.notes)

    # rcpt

    def test_recipients_are_accepted_and_counted(self):
        client = self.client(["whitelist", "rcpt_ok"], "192.0.2.99")
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>"])
        self.assertEqual(client.command("RCPT TO:<a@Example.NET>"), "250 <a@Example.NET>, recipient ok\r\n")
        self.assertEqual(client.command("RCPT TO:<vip@example.org>"), "250 <vip@example.org>, recipient ok\r\n")
        self.assertEqual(client.command("RCPT TO:<x@example.org>"), "550 Relaying denied (#5.7.1)\r\n")
        self.assertEqual(client.command("RCPT TO:<postmaster>"), "250 <postmaster>, recipient ok\r\n")
        self.assertEqual(client.session.transaction.notes["whitelistrcpt"], 2)

    # per_recipient

    def test_per_recipient_checks_at_rcpt_only(self):
        plugins = ["whitelist per_recipient 1 merge 0", "rcpt_ok"]
        client = self.client(plugins, "192.0.2.1")
        self.assertNotIn("whitelisthost", client.session.connection.notes)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>"])
        self.assertEqual(client.command("RCPT TO:<x@elsewhere.example>"),
                         "250 <x@elsewhere.example>, recipient ok\r\n")
        self.assertEqual(client.session.connection.notes["whitelisthost"], 1)
        server = client.session.server
        for hook in ("connect", "helo", "ehlo", "mail"):
            self.assertFalse(any(p.name == "whitelist" for p, _ in server.hooks.handlers(hook)), hook)

    def test_per_recipient_helo_sender_and_recipient(self):
        plugins = ["whitelist per_recipient 1", "rcpt_ok"]
        for helo, sender, rcpt, note in (
            ("friend.example", "a@b.example", "x@elsewhere.example", "whitelisthelo"),
            ("x", "boss@example.org", "x@elsewhere.example", "whitelistsender"),
            ("x", "a@b.example", "y@example.net", "whitelistrcpt"),
        ):
            client = self.client(plugins, "192.0.2.99")
            run_lines(client, ["HELO " + helo, "MAIL FROM:<%s>" % sender])
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt), "250 <%s>, recipient ok\r\n" % rcpt)
            notes = dict(client.session.connection.notes, **client.session.transaction.notes)
            self.assertEqual(notes.get(note), 1, note)
        client = self.client(plugins, "192.0.2.99")
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>"])
        self.assertEqual(client.command("RCPT TO:<x@elsewhere.example>"), "550 Relaying denied (#5.7.1)\r\n")

    def test_per_recipient_first_match_wins(self):
        server = make_server(self, ["whitelist per_recipient 1"], self.FILES)
        plugin = plugin_of(server, "whitelist")
        plugin.environ = {}
        txn = fake_transaction("192.0.2.1")
        txn.connection.hello_host = "friend.example"
        txn.sender = Address("boss", "example.org")
        self.assertEqual(plugin.check_all_for_recipient(txn, Address("u", "example.net"), {}), OK)
        self.assertEqual(txn.connection.notes.get("whitelisthost"), 1)
        self.assertNotIn("whitelisthelo", txn.connection.notes)
        self.assertEqual(txn.notes, {})

    def test_bad_config_lines(self):
        for name, text, lineno, expected in (
            ("whitelisthosts", "192.0.2.1\nmail.example.com\n", 2,
             "not an IP address, network or address prefix: 'mail.example.com'"),
            ("whitelisthosts", "10.0.0.0/33\n", 1, "bad network '10.0.0.0/33'"),
            ("whitelisthosts", "10.0.0.1/8\n", 1, "bad network '10.0.0.1/8'"),
            ("whitelisthelo", "a.example b.example\n", 1, "one entry per line, got 'a.example b.example'"),
            ("whitelistsenders", "# bosses\nboss@example.org\nboss @example.org\n", 3, "one entry per line"),
            ("whitelistrcpt", "x@example.org # vip\n", 1, "one entry per line"),
        ):
            self.assertStartupError(["whitelist"], [":1: plugin whitelist: ", "%s:%d: %s" % (name, lineno, expected)],
                                    {name: text})

    def test_bad_arguments(self):
        self.assertStartupError(["whitelist per_recipient"], ":1: plugin whitelist: arguments must be key/value pairs")
        self.assertStartupError(["whitelist strict 1"], ":1: plugin whitelist: unknown argument 'strict'")

    async def test_over_tcp(self):
        server, port = start_server(self, ["whitelist", "scripted connect DENY go away", "rcpt_ok"],
                                    {"whitelisthosts": "127.0.0.1"})
        plugin_of(server, "whitelist").environ = {}
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        await client.command("HELO x")
        await client.command("MAIL FROM:<a@b.example>")
        # rcpt_ok accepts any recipient of a whitelisted (immune) host, as in qpsmtpd
        self.assertEqual(await client.command("RCPT TO:<u@elsewhere.example>"),
                         (250, ["<u@elsewhere.example>, recipient ok"]))

    async def test_recipient_over_tcp(self):
        server, port = start_server(self, ["whitelist", "rcpt_ok"], {"whitelistrcpt": "example.net"})
        plugin_of(server, "whitelist").environ = {}
        client = await connect(self, port)
        await client.command("HELO x")
        await client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(await client.command("RCPT TO:<u@example.net>"), (250, ["<u@example.net>, recipient ok"]))
        self.assertEqual(await client.command("RCPT TO:<u@example.org>"), (550, ["Relaying denied (#5.7.1)"]))
