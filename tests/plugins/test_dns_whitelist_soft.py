"""Tests of the dns_whitelist_soft plugin (and its async/ name): clients listed in a DNS
whitelist served by the suite's private NSD (tests/support/dns.py) get the connection note
``whitelisthost``, which the plugins after it honour (``rcpt_ok`` accepts any recipient of an
immune connection, ``dnsbl`` and ``rhsbl`` skip it), over loopback sockets.
"""

from twisted.trial import unittest

from qpsmtpd_tx.codes import LOGERROR, LOGNOTICE
from tests.support.dnslist_cases import ArgumentCases, DNSListTestCase

ELSEWHERE = ["HELO c.example", "MAIL FROM:<a@bad.example>", "RCPT TO:<u@elsewhere.example>"]
RELAYING_DENIED = (550, ["Relaying denied (#5.7.1)"])
ACCEPTED = (250, ["<u@elsewhere.example>, recipient ok"])


class WhitelistTests(DNSListTestCase):
    async def test_listed_client_is_immune_from_the_first_rcpt(self):
        unlisted = self.zone("wl", [("2.0.0.127", "TXT", "someone else")])
        listed = self.listing("wl", text="friend of ours")
        _, port, log = self.serve(["dns_whitelist_soft", "rcpt_ok"],
                                  {"whitelist_zones": "%s\n%s\n" % (unlisted, listed)})
        _, _, replies = await self.talk(port, ELSEWHERE)
        self.assertEqual(replies[2], ACCEPTED)
        self.assertIn((LOGNOTICE, "Host 127.0.0.1 is whitelisted: friend of ours"), log)
        _, port, _ = self.serve(["dns_whitelist_soft", "rcpt_ok"], {"whitelist_zones": unlisted})
        _, _, replies = await self.talk(port, ELSEWHERE)
        self.assertEqual(replies[2], RELAYING_DENIED)

    async def test_a_records_alone_do_not_whitelist(self):
        zone = self.listing("wla")                    # an A record, no TXT
        _, port, _ = self.serve(["dns_whitelist_soft", "rcpt_ok"], {"whitelist_zones": zone})
        _, _, replies = await self.talk(port, ELSEWHERE)
        self.assertEqual(replies[2], RELAYING_DENIED)

    async def test_note_comes_at_rcpt_not_at_connect_unless_async(self):
        whitelist = self.listing("wl", text="friend")
        blacklist = self.listing("bl", text="listed")
        rh = self.zone("rh", [("bad.example", "TXT", "is listed")])
        files = {"whitelist_zones": whitelist, "dnsbl_zones": blacklist, "rhsbl_zones": rh}
        # as in 0.94: dnsbl's connect hook runs before the whitelist answer is looked at
        _, port, _ = self.serve(["dns_whitelist_soft", "dnsbl", "rcpt_ok"], files)
        _, greeting, _ = await self.talk(port)
        self.assertEqual(greeting, (550, ["listed"]))
        # rhsbl at the first MAIL refuses; after a RCPT the connection is immune
        _, port, _ = self.serve(["dns_whitelist_soft", "rhsbl", "rcpt_ok"], files)
        _, _, replies = await self.talk(port, [
            "HELO c.example", "MAIL FROM:<a@bad.example>", "MAIL FROM:<a@good.example>",
            "RCPT TO:<u@example.com>", "RSET", "MAIL FROM:<a@bad.example>"])
        self.assertEqual([code for code, _ in replies], [250, 550, 250, 250, 250, 250])
        # async/dns_whitelist_soft waits at connect: dnsbl already sees the note
        _, port, _ = self.serve(["async/dns_whitelist_soft", "dnsbl", "rcpt_ok"], files)
        _, greeting, replies = await self.talk(port, ELSEWHERE)
        self.assertEqual(greeting[0], 220)
        self.assertEqual(replies[2], ACCEPTED)

    async def test_failing_zones_cost_a_bounded_wait_and_are_logged(self):
        broken = self.dns.servfail_zone(self.dns.unique_zone("sf"))
        silent = self.listing("quiet", text="never seen")
        self.dns.set_silent(silent)
        self.addCleanup(self.dns.clear_shaping, silent)
        _, port, log = self.serve(["dns_whitelist_soft", "rcpt_ok"],
                                  {"whitelist_zones": "%s\n%s\n" % (broken, silent),
                                   # c-ares tries 3 × 5 s: longer than the RCPT's wait
                                   "dns_attempts": "3", "dns_timeout": "5"},
                                  nameserver=self.dns.shaped_address)
        # the silent zone never answers: each RCPT waits at most 4 s for it, then goes on
        _, _, replies = await self.talk(port, ELSEWHERE + ["RCPT TO:<v@example.com>"])
        self.assertEqual(replies[2:], [RELAYING_DENIED, (250, ["<v@example.com>, recipient ok"])])
        _, port, log = self.serve(["dns_whitelist_soft", "rcpt_ok"], {"whitelist_zones": broken})
        _, _, replies = await self.talk(port, ELSEWHERE)
        self.assertEqual(replies[2], RELAYING_DENIED)
        self.assertTrue([line for line in log if line[0] == LOGERROR and broken in line[1]], log)

    async def test_ipv6_client_by_nibbles(self):
        entry = ".".join("1" + "0" * 31)
        zone = self.zone("wl6", [(entry, "TXT", "v6 friend")])
        _, port, _ = self.serve(["dns_whitelist_soft", "rcpt_ok"], {"whitelist_zones": zone},
                                interface="::1")
        _, _, replies = await self.talk(port, ELSEWHERE, host="::1")
        self.assertEqual(replies[2], ACCEPTED)


class ArgumentTests(ArgumentCases, unittest.TestCase):
    plugin = "dns_whitelist_soft"

    bad_arguments = [("reject 1", "unknown argument 'reject'")]

    def test_bad_zone_line_stops_startup(self):
        self.assertStartupError(["dns_whitelist_soft"], "whitelist_zones:1: not a DNS zone name",
                                {"whitelist_zones": "bad..zone\n"})
