"""Tests of the resolvable_fromhost plugin (old name require_resolvable_fromhost): sender
domains published by the suite's private DNS server (NSD, tests/support/dns.py), asked by a
real server on a loopback socket through its ``dns_servers`` config item. Each test serves
zones of its own.
"""

from twisted.trial import unittest

from qpsmtpd_tx import codes
from tests.support.harness import StartupErrorMixin, capture_log
from tests.support.host_dns import start_dns_server
from tests.support.server import connect

FQDN = "FQDN required in the envelope sender (#4.1.8)"
UNRESOLVED = "Temporary address resolution failure (#4.4.3)"
INVALID = "127.0.0.0/8\n10.0.0.0/8\n192.168.0.0/16\n"


class ResolvableFromhostTests(StartupErrorMixin, unittest.TestCase):
    def serve(self, records, prefix="rf"):
        """A zone of this test holding ``records``; returns its name."""
        from tests.support.dns import private_dns
        dns = private_dns()
        return dns.set_zone(dns.unique_zone(prefix), records)

    async def mail(self, sender, plugin="resolvable_fromhost", files=None, **kwargs):
        """The reply (code, last line) to MAIL FROM:``sender`` on a fresh server."""
        files = dict({"invalid_resolvable_fromhost": INVALID}, **(files or {}))
        server, port, _ = start_dns_server(self, [plugin, "rcpt_ok"], files, **kwargs)
        self.log = capture_log(self, server, plugin_names=True)
        client = await connect(self, port)
        self.assertEqual((await client.command("HELO client.example"))[0], 250)
        code, lines = await client.command("MAIL FROM:%s" % sender)
        return code, lines[-1]

    def assertLogged(self, level, text):
        self.assertIn(text, [m for lvl, _, m in self.log if lvl == level],
                      "not logged at %d: %r; log: %r" % (level, text, self.log))

    async def test_domain_with_an_mx_host_that_resolves(self):
        zone = self.serve([("@", "MX", (10, "mx")), ("mx", "A", "192.0.2.10")])
        self.assertEqual(await self.mail("<a@%s>" % zone), (250, "<a@%s>, sender OK - how exciting to get mail from you!" % zone))
        self.assertLogged(codes.LOGINFO, "pass, %s has MX at mx.%s" % (zone, zone))

    async def test_mx_host_with_ipv6_only(self):
        zone = self.serve([("@", "MX", (10, "mx")), ("mx", "AAAA", "2001:db8::25")])
        self.assertEqual((await self.mail("<a@%s>" % zone))[0], 250)

    async def test_mx_hosts_in_invalid_networks_are_unresolvable(self):
        zone = self.serve([("@", "MX", (10, "mx1")), ("@", "MX", (20, "mx2")),
                           ("mx1", "A", "10.1.2.3"), ("mx2", "A", "127.0.0.2")])
        self.assertEqual(await self.mail("<a@%s>" % zone), (450, FQDN))
        self.assertLogged(codes.LOGINFO, "fail, invalid MX for %s" % zone)

    async def test_one_valid_mx_host_is_enough(self):
        zone = self.serve([("@", "MX", (10, "mx1")), ("@", "MX", (20, "mx2")),
                           ("mx1", "A", "10.1.2.3"), ("mx2", "A", "10.1.2.4"),
                           ("mx2", "A", "192.0.2.20")])
        self.assertEqual((await self.mail("<a@%s>" % zone))[0], 250)
        self.assertLogged(codes.LOGINFO, "pass, %s has MX at mx2.%s" % (zone, zone))

    async def test_mx_host_that_does_not_exist(self):
        zone = self.serve([("@", "MX", (10, "nowhere"))])
        self.assertEqual(await self.mail("<a@%s>" % zone), (450, FQDN))

    async def test_null_mx_is_refused(self):
        zone = self.serve(["@ IN MX 0 .", ("@", "A", "192.0.2.30")])
        self.assertEqual(await self.mail("<a@%s>" % zone), (450, FQDN))
        self.assertLogged(codes.LOGINFO, "fail, null MX for %s (it sends no mail)" % zone)

    async def test_domain_without_mx_but_with_an_address(self):
        zone = self.serve([("www", "MX", (10, "mx.example.net")), ("@", "A", "192.0.2.40")])
        self.assertEqual((await self.mail("<a@%s>" % zone))[0], 250)
        self.assertLogged(codes.LOGINFO, "pass, found A for %s" % zone)
        zone = self.serve([("@", "AAAA", "2001:db8::40")])
        self.assertEqual((await self.mail("<a@%s>" % zone))[0], 250)

    async def test_domain_whose_only_address_is_invalid(self):
        # 0.94 accepted it: its "a" result was set before the address was checked.
        zone = self.serve([("@", "A", "192.168.1.1")])
        self.assertEqual(await self.mail("<a@%s>" % zone), (450, FQDN))

    async def test_domain_that_does_not_exist(self):
        zone = self.serve([])
        self.assertEqual(await self.mail("<a@nowhere.%s>" % zone), (450, UNRESOLVED))
        self.assertLogged(codes.LOGINFO, "fail, missing result")

    async def test_domain_without_mx_or_address(self):
        zone = self.serve([("@", "TXT", "v=spf1 -all")])
        self.assertEqual(await self.mail("<a@%s>" % zone), (450, UNRESOLVED))

    async def test_sender_without_domain(self):
        self.assertEqual(await self.mail("<postmaster>"), (450, FQDN))
        self.assertLogged(codes.LOGINFO, "fail, unparsable host")

    async def test_null_sender_and_address_literals_are_not_looked_up(self):
        self.assertEqual((await self.mail("<>"))[0], 250)
        self.assertLogged(codes.LOGINFO, "pass, null sender")
        self.assertEqual((await self.mail("<a@[192.0.2.1]>"))[0], 250)
        self.assertLogged(codes.LOGINFO, "skip, [192.0.2.1] is an IP")
        self.assertEqual((await self.mail("<a@[IPv6:2001:db8::1]>"))[0], 250)

    async def test_server_failure_is_a_skip(self):
        from tests.support.dns import private_dns
        dns = private_dns()
        zone = dns.servfail_zone(dns.unique_zone("rfsf"))
        self.assertEqual((await self.mail("<a@%s>" % zone))[0], 250)
        skips = [m for lvl, _, m in self.log if lvl == codes.LOGWARN and m.startswith("skip, ")]
        self.assertEqual(len(skips), 1, self.log)
        self.assertIn("server failure", skips[0])

    async def test_silence_is_a_skip(self):
        from tests.support.dns import private_dns
        dns = private_dns()
        zone = self.serve([("@", "MX", (10, "mx")), ("mx", "A", "10.0.0.1")], prefix="rfq")
        dns.set_silent(zone)
        self.addCleanup(dns.clear_shaping, zone)
        self.assertEqual((await self.mail("<a@%s>" % zone, shaped=True))[0], 250)
        skips = [m for lvl, _, m in self.log if lvl == codes.LOGWARN and m.startswith("skip, ")]
        self.assertEqual(len(skips), 1, self.log)
        self.assertIn("timed out", skips[0])

    async def test_mx_hosts_are_asked_at_once(self):
        # Three silent MX hosts and a 2 s budget of DNS waiting: asked one after the other
        # (1 s each), the budget would be spent before the third; asked at once, all six
        # queries (A and AAAA of each) reach the DNS relay, which drops them.
        from tests.support.dns import private_dns
        dns = private_dns()
        silent = self.serve([("mx%d" % n, "A", "192.0.2.%d" % n) for n in (1, 2, 3)],
                            prefix="rfqq")
        zone = self.serve([("@", "MX", (n, "mx%d.%s" % (n, silent))) for n in (1, 2, 3)])
        dns.set_silent(silent)
        self.addCleanup(dns.clear_shaping, silent)
        before = dns.shaper_stats()["dropped"]
        self.assertEqual((await self.mail("<a@%s>" % zone, shaped=True,
                                          files={"dns_budget": "2"}))[0], 250)
        self.assertEqual(dns.shaper_stats()["dropped"] - before, 6)
        self.assertIn("timed out", [m for lvl, _, m in self.log if lvl == codes.LOGWARN][0])

    async def test_mx_query_goes_out_before_earlier_plugins_mail_hooks(self):
        # rhsbl (listed first) and the sender's domain never answer, within a 1 s budget of
        # DNS waiting: asked only in its own mail hook, after rhsbl's timed out, the MX query
        # would find the budget spent and never be sent. Sent at mail_pre, it reaches the relay.
        from tests.support.dns import private_dns
        dns = private_dns()
        rhs = self.serve([("listed.example", "A", "127.0.0.2")], prefix="rfrhs")
        zone = self.serve([("@", "MX", (10, "mx")), ("mx", "A", "192.0.2.10")], prefix="rfpre")
        for silent in (rhs, zone):
            dns.set_silent(silent)
            self.addCleanup(dns.clear_shaping, silent)
        before = dns.shaper_stats()["dropped"]
        _, port, _ = start_dns_server(self, ["rhsbl", "resolvable_fromhost", "rcpt_ok"],
                                      {"rhsbl_zones": rhs, "dns_budget": "1"}, shaped=True)
        client = await connect(self, port)
        self.assertEqual((await client.command("HELO client.example"))[0], 250)
        self.assertEqual((await client.command("MAIL FROM:<a@%s>" % zone))[0], 250)
        self.assertEqual(dns.shaper_stats()["dropped"] - before, 2)

    async def test_reject_arguments(self):
        zone = self.serve([("@", "MX", (10, "mx")), ("mx", "A", "10.9.9.9")])
        self.assertEqual(await self.mail("<a@%s>" % zone, "resolvable_fromhost reject_type perm"),
                         (550, "FQDN required in the envelope sender (#5.1.8)"))
        self.assertEqual(await self.mail("<a@x.%s>" % zone, "resolvable_fromhost reject_type hard"),
                         (550, "Temporary address resolution failure (#5.4.3)"))
        self.assertEqual((await self.mail("<a@%s>" % zone, "resolvable_fromhost reject 0"))[0], 250)
        self.assertLogged(codes.LOGINFO, "fail, tolerated, invalid MX for %s" % zone)

    async def test_old_names(self):
        zone = self.serve([("@", "MX", (10, "mx")), ("mx", "A", "10.9.9.9")])
        for name in ("require_resolvable_fromhost", "async/resolvable_fromhost"):
            self.assertEqual(await self.mail("<a@%s>" % zone, name), (450, FQDN), name)

    async def test_relay_clients_are_not_checked(self):
        zone = self.serve([])
        self.assertEqual((await self.mail("<a@nowhere.%s>" % zone,
                                          files={"relayclients": "127.0.0.1"},
                                          plugin="relay\nresolvable_fromhost"))[0], 250)

    def test_bad_invalid_networks_line_stops_start_up(self):
        self.assertStartupError(["resolvable_fromhost"], ["invalid_resolvable_fromhost:2",
                                                          "not a network", "10.0.0.0/33"],
                                {"invalid_resolvable_fromhost": "127.0.0.0/8\n10.0.0.0/33\n"})

    def test_bad_arguments_stop_start_up(self):
        self.assertStartupError(["resolvable_fromhost reject maybe"], "reject must be")
        self.assertStartupError(["resolvable_fromhost reject_type later"], "reject_type must be")
