"""Tests of the helo plugin's DNS tests (policy rfc and strict: no_forward_dns,
no_reverse_dns, no_matching_dns): each test connects from a loopback address of its own
(127.77.Y.Z) whose PTR records, and the HELO names' addresses, are served by the suite's
private DNS server (NSD, tests/support/dns.py); a real server on a loopback socket asks it
through its ``dns_servers`` config item, with the core's reverse DNS on.
"""

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.dns.names import reverse_name
from tests.support.dns import private_dns
from tests.support.harness import log_every_level
from tests.support.host_dns import client_address, start_dns_server
from tests.support.server import connect

#: the parent of the test clients' reverse zones: NXDOMAIN for an address without its own
REVERSE_PARENT = "77.127.in-addr.arpa"


class HeloDNSTests(unittest.TestCase):
    def setUp(self):
        self.dns = private_dns()
        if REVERSE_PARENT not in self.dns.zones:
            self.dns.set_zone(REVERSE_PARENT, [])
        self.ip = client_address()
        #: config files of the server :meth:`helo` starts
        self.server_files = {}

    def hosts(self, records, prefix="hd"):
        """A zone of this test with ``records``; returns its name."""
        return self.dns.set_zone(self.dns.unique_zone(prefix), records)

    async def helo(self, line, args="policy rfc", ptr=(), source=True, shaped=False):
        """The reply (code, last line) to ``line`` from the test's address, whose PTR
        records are ``ptr`` (none: NXDOMAIN); the server's log is ``self.log`` and the
        connection's notes ``self.notes``."""
        if ptr:
            self.dns.set_ptr(self.ip, *ptr)
        server, port, _ = start_dns_server(self, [("helo " + args).strip(), "rcpt_ok"],
                                           self.server_files, reverse_dns=True, shaped=shaped)
        self.server = server
        self.log, self.notes = [], {}

        def log(level, message, plugin=None, transaction=None, hook=None):
            name = plugin.name if plugin is not None else None
            self.log.append((level, name, message))
            if name == "helo" and transaction is not None:
                self.notes = transaction.connection.notes
        log_every_level(self, server)
        self.patch(server, "log", log)
        client = await connect(self, port, source=self.ip if source else None)
        self.client = client
        code, lines = await client.command(line)
        return code, lines[-1]

    def helo_log(self, level):
        return [m for lvl, name, m in self.log if name == "helo" and lvl == level]

    def assertGreeted(self, reply):
        self.assertEqual(reply[0], 250, reply)
        self.assertIn("pass", self.helo_log(codes.LOGINFO))

    async def test_confirmed_name(self):
        zone = self.hosts([("mail", "A", self.ip)])
        self.assertGreeted(await self.helo("HELO mail." + zone, "policy strict",
                                           ptr=["mail." + zone]))
        self.assertEqual((self.notes["helo_forward_match"], self.notes["helo_reverse_match"]),
                         (1, 1))
        self.assertEqual(self.notes["karma"], 1)

    async def test_reverse_lookup_is_the_cores(self):
        zone = self.hosts([("mail", "A", self.ip)])
        self.assertGreeted(await self.helo("HELO mail." + zone, ptr=["mail." + zone]))
        stats = self.server.resolver.stats
        # the PTR once (the core's; helo's from the cache), then the name's A and AAAA
        self.assertEqual((stats["queries"], stats["cached"]), (3, 1), stats)

    async def test_name_that_does_not_exist(self):
        zone = self.hosts([])
        self.assertEqual(await self.helo("HELO gone." + zone, ptr=["x.example"]),
                         (550, "HELO hostname does not exist"))
        await self.client.wait_closed()
        self.assertIn("fail, no such host", self.helo_log(codes.LOGINFO))

    async def test_name_without_an_address(self):
        zone = self.hosts([("mail", "MX", (10, "mx.example.net"))])
        self.assertEqual(await self.helo("EHLO mail." + zone, ptr=["x.example"]),
                         (550, "HELO hostname did not resolve"))

    async def test_ipv6_address_resolves(self):
        zone = self.hosts([("mail", "AAAA", "2001:db8::25")])
        self.assertGreeted(await self.helo("HELO mail." + zone, ptr=["x.example"]))
        self.assertNotIn("helo_forward_match", self.notes)

    async def test_no_reverse_dns(self):
        zone = self.hosts([("mail", "A", self.ip)])
        self.assertEqual(await self.helo("HELO mail." + zone),
                         (550, "no rDNS for %s" % self.ip))

    async def test_no_ptr_record(self):
        self.dns.set_zone(reverse_name(self.ip), [("@", "TXT", "no ptr here")])
        zone = self.hosts([("mail", "A", self.ip)])
        self.assertEqual(await self.helo("HELO mail." + zone),
                         (550, "error getting reverse DNS for %s" % self.ip))

    async def test_strict_needs_a_forward_or_reverse_match(self):
        zone = self.hosts([("mail", "A", "192.0.2.1")])
        self.assertEqual(await self.helo("HELO mail." + zone, "policy strict",
                                         ptr=["other.example.net"]),
                         (550, "That HELO hostname fails FCrDNS"))
        self.assertIn("fail, no matching DNS", self.helo_log(codes.LOGINFO))
        # rfc does not ask for a match
        self.assertGreeted(await self.helo("HELO mail." + zone, ptr=["other.example.net"]))

    async def test_a_ptr_name_in_the_same_domain_matches(self):
        zone = self.hosts([("mail", "A", "192.0.2.1")])
        self.assertGreeted(await self.helo("HELO mail." + zone, "policy strict",
                                           ptr=["pool-7." + zone]))
        self.assertEqual(self.notes.get("helo_reverse_match"), 1)
        self.assertNotIn("helo_forward_match", self.notes)

    async def test_an_address_in_the_clients_slash_24_matches(self):
        zone = self.hosts([("mail", "A", self.ip.rsplit(".", 1)[0] + ".250")])
        self.assertGreeted(await self.helo("HELO mail." + zone, "policy strict",
                                           ptr=["other.example.net"]))
        self.assertEqual(self.notes.get("helo_forward_match"), 1)

    async def test_address_literals(self):
        self.assertGreeted(await self.helo("HELO [%s]" % self.ip, ptr=["x.example"]))
        self.assertEqual(await self.helo("HELO [%s]" % self.ip, "policy strict",
                                         ptr=["x.example"]),
                         (550, "RFC 2821 allows an address literal, but we do not"))

    async def test_our_own_name_from_the_loopback(self):
        # mx.example.org is not served (REFUSED), nor is 127.0.0.1's PTR: all skipped
        self.assertGreeted(await self.helo("HELO mx.example.org", "policy strict",
                                           source=False))
        self.assertEqual(len(self.helo_log(codes.LOGWARN)), 3, self.log)

    async def test_server_failure_is_a_skip(self):
        zone = self.dns.servfail_zone(self.dns.unique_zone("hdsf"))
        self.assertGreeted(await self.helo("HELO mail." + zone, "policy strict",
                                           ptr=["other.example.net"]))
        self.assertEqual(self.helo_log(codes.LOGWARN), [
            "no_forward_dns: skip, query failed (mail.%s A: server failure (ARES_ESERVFAIL); "
            "mail.%s AAAA: server failure (ARES_ESERVFAIL))" % (zone, zone),
            "no_matching_dns: skip, the forward lookup failed"])

    async def test_forward_and_reverse_are_asked_at_once(self):
        # All silent, with a 2 s budget of DNS waiting: the core's PTR lookup spends 1 s;
        # asked at once, helo's A, AAAA and PTR all reach the DNS relay, which drops them;
        # the PTR asked after the A and AAAA had timed out would find the budget spent.
        zone = self.hosts([("mail", "A", self.ip)], prefix="hdqq")
        for silent in (zone, reverse_name(self.ip)):
            self.dns.set_silent(silent)
            self.addCleanup(self.dns.clear_shaping, silent)
        before = self.dns.shaper_stats()["dropped"]
        self.server_files = {"dns_budget": "2"}
        self.assertGreeted(await self.helo("HELO mail." + zone, "policy rfc timeout 1",
                                           shaped=True))
        self.assertEqual(self.dns.shaper_stats()["dropped"] - before, 4)
        self.assertEqual(len(self.helo_log(codes.LOGWARN)), 2, self.log)

    async def test_silence_is_a_skip(self):
        zone = self.hosts([("mail", "A", "192.0.2.1")], prefix="hdq")
        self.dns.set_silent(zone)
        self.addCleanup(self.dns.clear_shaping, zone)
        self.assertGreeted(await self.helo("HELO mail." + zone, "policy strict timeout 1",
                                           ptr=["x.example"], shaped=True))
        skips = self.helo_log(codes.LOGWARN)
        self.assertEqual(len(skips), 2, self.log)
        self.assertIn("timed out", skips[0])
