"""Tests of the relay plugin and its old name check_relay: its parsing and matching functions
directly, hook_connect of a loaded plugin for many client addresses (relayclients,
norelayclients, morerelayclients, RELAYCLIENT), and RCPT in real sessions over a loopback
socket (tests.support.server), IPv4 and IPv6. Reply texts are qpsmtpd 0.94's.
"""

import os
import socket

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.cdb import write_cdb
from qpsmtpd_tx.server import StartupError
from tests.support.harness import fake_transaction, make_server, plugin_module
from tests.support.plugin_server import server_with
from tests.support.server import connect, start_server

relay_module = plugin_module("relay")


class RelayParsingTests(unittest.TestCase):
    def test_normalize_key(self):
        table = [
            ("192.168.42.", "192.168.42."),
            ("10.", "10."),
            ("192.0.2.7", "192.0.2.7"),
            ("2001:db8:e431:ae06:", "2001:0db8:e431:ae06"),
            ("2001:0DB8:E4", "2001:0db8:e4"),
            ("2001:db8:e4", "2001:0db8:e4"),
            ("::1", "0000:0000:0000:0000:0000:0000:0000:0001"),
            ("2001:db8::", "2001:0db8:0000:0000:0000:0000:0000:0000"),
        ]
        for entry, expected in table:
            self.assertEqual(relay_module.normalize_key(entry), expected, entry)

    def test_normalize_key_rejects_garbage(self):
        for entry in ("192.168", "300.1.", "1.2.3.4.5", "mail.example.com", "2001:zz:",
                      "12345:", "1.2.3.256"):
            self.assertRaises(relay_module.BadEntry, relay_module.normalize_key, entry)

    def test_ipv4_candidates(self):
        self.assertEqual(relay_module.ip_candidates("192.0.2.7"),
                         {"192.0.2.7", "192.0.2.", "192.0.", "192."})

    def test_ipv6_candidates(self):
        found = relay_module.ip_candidates("2001:db8:e431:ae06::1")
        self.assertIn("2001:db8:e431:ae06::1", found)
        self.assertIn("2001:0db8:e431:ae06:0000:0000:0000:0001", found)
        self.assertIn("2001:0db8:e431:ae06", found)
        self.assertIn("2001:0db8:e4", found)
        self.assertIn("2", found)
        self.assertNotIn("2001:0db8:e431:ae06:", found)  # never ends in ':'
        self.assertNotIn("2001:db8:", found)
        self.assertEqual(len(found), 1 + 32)  # short form + one per hex digit

    def test_env_relayclient(self):
        self.assertTrue(relay_module.env_relayclient({"RELAYCLIENT": "1"}))
        self.assertTrue(relay_module.env_relayclient({"RELAYCLIENT": "yes"}))
        self.assertFalse(relay_module.env_relayclient({"RELAYCLIENT": "0"}))
        self.assertFalse(relay_module.env_relayclient({"RELAYCLIENT": ""}))
        self.assertFalse(relay_module.env_relayclient({}))


RELAYCLIENTS = """\
# office
192.168.42.
10.9.8.7
172.16.0.0/30
2001:db8:e431:ae06:
2001:0db8:ffff:1
2001:db8:aaaa::/48
203.0.113.5/32
"""


class RelayConnectTests(unittest.TestCase):
    """hook_connect on a loaded plugin, for many client addresses."""

    def relay_plugin(self, files, args=""):
        server = server_with(self, [("relay " + args).strip()], files)
        return server.plugins[0]

    def decide(self, plugin, ip):
        txn = fake_transaction(ip)
        self.assertEqual(plugin.hook_connect(txn), codes.DECLINED)
        return txn.connection.relay_client

    def test_relayclients_table(self):
        plugin = self.relay_plugin({"relayclients": RELAYCLIENTS})
        table = [
            ("192.168.42.1", True), ("192.168.42.255", True), ("192.168.43.1", False),
            ("192.168.4.2", False), ("10.9.8.7", True), ("10.9.8.70", False),
            ("172.16.0.0", True), ("172.16.0.3", True),  # CIDR ends included (0.94 left them out)
            ("172.16.0.4", False), ("203.0.113.5", True), ("203.0.113.6", False),
            ("2001:db8:e431:ae06::1", True), ("2001:db8:e431:ae07::1", False),
            ("2001:db8:ffff:1abc::9", True), ("2001:db8:ffff:2::9", False),
            ("2001:db8:aaaa:1234::1", True), ("2001:db8:aaab::1", False),
            ("::1", True),  # IPv6 localhost always relays, as in qpsmtpd
            ("127.0.0.1", False), ("198.51.100.1", False),
        ]
        for ip, expected in table:
            self.assertEqual(self.decide(plugin, ip), expected, ip)

    def test_norelayclients_wins(self):
        plugin = self.relay_plugin({"relayclients": RELAYCLIENTS,
                                    "norelayclients": "192.168.42.7\n2001:db8:e431:ae06::5\n::1\n"
                                                      "172.16.0.2/31\n"})
        plugin.environ = {"RELAYCLIENT": "1"}
        for ip in ("192.168.42.7", "2001:db8:e431:ae06::5", "::1", "172.16.0.3"):
            self.assertFalse(self.decide(plugin, ip), ip)
        self.assertTrue(self.decide(plugin, "192.168.42.8"))
        self.assertTrue(self.decide(plugin, "172.16.0.1"))

    def test_norelayclients_resets_relay_client(self):
        plugin = self.relay_plugin({"norelayclients": "192.0.2."})
        txn = fake_transaction("192.0.2.9")
        txn.connection.relay_client = True
        plugin.hook_connect(txn)
        self.assertFalse(txn.connection.relay_client)

    def test_relayclient_env(self):
        plugin = self.relay_plugin({})
        plugin.environ = {"RELAYCLIENT": "1"}
        self.assertTrue(self.decide(plugin, "198.51.100.1"))
        plugin.environ = {"RELAYCLIENT": "0"}
        self.assertFalse(self.decide(plugin, "198.51.100.1"))
        plugin.environ = {}
        self.assertFalse(self.decide(plugin, "198.51.100.1"))

    def test_morerelayclients_plain_file(self):
        plugin = self.relay_plugin({"morerelayclients": "198.51.100.\n2001:db8:1:\n"})
        self.assertTrue(self.decide(plugin, "198.51.100.20"))
        self.assertTrue(self.decide(plugin, "2001:db8:1::20"))
        self.assertFalse(self.decide(plugin, "198.51.101.20"))
        self.assertFalse(self.decide(plugin, "2001:db8:2::20"))

    def test_morerelayclients_cdb(self):
        server = server_with(self, ["relay"])
        config_dir = server.config.config_dir
        write_cdb(os.path.join(config_dir, "morerelayclients.cdb"),
                  [("198.51.100.", ""), ("203.0.113.9", ""), ("2001:0db8:0002", "")])
        plugin = server.plugins[0]
        self.assertTrue(self.decide(plugin, "198.51.100.20"))
        self.assertTrue(self.decide(plugin, "203.0.113.9"))
        self.assertTrue(self.decide(plugin, "2001:db8:2::1"))
        self.assertFalse(self.decide(plugin, "203.0.113.90"))
        self.assertFalse(self.decide(plugin, "2001:db8:3::1"))

    def test_relayclients_reread_when_changed(self):
        server = server_with(self, ["relay"], {"relayclients": "192.0.2.1"})
        plugin = server.plugins[0]
        self.assertFalse(self.decide(plugin, "192.0.2.2"))
        with open(os.path.join(server.config.config_dir, "relayclients"), "w") as f:
            f.write("192.0.2.2\n")
        server.config.clear_cache()
        self.assertTrue(self.decide(plugin, "192.0.2.2"))
        self.assertFalse(self.decide(plugin, "192.0.2.1"))

    def test_bad_relayclients_line_is_a_startup_error(self):
        e = self.assertRaises(StartupError, make_server, self, ["relay"],
                              {"relayclients": "192.0.2.1\n10.0.0.0/99\n"})
        self.assertIn("relayclients:2:", str(e))
        self.assertIn("10.0.0.0/99", str(e))
        e = self.assertRaises(StartupError, make_server, self, ["relay"],
                              {"norelayclients": "192.168\n"})
        self.assertIn("norelayclients:1:", str(e))

    def test_bad_arguments(self):
        self.assertRaises(StartupError, make_server, self, ["relay foo 1"])
        self.assertRaises(StartupError, make_server, self, ["relay only"])

    def test_only_registers_rcpt_hook(self):
        self.assertFalse(server_with(self, ["relay"]).hooks.has("rcpt"))
        self.assertFalse(server_with(self, ["relay only 0"]).hooks.has("rcpt"))
        self.assertTrue(server_with(self, ["relay only 1"]).hooks.has("rcpt"))


class RelaySessionTests(unittest.TestCase):
    """relay (and check_relay) in a real session from 127.0.0.1."""

    async def rcpt(self, plugins, files, recipient, host="127.0.0.1"):
        server, port = start_server(self, plugins, files, interface=host)
        client = await connect(self, port, host)
        self.assertEqual((await client.command("HELO client.example"))[0], 250)
        self.assertEqual((await client.command("MAIL FROM:<a@b.example>"))[0], 250)
        return await client.command("RCPT TO:<%s>" % recipient)

    async def test_relay_client_may_relay(self):
        reply = await self.rcpt(["relay", "rcpt_ok"], {"relayclients": "127.0.0.1"},
                                "someone@elsewhere.example")
        self.assertEqual(reply, (250, ["<someone@elsewhere.example>, recipient ok"]))

    async def test_relay_client_by_prefix(self):
        reply = await self.rcpt(["relay", "rcpt_ok"], {"relayclients": "127.0."},
                                "someone@elsewhere.example")
        self.assertEqual(reply, (250, ["<someone@elsewhere.example>, recipient ok"]))

    async def test_other_client_may_not_relay(self):
        reply = await self.rcpt(["relay", "rcpt_ok"], {"relayclients": "10.0.0.0/8"},
                                "someone@elsewhere.example")
        self.assertEqual(reply, (550, ["Relaying denied (#5.7.1)"]))  # rcpt_ok's text

    async def test_norelayclients_overrides(self):
        reply = await self.rcpt(["relay", "rcpt_ok"],
                                {"relayclients": "127.0.0.0/8", "norelayclients": "127.0.0.1"},
                                "someone@elsewhere.example")
        self.assertEqual(reply, (550, ["Relaying denied (#5.7.1)"]))

    async def test_only_denies_non_relay_clients_even_for_local_domains(self):
        reply = await self.rcpt(["relay only 1", "rcpt_ok"], {"relayclients": "10.0.0.1"},
                                "user@example.com")
        self.assertEqual(reply, (550, ["relaying denied"]))

    async def test_only_accepts_relay_clients(self):
        # relay answers OK itself: no rcpt_ok needed
        reply = await self.rcpt(["relay only 1"], {"relayclients": "127.0.0.1"},
                                "someone@elsewhere.example")
        self.assertEqual(reply, (250, ["<someone@elsewhere.example>, recipient ok"]))

    async def test_check_relay_alias(self):
        server, port = start_server(self, ["check_relay only 1"], {"relayclients": "127.0.0.1"})
        plugin = server.plugins[0]
        self.assertEqual(type(plugin).__name__, "Relay")
        self.assertEqual(plugin.name, "check_relay")
        self.assertTrue(plugin.only)
        client = await connect(self, port)
        await client.command("HELO client.example")
        await client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(await client.command("RCPT TO:<x@elsewhere.example>"),
                         (250, ["<x@elsewhere.example>, recipient ok"]))

    async def test_check_relay_alias_denies(self):
        reply = await self.rcpt(["check_relay only 1", "rcpt_ok"], {"relayclients": "10.0.0.1"},
                                "user@example.com")
        self.assertEqual(reply, (550, ["relaying denied"]))

    async def test_ipv6_localhost(self):
        if not socket.has_ipv6:
            raise unittest.SkipTest("no IPv6")
        try:
            reply = await self.rcpt(["relay only 1"], {}, "x@elsewhere.example", host="::1")
        except OSError as e:
            raise unittest.SkipTest("cannot use ::1: %s" % e)
        self.assertEqual(reply, (250, ["<x@elsewhere.example>, recipient ok"]))

    async def test_ipv6_norelayclients(self):
        if not socket.has_ipv6:
            raise unittest.SkipTest("no IPv6")
        try:
            reply = await self.rcpt(["relay only 1"], {"norelayclients": "::1"},
                                    "x@elsewhere.example", host="::1")
        except OSError as e:
            raise unittest.SkipTest("cannot use ::1: %s" % e)
        self.assertEqual(reply, (550, ["relaying denied"]))
