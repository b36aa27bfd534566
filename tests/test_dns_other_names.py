"""Names c-ares will not put in a query (``a+tag.example``: ARES_EBADNAME; a backslash is
read as an escape) are asked through Twisted's DNS client of the same server
(qpsmtpd_tx/dns/other_names.py), with the same answers and errors: a label may hold any
octet (RFC 2181 11), and SPF's ``%{l}`` makes names from a sender's local part (RFC 7208
7.3). Before, such a name was a BadName, a lookup that finds nothing: an SPF ``exists`` on
it did not match where Mail::SPF's did (tests/test_spf_differential.py). On the suite's
private NSD."""

from twisted.internet import reactor
from twisted.trial import unittest

from qpsmtpd_tx.dns import BadName, NoData, NXDomain, Resolver
from qpsmtpd_tx.dns.other_names import can_ask, needed
from qpsmtpd_tx.spf import check_host
from tests.support.dns import private_dns


class OtherNamesTests(unittest.TestCase):
    def setUp(self):
        self.dns = private_dns()
        self.zone = self.dns.set_zone(self.dns.unique_zone("othernames"), [
            ("a+tag", "A", "192.0.2.1"),
            ("a+tag", "AAAA", "2001:db8::1"),
            ("a+tag", "MX", (10, "mx.example")),
            ("a+tag", "TXT", ["v=spf1 ", "-all"]),
            ("x=y!z", "TXT", "odd"),
            ("a+tag.m", "A", "127.0.0.2"),
            ("@", "TXT", "v=spf1 exists:%{l}.m.%{d} -all"),
        ])
        self.resolver = Resolver.from_settings(reactor, [self.dns.address])
        self.addCleanup(self.resolver.close)

    async def records(self, name, rrtype):
        answer = await self.resolver.lookup("%s.%s" % (name, self.zone), rrtype)
        return answer.records

    async def test_records_as_c_ares_gives_them(self):
        self.assertEqual(await self.records("a+tag", "A"), ("192.0.2.1",))
        self.assertEqual(await self.records("a+tag", "AAAA"), ("2001:db8::1",))
        self.assertEqual(await self.records("a+tag", "MX"), ((10, "mx.example"),))
        self.assertEqual(await self.records("a+tag", "TXT"), ("v=spf1 -all",))
        self.assertEqual(await self.records("x=y!z", "TXT"), ("odd",))
        # asked once, then from the cache
        await self.records("a+tag", "A")
        self.assertEqual(self.resolver.stats["queries"], 5)

    async def test_errors_as_c_ares_gives_them(self):
        with self.assertRaises(NXDomain):
            await self.records("b+tag", "A")
        with self.assertRaises(NoData):
            await self.records("x=y!z", "A")
        with self.assertRaises(BadName):
            await self.resolver.lookup("a b." + self.zone, "A")

    async def test_spf_exists_on_a_local_part_with_a_plus(self):
        result = await check_host(self.resolver, "192.0.2.9", "a+tag@" + self.zone, "h.example")
        self.assertEqual((result.result, result.mechanism), ("pass", "exists:%{l}.m.%{d}"))
        result = await check_host(self.resolver, "192.0.2.9", "b+tag@" + self.zone, "h.example")
        self.assertEqual((result.result, result.mechanism), ("fail", "-all"))

    def test_which_names(self):
        self.assertTrue(needed("a+tag.example.com"))
        self.assertTrue(needed("a\\.b.example.com"))
        self.assertFalse(needed("a-b_c.example.com"))
        self.assertFalse(needed("a b.example.com"))
        self.assertFalse(can_ask("x" * 64 + ".example.com"))
