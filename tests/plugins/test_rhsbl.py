"""Tests of the rhsbl plugin: senders refused at MAIL by right-hand-side DNS blacklists served
by the suite's private NSD (tests/support/dns.py), over loopback sockets; its arguments and
config file. Reply texts are qpsmtpd 0.94's.
"""

from twisted.trial import unittest

from qpsmtpd_tx.codes import LOGERROR
from tests.support.dnslist_cases import ArgumentCases, DNSListTestCase, logged
from tests.support.envelope_cases import mail_ok

HELLO = ["HELO c.example"]


def mail(sender):
    return HELLO + ["MAIL FROM:%s" % sender]


class ListedSenderTests(DNSListTestCase):
    def listing_domain(self, prefix, domain="bad.example", text="is listed in test list"):
        return self.zone(prefix, [(domain, "A", "127.0.0.2"), (domain, "TXT", text)])

    async def test_txt_zone_refuses_naming_the_helo_host(self):
        zone = self.listing_domain("rh")
        _, port, _ = self.serve(["rhsbl", "rcpt_ok"], {"rhsbl_zones": zone})
        client, _, replies = await self.talk(
            port, mail("<a@Bad.Example>") + ["RSET", "MAIL FROM:<a@good.example>"])
        self.assertEqual(replies[1], (550, ["Mail from HELO c.example rejected because it is "
                                            "listed in test list"]))
        self.assertEqual(replies[3][0], 250)
        self.assertFalse(client.closed)

    async def test_a_zone_uses_its_message(self):
        zone = self.listing_domain("rha")
        _, port, _ = self.serve(["rhsbl"],
                                {"rhsbl_zones": "%s  does not support abuse@domain" % zone})
        _, _, replies = await self.talk(port, mail("<a@bad.example>"))
        self.assertEqual(replies[1], (550, ["Mail from HELO c.example rejected because it does "
                                            "not support abuse@domain"]))

    async def test_unlisted_null_and_domainless_senders_pass(self):
        zone = self.listing_domain("rh")
        _, port, _ = self.serve(["rhsbl", "rcpt_ok"], {"rhsbl_zones": zone})
        for sender in ("<a@good.example>", "<>", "<postmaster>", "<a@[192.0.2.1]>"):
            _, _, replies = await self.talk(port, mail(sender))
            self.assertEqual(replies[1][0], 250, (sender, replies))

    async def test_first_listing_zone_of_the_file_decides(self):
        first = self.listing_domain("rh", text="first")
        second = self.listing_domain("rh", text="second")
        _, port, _ = self.serve(["rhsbl"], {"rhsbl_zones": "%s\n%s\n" % (first, second)})
        _, _, replies = await self.talk(port, mail("<a@bad.example>"))
        self.assertEqual(replies[1], (550, ["Mail from HELO c.example rejected because it first"]))

    async def test_reject_arguments(self):
        zone = self.listing_domain("rh")
        text = ["Mail from HELO c.example rejected because it is listed in test list"]
        for args, code, closes in (("reject_type temp", 450, False), ("disconnect", 550, True),
                                   ("reject_type temp_disconnect", 421, True)):
            _, port, _ = self.serve(["rhsbl " + args], {"rhsbl_zones": zone})
            client, _, replies = await self.talk(port, mail("<a@bad.example>"))
            self.assertEqual(replies[1], (code, text), args)
            if closes:
                await client.wait_closed()
        _, port, log = self.serve(["rhsbl reject 0", "rcpt_ok"], {"rhsbl_zones": zone})
        _, _, replies = await self.talk(port, mail("<a@bad.example>"))
        self.assertEqual(replies[1][0], 250)
        self.assertTrue(logged(log, "fail, tolerated"))

    async def test_relay_clients_and_whitelisted_senders_are_not_checked(self):
        zone = self.listing_domain("rh")
        for plugins, files in ((["relay", "rhsbl"], {"relayclients": "127.0.0.1"}),
                               (["whitelist", "rhsbl"], {"whitelistsenders": "bad.example"})):
            files["rhsbl_zones"] = zone
            _, port, _ = self.serve(plugins, files)
            _, _, replies = await self.talk(port, mail("<a@bad.example>"))
            self.assertEqual(replies[1], (250, [mail_ok("<a@bad.example>")[4:-2]]), plugins)

    async def test_failing_zones_are_logged_skips(self):
        broken = self.dns.servfail_zone(self.dns.unique_zone("sf"))
        silent = self.listing_domain("quiet")
        self.dns.set_silent(silent)
        self.addCleanup(self.dns.clear_shaping, silent)
        listed = self.listing_domain("rh", text="listed")
        _, port, log = self.serve(["rhsbl dns_timeout 1", "rcpt_ok"],
                                  {"rhsbl_zones": "%s\n%s\n" % (broken, silent)},
                                  nameserver=self.dns.shaped_address)
        _, _, replies = await self.talk(port, mail("<a@bad.example>"))
        self.assertEqual(replies[1][0], 250)
        errors = [message for level, message in log if level == LOGERROR]
        self.assertTrue(any(broken in m and "server failure" in m for m in errors), errors)
        self.assertTrue(any(silent in m and "timed out" in m for m in errors), errors)
        _, port, _ = self.serve(["rhsbl"], {"rhsbl_zones": "%s\n%s\n" % (broken, listed)})
        _, _, replies = await self.talk(port, mail("<a@bad.example>"))
        self.assertEqual(replies[1], (550, ["Mail from HELO c.example rejected because it listed"]))


class ArgumentTests(ArgumentCases, unittest.TestCase):
    plugin = "rhsbl"

    bad_arguments = [("reject 2", "reject must be 0, 1, naughty, not '2'"),
                     ("reject_type later", "reject_type must be one of"),
                     ("dns_timeout 0", "dns_timeout must be a positive number"),
                     ("timeout 3", "unknown argument 'timeout'")]

    def test_bad_zone_line_stops_startup_naming_file_and_line(self):
        self.assertStartupError(["rhsbl"], "rhsbl_zones:2: not a DNS zone name: 'bad:zone'",
                                {"rhsbl_zones": "ok.example.org\nbad:zone message\n"})
