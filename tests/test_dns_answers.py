"""The resolver against a real DNS server: the suite's private NSD (tests.support.dns), asked
directly or through its relay (whose counters show what reached the server and how)."""

import time

from twisted.internet import reactor
from twisted.trial import unittest

from qpsmtpd_tx.dns import DNSError, NoData, NXDomain, Resolver, ServFail
from tests.support.dns import private_dns

#: the silent lookup's limit: the other lookup (through the relay, to NSD and back) is to
#: be answered before it, which a stall of a loaded machine must not turn around
SILENT_TIMEOUT = 1.0

LONG_TEXT = "v=spf1 " + " ".join("ip4:192.0.2.%d" % n for n in range(60)) + " -all"


class AnswerTests(unittest.TestCase):
    def setUp(self):
        self.dns = private_dns()
        self.zone = self.dns.set_zone(self.dns.unique_zone("ans"), [
            ("@", "MX", "10 mx1"), ("@", "MX", "20 mx2.other.example."),
            ("mx1", "A", "192.0.2.10"), ("mx1", "AAAA", "2001:db8::10"),
            ("host", "A", "192.0.2.1"), ("host", "A", "192.0.2.2"),
            ("alias", "CNAME", "host"),
            ("long", "TXT", LONG_TEXT),
            ("list", "TXT", ["part one, ", "part two"]),
        ], ttl=300)
        self.resolver = self.make_resolver(self.dns.address)

    def make_resolver(self, address, **kwargs):
        resolver = Resolver.from_settings(reactor, servers=[address], **kwargs)
        self.addCleanup(resolver.close)
        return resolver

    def name(self, label):
        return "%s.%s" % (label, self.zone) if label != "@" else self.zone

    async def test_record_types(self):
        answer = await self.resolver.a(self.name("host"))
        self.assertEqual(sorted(answer.records), ["192.0.2.1", "192.0.2.2"])
        self.assertEqual(answer.ttl, 300)
        self.assertEqual((await self.resolver.aaaa(self.name("mx1"))).records, ("2001:db8::10",))
        self.assertEqual(sorted((await self.resolver.mx(self.zone)).records),
                         [(10, self.name("mx1")), (20, "mx2.other.example")])
        # a CNAME is followed; only the records of the type asked are returned
        self.assertEqual(sorted((await self.resolver.a(self.name("alias"))).records),
                         ["192.0.2.1", "192.0.2.2"])
        # a record's strings are joined, as RFC 7208 and DNS lists read them
        self.assertEqual((await self.resolver.txt(self.name("list"))).records,
                         ("part one, part two",))

    async def test_ptr_ipv4_and_ipv6(self):
        self.dns.set_ptr("192.0.2.77", "seventy-seven.%s." % self.zone)
        self.addCleanup(self.dns.remove_zone, "77.2.0.192.in-addr.arpa")
        self.assertEqual((await self.resolver.ptr("192.0.2.77")).records,
                         ("seventy-seven.%s" % self.zone,))
        origin = self.dns.set_ptr("2001:db8::77", "six.%s." % self.zone)
        self.addCleanup(self.dns.remove_zone, origin)
        self.assertEqual((await self.resolver.ptr("2001:db8::77")).records,
                         ("six.%s" % self.zone,))

    async def test_nxdomain_nodata_servfail_are_distinct(self):
        with self.assertRaises(NXDomain) as nx:
            await self.resolver.a(self.name("nothing"))
        with self.assertRaises(NoData) as nodata:
            await self.resolver.mx(self.name("host"))
        broken = self.dns.servfail_zone(self.dns.unique_zone("broken"))
        with self.assertRaises(ServFail) as fail:
            await self.resolver.a("x." + broken)
        self.assertTrue(nx.exception.definite and nodata.exception.definite)
        self.assertFalse(fail.exception.definite)

    async def test_large_txt_comes_over_udp_with_edns0(self):
        resolver = self.make_resolver(self.dns.shaped_address)
        before = self.dns.shaper_stats()
        answer = await resolver.txt(self.name("long"))
        self.assertEqual(answer.records, (LONG_TEXT,))
        self.assertGreater(len(LONG_TEXT), 512)
        after = self.dns.shaper_stats()
        self.assertEqual(after["queries"] - before["queries"], 1)
        self.assertEqual(after["tcp"] - before["tcp"], 0)

    async def test_answer_too_large_for_udp_comes_over_tcp(self):
        # Larger than EDNS0's 1232-byte payload: NSD truncates the UDP answer, and the
        # resolver asks again over TCP.
        huge = ["x%03d " % n + "y" * 240 for n in range(12)]
        zone = self.dns.set_zone(self.dns.unique_zone("huge"), [("big", "TXT", huge)])
        resolver = self.make_resolver(self.dns.shaped_address)
        before = self.dns.shaper_stats()
        answer = await resolver.txt("big." + zone)
        self.assertEqual(answer.records, ("".join(huge),))
        self.assertGreater(len(answer.records[0]), 2000)
        self.assertEqual(self.dns.shaper_stats()["tcp"] - before["tcp"], 1)

    async def test_answers_and_negative_answers_are_cached(self):
        resolver = self.make_resolver(self.dns.shaped_address)
        before = self.dns.shaper_stats()["queries"]
        for _ in range(3):
            await resolver.a(self.name("host"))
            with self.assertRaises(NXDomain):
                await resolver.a(self.name("nothing"))
        self.assertEqual(self.dns.shaper_stats()["queries"] - before, 2)
        self.assertEqual(resolver.stats["cached"], 4)

    async def test_server_failure_is_remembered_briefly(self):
        # A burst of clients naming a broken domain costs one query, not one each.
        broken = self.dns.servfail_zone(self.dns.unique_zone("sfc"))
        resolver = self.make_resolver(self.dns.shaped_address)
        with self.assertRaises(ServFail):
            await resolver.a("x." + broken)        # c-ares may try again on SERVFAIL
        before = self.dns.shaper_stats()["queries"]
        for _ in range(3):
            with self.assertRaises(ServFail):
                await resolver.a("x." + broken)
        self.assertEqual(self.dns.shaper_stats()["queries"] - before, 0)

    async def test_without_our_cache_every_lookup_asks_the_server(self):
        # c-ares' own cache (unbounded, up to an hour) is off: with ours off too, a changed
        # record is seen at once and every lookup reaches the server.
        zone = self.dns.set_zone(self.dns.unique_zone("change"), [("h", "A", "192.0.2.1")],
                                 ttl=3600)
        resolver = self.make_resolver(self.dns.shaped_address, cache_size=0)
        before = self.dns.shaper_stats()["queries"]
        self.assertEqual((await resolver.a("h." + zone)).records, ("192.0.2.1",))
        self.dns.set_zone(zone, [("h", "A", "192.0.2.2")], ttl=3600)
        self.assertEqual((await resolver.a("h." + zone)).records, ("192.0.2.2",))
        self.assertEqual(self.dns.shaper_stats()["queries"] - before, 2)

    async def test_silent_zone_times_out_others_answer(self):
        silent = self.dns.set_zone(self.dns.unique_zone("silent"), [("h", "A", "192.0.2.9")])
        self.dns.set_silent(silent)
        self.addCleanup(self.dns.clear_shaping, silent)
        resolver = self.make_resolver(self.dns.shaped_address)
        started = time.monotonic()
        slow = resolver.a("h." + silent, timeout=SILENT_TIMEOUT)
        answer = await resolver.a(self.name("host"))
        if slow.called:
            self.assertLess(time.monotonic() - started, SILENT_TIMEOUT, "too slow for this "
                            "test: the silent lookup's time was up before the other's answer")
        self.assertFalse(slow.called)          # the silent zone does not hold the others up
        self.assertEqual(len(answer.records), 2)
        with self.assertRaises(DNSError):
            await slow
