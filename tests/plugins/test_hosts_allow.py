"""Tests of the hosts_allow plugin (a connection-level policy plugin): its rules file, the per-IP
connection limit and its start-up errors.

Protocol-level cases use MemoryClient (a real SMTPProtocol on an in-memory transport); two
cases run over a real loopback socket (tests.support.server). Reply texts are qpsmtpd 0.94's,
read from its plugins in /usr/share/qpsmtpd/plugins and checked against the Perl server where
they differ from the documentation.
"""

from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED, DENYSOFT
from tests.support.connection_cases import GREETING, fake_transaction, hang_up
from tests.support.harness import MemoryClient, StartupErrorMixin, make_server
from tests.support.harness import loaded_plugin as plugin_of
from tests.support.server import connect, start_server


class HostsAllowTests(StartupErrorMixin, unittest.TestCase):
    RULES = ("192.168.3.4    DECLINED\n"
             "192.168.3.0/24 DENY Sorry, known spam only source\n"
             "198.51.100.0/24 DENYSOFT come back later, please\n"
             "203.0.113.7/32 DENY_DISCONNECT\n"
             "203.0.113.8 DENYSOFT_DISCONNECT\n"
             "203.0.113.9 OK\n"
             "2001:db8:bad::/48 DENY no IPv6 spam\n")

    def client(self, ip, rules=None, extra=(), **kwargs):
        server = make_server(self, ["hosts_allow"] + list(extra), {"hosts_allow": rules or self.RULES},
                             **kwargs)
        return MemoryClient(server, remote_ip=ip)

    def test_deny_rule_with_message(self):
        client = self.client("192.168.3.77")
        self.assertEqual(client.greeting, "550 Sorry, known spam only source\r\n")
        self.assertTrue(client.closed)

    def test_declined_rule_exempts_an_address_from_a_later_rule(self):
        client = self.client("192.168.3.4")
        self.assertEqual(client.greeting, GREETING)
        self.assertFalse(client.closed)

    def test_denysoft_rule(self):
        client = self.client("198.51.100.20")
        self.assertEqual(client.greeting, "451 come back later, please\r\n")
        self.assertTrue(client.closed)

    def test_deny_disconnect_without_message_gets_the_default_text(self):
        client = self.client("203.0.113.7")
        self.assertEqual(client.greeting, "550 Sorry, service not available for you\r\n")
        self.assertTrue(client.closed)

    def test_denysoft_disconnect_without_message_gets_the_default_text(self):
        client = self.client("203.0.113.8")
        self.assertEqual(client.greeting, "451 Sorry, try again later\r\n")
        self.assertTrue(client.closed)

    def test_ok_rule_skips_later_pre_connection_plugins(self):
        extra = ["scripted pre-connection DENY later plugin"]
        self.assertEqual(self.client("203.0.113.9", extra=extra).greeting, GREETING)
        self.assertEqual(self.client("203.0.113.10", extra=extra).greeting, "550 later plugin\r\n")

    def test_unlisted_client_is_greeted(self):
        client = self.client("192.0.2.1")
        self.assertEqual(client.greeting, GREETING)

    def test_ipv6_rule(self):
        self.assertEqual(self.client("2001:db8:bad::25").greeting, "550 no IPv6 spam\r\n")
        self.assertEqual(self.client("2001:db8:900d::25").greeting, GREETING)

    def test_ipv4_rule_does_not_match_ipv6_client(self):
        client = self.client("2001:db8::1", rules="0.0.0.0/0 DENY all IPv4\n")
        self.assertEqual(client.greeting, GREETING)
        client = self.client("192.0.2.1", rules="0.0.0.0/0 DENY all IPv4\n")
        self.assertEqual(client.greeting, "550 all IPv4\r\n")

    def test_numeric_constant(self):
        client = self.client("192.0.2.1", rules="192.0.2.0/24 901 by number\n")
        self.assertEqual(client.greeting, "550 by number\r\n")

    # -- the per-IP limit --------------------------------------------------------------------

    def test_connection_limit(self):
        server = make_server(self, ["hosts_allow"], max_conn_ip=2)
        first = MemoryClient(server, remote_ip="192.0.2.1")
        second = MemoryClient(server, remote_ip="192.0.2.1")
        third = MemoryClient(server, remote_ip="192.0.2.1")
        self.assertEqual([first.greeting, second.greeting], [GREETING, GREETING])
        self.assertEqual(third.greeting, "451 too many connections from 192.0.2.1, try again later\r\n")
        self.assertTrue(third.closed)
        hang_up(third)
        # Other addresses are counted separately.
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.2").greeting, GREETING)
        # A closed connection frees its place.
        hang_up(first)
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.1").greeting, GREETING)

    def test_limit_is_checked_before_the_rules(self):
        server = make_server(self, ["hosts_allow"], {"hosts_allow": "192.0.2.1 OK\n"}, max_conn_ip=1)
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.1").greeting, GREETING)
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.1").greeting,
                         "451 too many connections from 192.0.2.1, try again later\r\n")

    def test_limit_counting_directly(self):
        plugin = plugin_of(make_server(self, ["hosts_allow"]), "hosts_allow")
        txn = fake_transaction("192.0.2.1")
        hook = plugin.hook_pre_connection
        refused = (DENYSOFT, "too many connections from 192.0.2.1, try again later")
        others = ["192.0.2.9", "192.0.2.10"]
        # child_addrs are the OTHER live sessions: this one counts as 1 plus its namesakes
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, 2,
                              ["192.0.2.1"] + others), DECLINED)
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, 2,
                              ["192.0.2.1"] * 2 + others), refused)
        # 0 (or no limit) turns the check off
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, 0, ["192.0.2.1"] * 9), DECLINED)
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, None, ["192.0.2.1"] * 9),
                         DECLINED)
        # a limit of 1 allows this connection alone, not a second one
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, 1, []), DECLINED)
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, 1, ["192.0.2.1"]), refused)

    def test_karma_history_changes_the_limit(self):
        plugin = plugin_of(make_server(self, ["hosts_allow"]), "hosts_allow")

        def decide(karma, count, limit=2):
            txn = fake_transaction("192.0.2.1")
            txn.connection.notes["karma_history"] = karma
            return plugin.hook_pre_connection(txn, "192.0.2.1", 1, "192.0.2.25", 25, limit,
                                              ["192.0.2.1"] * count)

        # ``count`` other sessions from the same address, plus this one
        self.assertEqual(decide(6, 4), DECLINED)      # good karma: limit 2 + 3
        self.assertEqual(decide(6, 5)[0], DENYSOFT)
        self.assertEqual(decide(3, 1), DECLINED)      # neutral: limit unchanged
        self.assertEqual(decide(3, 2)[0], DENYSOFT)
        self.assertEqual(decide(0, 0), DECLINED)      # bad karma: one connection only
        self.assertEqual(decide(-2, 1)[0], DENYSOFT)

    def test_not_an_ip(self):
        plugin = plugin_of(make_server(self, ["hosts_allow"]), "hosts_allow")
        self.assertEqual(plugin.hook_pre_connection(fake_transaction("x"), "unix-socket", 0, "", 0,
                                                    5, []), DECLINED)

    # -- start-up errors ---------------------------------------------------------------------

    def test_bad_lines(self):
        for text, lineno, expected in (
            ("192.0.2.0/24 DENY x\nDENY\n", 2, "expected 'NETWORK CONSTANT [MESSAGE]', got 'DENY'"),
            ("# comment\n192.0.2.300 DENY\n", 2, "bad network '192.0.2.300'"),
            ("192.168.3.5/24 DENY\n", 1, "bad network '192.168.3.5/24': 192.168.3.5/24 has host bits set"),
            ("192.0.2.0/24 REFUSE go away\n", 1, "unknown constant 'REFUSE'"),
            ("192.0.2.0/24 YIELD\n", 1, "unknown constant 'YIELD'"),
        ):
            self.assertStartupError(
                ["hosts_allow"],
                [":1: plugin hosts_allow: ", "hosts_allow:%d: %s" % (lineno, expected)],
                {"hosts_allow": text})

    def test_arguments(self):
        self.assertStartupError(["rcpt_ok", "hosts_allow 5"],
                                ":2: plugin hosts_allow: arguments must be key/value pairs")
        self.assertStartupError(["hosts_allow max 5"], ":1: plugin hosts_allow: unknown argument 'max'")
        self.assertEqual(plugin_of(make_server(self, ["hosts_allow loglevel 6"]), "hosts_allow").loglevel,
                         ("abs", 6))

    # -- over a socket -----------------------------------------------------------------------

    async def test_connection_limit_over_tcp(self):
        server, port = start_server(self, ["hosts_allow", "rcpt_ok"], max_conn_ip=1)
        first = await connect(self, port)
        self.assertEqual(first.greeting[0], 220)
        second = await connect(self, port)
        self.assertEqual(second.greeting, (451, ["too many connections from 127.0.0.1, try again later"]))
        await second.wait_closed()
        self.assertEqual(await first.command("HELO x"),
                         (250, ["mx.example.org Hi Unknown [127.0.0.1]; I am so happy to meet you."]))

    async def test_rule_over_tcp(self):
        server, port = start_server(self, ["hosts_allow"],
                                    {"hosts_allow": "127.0.0.0/8 DENY Sorry, known spam only source"})
        client = await connect(self, port)
        self.assertEqual(client.greeting, (550, ["Sorry, known spam only source"]))
        await client.wait_closed()
