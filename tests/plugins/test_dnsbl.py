"""Tests of the dnsbl plugin: clients refused at connect by DNS blacklists served by the suite's
private NSD (tests/support/dns.py), over loopback sockets; its arguments and config files.
Reply texts are qpsmtpd 0.94's (its differences on purpose are in the plugin's docstring);
tests/plugins/test_dnslists_perl_comparison.py compares them with the Perl server. Also: the
three DNS list plugins' documentation, and Debian's /etc/qpsmtpd (which loads rhsbl and dnsbl)
passing ``check-config``.
"""

import os

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from qpsmtpd_tx import cli
from qpsmtpd_tx.codes import LOGERROR, LOGWARN
from qpsmtpd_tx.loader import find_plugin_file
from qpsmtpd_tx.paths import default_plugin_dirs
from qpsmtpd_tx.testing import loaded_plugin, wait_for
from tests.support.dnslist_cases import ArgumentCases, DNSListTestCase, logged
from tests.support.server import SMTPClient
from tests.test_cli import run_cli

GREETING = 220
NIBBLES_OF_V6_LOOPBACK = ".".join("1" + "0" * 31)


class ListedClientTests(DNSListTestCase):
    async def test_txt_zone_refuses_with_its_text_and_closes(self):
        zone = self.listing("bl", text="Listed by test, see http://bl.test/?127.0.0.1")
        _, port, _ = self.serve(["dnsbl", "rcpt_ok"], {"dnsbl_zones": zone})
        client, greeting, _ = await self.talk(port)
        self.assertEqual(greeting, (550, ["Listed by test, see http://bl.test/?127.0.0.1"]))
        await client.wait_closed()

    async def test_a_zone_refuses_with_its_message_and_the_ip(self):
        zone = self.listing("bla")
        empty = self.listing("ble")
        _, port, _ = self.serve(["dnsbl"], {"dnsbl_zones": "%s:You are listed, %%IP%% (%%IP%%)\n"
                                                           % zone})
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting, (550, ["You are listed, 127.0.0.1 (127.0.0.1)"]))
        _, port, _ = self.serve(["dnsbl"], {"dnsbl_zones": "%s:\n" % empty})
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting, (550, ["Blocked by %s" % empty]))

    async def test_a_zone_is_asked_for_a_records_only(self):
        # listed by TXT only: a zone with a message does not see it
        zone = self.zone("blt", [("1.0.0.127", "TXT", "txt only")])
        _, port, _ = self.serve(["dnsbl"], {"dnsbl_zones": "%s:listed\n" % zone})
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting[0], GREETING)

    async def test_unlisted_client_is_greeted(self):
        zone = self.listing("bl", text="someone else", entry="2.0.0.127")
        _, port, log = self.serve(["dnsbl", "rcpt_ok"], {"dnsbl_zones": zone})
        _, greeting, replies = await self.talk(port, ["HELO c.example", "MAIL FROM:<a@b.example>",
                                                      "RCPT TO:<u@example.com>"])
        self.assertEqual(greeting[0], GREETING)
        self.assertEqual([code for code, _ in replies], [250, 250, 250])
        self.assertTrue(logged(log, "pass"))

    async def test_first_listing_zone_of_the_file_decides(self):
        unlisted = self.zone("bl", [("2.0.0.127", "TXT", "other")])
        first = self.listing("bl", text="first")
        second = self.listing("bl", text="second")
        _, port, _ = self.serve(["dnsbl"],
                                {"dnsbl_zones": "%s\n%s\n%s\n" % (unlisted, first, second)})
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting, (550, ["first"]))
        _, port, _ = self.serve(["dnsbl"], {"dnsbl_zones": "%s\n%s\n" % (second, first)})
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting, (550, ["second"]))

    async def test_reject_types(self):
        zone = self.listing("bl", text="go away")
        for args, code in (("reject_type temp", 450), ("reject_type disconnect", 550),
                           ("reject_type temp_disconnect", 450), ("disconnect", 550)):
            _, port, _ = self.serve(["dnsbl " + args], {"dnsbl_zones": zone})
            client, greeting, _ = await self.talk(port)
            self.assertEqual(greeting, (code, ["go away"]), args)
            await client.wait_closed()

    async def test_reject_0_logs_and_lowers_karma(self):
        zone = self.listing("bl", text="go away")
        server, port, log = self.serve(["dnsbl reject 0", "rcpt_ok"], {"dnsbl_zones": zone})
        client, greeting, _ = await self.talk(port)
        self.assertEqual(greeting[0], GREETING)
        self.assertTrue(logged(log, "fail, tolerated, " + zone))
        self.assertEqual(next(iter(server.sessions)).connection.notes.get("karma"), -1)

    async def test_reject_naughty_refuses_later_but_not_for_the_postmaster(self):
        zone = self.listing("bl", text="listed here")
        _, port, log = self.serve(["dnsbl reject naughty", "naughty reject rcpt", "rcpt_ok"],
                                  {"dnsbl_zones": zone})
        _, greeting, replies = await self.talk(port, [
            "HELO c.example", "MAIL FROM:<a@b.example>", "RCPT TO:<Postmaster@example.com>",
            "RCPT TO:<u@example.com>"])
        self.assertEqual(greeting[0], GREETING)
        # the postmaster clears the note: the next recipient is accepted too, as in 0.94
        self.assertEqual(replies[2:], [(250, ["<Postmaster@example.com>, recipient ok"]),
                                       (250, ["<u@example.com>, recipient ok"])])
        self.assertTrue([line for line in log if line[0] == LOGWARN
                         and "don't blacklist special account: Postmaster" in line[1]])
        _, _, replies = await self.talk(port, ["HELO c.example", "MAIL FROM:<a@b.example>",
                                               "RCPT TO:<u@example.com>"])
        self.assertEqual(replies[2], (550, ["listed here"]))

    async def test_allow_list_and_relay_clients_are_not_checked(self):
        zone = self.listing("bl", text="go away")
        for files in ({"dnsbl_allow": "10.0.0.1\n127.0.0."}, {"dnsbl_allow": "127.0.0.1"},
                      {"relayclients": "127.0.0.1"}):
            files["dnsbl_zones"] = zone
            _, port, _ = self.serve(["relay", "dnsbl"] if "relayclients" in files else ["dnsbl"],
                                    files)
            _, greeting, _ = await self.talk(port)
            self.assertEqual(greeting[0], GREETING, files)
        _, port, _ = self.serve(["dnsbl"], {"dnsbl_zones": zone, "dnsbl_allow": "127.0.0.10"})
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting[0], 550)

    async def test_rblsmtpd(self):
        zone = self.listing("bl", text="go away")
        server, port, _ = self.serve(["dnsbl"], {"dnsbl_zones": zone})
        plugin = loaded_plugin(server, "dnsbl")
        plugin.environ = {"RBLSMTPD": ""}
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting[0], GREETING)
        plugin.environ = {"RBLSMTPD": "Blocked, %IP% is not welcome"}
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting, (550, ["Blocked, 127.0.0.1 is not welcome"]))
        server, port, _ = self.serve(["dnsbl reject connect"],
                                     {"dnsbl_rejectmsg": "Sorry:\nnot this"})
        loaded_plugin(server, "dnsbl").environ = {"RBLSMTPD": "go"}
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting, (550, ["Sorry: go"]))

    async def test_ipv6_client_is_asked_by_nibbles(self):
        zone = self.zone("bl6", [(NIBBLES_OF_V6_LOOPBACK, "TXT", "v6 listed")])
        _, port, _ = self.serve(["dnsbl"], {"dnsbl_zones": zone}, interface="::1")
        _, greeting, _ = await self.talk(port, host="::1")
        self.assertEqual(greeting, (550, ["v6 listed"]))


class FailingZoneTests(DNSListTestCase):
    async def test_servfail_zone_is_a_logged_skip(self):
        broken = self.dns.servfail_zone(self.dns.unique_zone("sf"))
        listed = self.listing("bl", text="listed")
        _, port, log = self.serve(["dnsbl"], {"dnsbl_zones": broken})
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting[0], GREETING)
        self.assertTrue([line for line in log if line[0] == LOGERROR and broken in line[1]], log)
        _, port, _ = self.serve(["dnsbl"], {"dnsbl_zones": "%s\n%s\n" % (broken, listed)})
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting, (550, ["listed"]))

    async def test_silent_zone_times_out_to_a_skip(self):
        silent = self.listing("quiet", text="never seen")
        self.dns.set_silent(silent)
        self.addCleanup(self.dns.clear_shaping, silent)
        _, port, log = self.serve(["dnsbl timeout 1"], {"dnsbl_zones": silent},
                                  nameserver=self.dns.shaped_address)
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting[0], GREETING)
        self.assertTrue([line for line in log if line[0] == LOGERROR and "timed out" in line[1]])

    async def test_all_zones_are_asked_at_once(self):
        # Three zones that never answer: asked one after another, the second query would go
        # out only once the first had timed out (and been logged).
        zones = [self.listing("par", text="x") for _ in range(3)]
        for zone in zones:
            self.dns.set_silent(zone)
            self.addCleanup(self.dns.clear_shaping, zone)
        before = self.dns.shaper_stats()["queries"]
        _, port, log = self.serve(["dnsbl"], {"dnsbl_zones": "\n".join(zones)},
                                  nameserver=self.dns.shaped_address)
        client = SMTPClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(client.close)
        asked = await wait_for(lambda: self.dns.shaper_stats()["queries"] - before >= 3, 30)
        self.assertTrue(asked, self.dns.shaper_stats())
        self.assertEqual(logged(log, "timed out"), [])
        self.assertIsNone(client.greeting)

    async def test_queries_go_out_while_the_client_name_is_looked_up(self):
        # The client's PTR and the zone never answer, and the connection may wait 1 s for DNS
        # in all: asked only after the PTR lookup, the zone's query would find the budget spent
        # and never be sent. Sent at pre-connection, both queries reach the DNS server.
        client_ip = "127.0.61.7"
        zone = self.listing("pre", text="x", entry="7.61.0.127")
        for silent in (zone, "7.61.0.127.in-addr.arpa"):
            self.dns.set_silent(silent)
            self.addCleanup(self.dns.clear_shaping, silent)
        before = self.dns.shaper_stats()["queries"]
        server, port, _ = self.serve(["dnsbl"], {"dnsbl_zones": zone, "dns_budget": "1"},
                                     nameserver=self.dns.shaped_address)
        server.reverse_dns = True
        client = SMTPClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(client_ip, 0))
        await connectProtocol(endpoint, client)
        self.addCleanup(client.close)
        greeting = await client.reply()
        self.assertEqual(greeting[0], GREETING)     # both timed out: a skip, then the greeting
        self.assertEqual(self.dns.shaper_stats()["queries"] - before, 2)


class ArgumentTests(ArgumentCases, unittest.TestCase):
    plugin = "dnsbl"

    bad_arguments = [("reject 2", "reject must be 0, 1, naughty, connect, not '2'"),
                     ("reject_type later", "reject_type must be one of"),
                     ("timeout x", "timeout must be a positive number"),
                     ("colour red", "unknown argument 'colour'")]

    def test_bad_zone_line_stops_startup_naming_file_and_line(self):
        message = self.assertStartupError(
            ["dnsbl"], "dnsbl_zones:2: not a DNS zone name: 'bl.example.org listed here'",
            {"dnsbl_zones": "ok.example.org\nbl.example.org listed here\n"})
        self.assertIn("a message goes after a ':'", message)


class DocumentationAndDebianTests(unittest.TestCase):
    def test_the_plugins_document_themselves(self):
        for name in ("dnsbl", "rhsbl", "dns_whitelist_soft"):
            info = cli.PluginInfo(name, find_plugin_file(name, default_plugin_dirs()))
            self.assertIsNone(info.error, name)
            for section in ("Arguments", "Config files", "Replies", "Notes",
                            "Differences from qpsmtpd 0.94"):
                self.assertIn(section, info.doc, (name, section))

    def test_debian_etc_qpsmtpd_loads(self):
        # Debian's /etc/qpsmtpd/plugins loads rhsbl and dnsbl: its unchanged config is accepted
        if not os.path.isfile("/etc/qpsmtpd/plugins"):
            raise unittest.SkipTest("Debian's qpsmtpd package is not installed")
        result = run_cli(["check-config", "--config", "/etc/qpsmtpd"])
        self.assertEqual((result.returncode, result.stdout.decode()),
                         (0, "qpsmtpd-tx: /etc/qpsmtpd: no problems found\n"), result.stderr)
