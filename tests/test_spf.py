"""qpsmtpd_tx.spf's own parts: the lookup loop around pyspf, names it never asks about,
time limits, and the texts Mail::SPF writes. DNS answers come from the zone stand-in of
tests/test_spf_rfc7208.py (the RFC suite's conventions, our resolver's errors); the private
NSD tests are in tests/plugins/test_sender_permitted_from.py."""

import spf as pyspf
from twisted.internet import defer, task
from twisted.trial import unittest

from qpsmtpd_tx import spf as spf_module
from qpsmtpd_tx.dns import DNSTimeout
from qpsmtpd_tx.spf import SPFResult, check_host, is_domain
from tests.test_spf_rfc7208 import ZoneResolver

ZONE = {
    "example.com": [{"TXT": "v=spf1 mx -all"},
                    {"MX": [10, "mx1.example.com"]}, {"MX": [20, "mx2.example.com"]},
                    {"MX": [30, "mx3.example.com"]}],
    "mx1.example.com": [{"A": "192.0.2.1"}],
    "mx2.example.com": [{"A": "192.0.2.2"}],
    "mx3.example.com": [{"A": "192.0.2.3"}],
    "ip.example.com": [{"TXT": "v=spf1 ip4:192.0.2.9 -all"}],
}


def checked(resolver, ip, sender, helo="client.example", **kw):
    """The SPFResult of a check whose lookups all answer at once."""
    results = []
    check_host(resolver, ip, sender, helo, **kw).addBoth(results.append)
    return results[0]


class LoopTests(unittest.TestCase):
    def test_mx_addresses_are_asked_with_the_mx_answer(self):
        resolver = ZoneResolver(ZONE, later=True)
        result = resolver.result(check_host(resolver, "192.0.2.3", "a@example.com", "c.example"))
        self.assertEqual(result.result, "pass")
        # run 1 waits for the TXT record; run 2 for the MX, whose 3 names' addresses are
        # asked as soon as it arrives; run 3 decides (one run per name otherwise: 5)
        self.assertEqual(result.runs, 3)
        self.assertEqual(resolver.asked, [("example.com", "TXT"), ("example.com", "MX"),
                                          ("mx1.example.com", "A"), ("mx2.example.com", "A"),
                                          ("mx3.example.com", "A")])

    def test_answers_there_at_once_take_one_run(self):
        # a warm cache: the resolver's Deferreds have fired when it returns them
        result = checked(ZoneResolver(ZONE), "192.0.2.3", "a@example.com")
        self.assertEqual((result.result, result.runs, result.lookups), ("pass", 1, 5))

    def test_pyspf_outside_our_checks_uses_its_own_lookup(self):
        asked = []
        self.patch(spf_module, "_pyspf_lookup", lambda *args: asked.append(args) or [])
        self.assertEqual(checked(ZoneResolver(ZONE), "192.0.2.3", "a@example.com").result,
                         "pass")
        self.assertEqual(asked, [])
        # e.g. another library calling pyspf, after or beside our checks
        query = pyspf.query(i="192.0.2.3", s="a@example.com", h="c.example")
        self.assertEqual(query.check()[0], "none")
        self.assertEqual(asked, [("example.com", "TXT", True, 20)])

    def test_mapped_ipv6_client_is_checked_as_ipv4(self):
        resolver = ZoneResolver(ZONE)
        result = checked(resolver, "::ffff:192.0.2.9", "a@ip.example.com")
        self.assertEqual((result.result, result.ip), ("pass", "192.0.2.9"))
        result = checked(resolver, "::ffff:192.0.2.2", "a@example.com")
        self.assertEqual(result.result, "pass")
        self.assertNotIn(("mx2.example.com", "AAAA"), resolver.asked)

    def test_unexpected_lookup_failure_is_temperror(self):
        resolver = ZoneResolver(ZONE)
        resolver.lookup = lambda name, rrtype, timeout=None: defer.fail(OSError("socket gone"))
        result = checked(resolver, "192.0.2.3", "a@example.com")
        self.assertEqual(result.result, "temperror")
        self.assertEqual(result.problem, "'SERVFAIL' error on DNS 'TXT' lookup of 'example.com'")


class NotAskedTests(unittest.TestCase):
    """RFC 7208 4.3: a malformed or single-label domain gives none without a lookup."""

    def test_address_literal_and_single_label(self):
        for sender in ("a@[192.0.2.1]", "a@localhost", "a@exa mple.com", "a@a..example.com"):
            resolver = ZoneResolver(ZONE)
            result = checked(resolver, "192.0.2.1", sender)
            self.assertEqual(result.result, "none", sender)
            self.assertEqual(resolver.asked, [], sender)

    def test_is_domain(self):
        self.assertTrue(is_domain("mail.example.com"))
        self.assertTrue(is_domain("_spf.example.com."))
        self.assertFalse(is_domain("[192.0.2.1]"))
        self.assertFalse(is_domain("localhost"))
        self.assertFalse(is_domain(""))
        self.assertFalse(is_domain(None))
        self.assertFalse(is_domain("a" * 64 + ".example.com"))


class _Silent:
    """A resolver that never answers, but honours the caller's timeout as ours does."""

    def __init__(self):
        self.clock = task.Clock()

    def lookup(self, name, rrtype, timeout=None):
        def timed_out(result, seconds):
            raise DNSTimeout(name, rrtype)
        d = defer.Deferred()
        if timeout is not None:
            d.addTimeout(timeout, self.clock, onTimeoutCancel=timed_out)
        return d


class TimeLimitTests(unittest.TestCase):
    def test_the_whole_check_is_bounded(self):
        resolver = _Silent()
        results = []
        check_host(resolver, "192.0.2.1", "a@example.com", "h.example", timeout=5).addBoth(
            results.append)
        resolver.clock.advance(4.9)
        self.assertEqual(results, [])
        resolver.clock.advance(0.2)
        self.assertEqual(results[0].result, "temperror")
        self.assertEqual(results[0].problem, "Time-out on DNS 'TXT' lookup of 'example.com'")


class TextTests(unittest.TestCase):
    """Mail::SPF's local explanations (taken from Mail::SPF 2.9's output)."""

    def result(self, result, mechanism, **kw):
        values = dict(result=result, scope="mfrom", identity="a@example.com",
                      domain="example.com", ip="192.0.2.1", helo="h.example",
                      mechanism=mechanism)
        values.update(kw)
        return SPFResult(**values)

    def test_texts(self):
        self.assertEqual(self.result("pass", "ip4:192.0.2.1").local_explanation(),
                         "example.com: 192.0.2.1 is authorized to use 'a@example.com' in "
                         "'mfrom' identity (mechanism 'ip4:192.0.2.1' matched)")
        # a, mx and ptr match the address, as ip4 and ip6: Mail::SPF names it (its
        # SenderIPAddrMech); found by tests/test_spf_differential.py's texts
        self.assertEqual(self.result("pass", "+a").local_explanation(),
                         "example.com: 192.0.2.1 is authorized to use 'a@example.com' in "
                         "'mfrom' identity (mechanism 'a' matched)")
        self.assertEqual(self.result("neutral", "?mx:mx.example/24").local_explanation(),
                         "example.com: Domain does not state whether 192.0.2.1 is authorized "
                         "to use 'a@example.com' in 'mfrom' identity (mechanism "
                         "'?mx:mx.example/24' matched)")
        self.assertEqual(self.result("fail", "-ptr").local_explanation(),
                         "example.com: 192.0.2.1 is not authorized to use 'a@example.com' in "
                         "'mfrom' identity (mechanism '-ptr' matched)")
        self.assertEqual(self.result("pass", "exists:%{i}.x.example").local_explanation(),
                         "example.com: Sender is authorized to use 'a@example.com' in 'mfrom' "
                         "identity (mechanism 'exists:%{i}.x.example' matched)")
        self.assertEqual(self.result("neutral", None).local_explanation(),
                         "example.com: Default neutral result due to no mechanism matches")
        self.assertEqual(self.result("fail", "-all", authority="other.example")
                         .local_explanation(),
                         "example.com ... other.example: Sender is not authorized by default "
                         "to use 'a@example.com' in 'mfrom' identity (mechanism '-all' matched)")

    def test_received_spf_quotes_what_is_not_a_dot_atom(self):
        field = self.result("none", None, identity='we"ird@example.com').received_spf("mx.test")
        self.assertTrue(field.endswith('receiver=mx.test; identity=mailfrom; '
                                       'envelope-from="we\\"ird@example.com"; helo=h.example; '
                                       'client-ip=192.0.2.1'), field)


class AuthorityTests(unittest.TestCase):
    def test_a_redirect_target_that_decides_by_default_is_named(self):
        # Mail::SPF names the record that decided, also when no term of it matched
        # (found by tests/test_spf_differential.py's texts)
        zone = {"s.example": [{"TXT": "v=spf1 redirect=r.example"}],
                "r.example": [{"TXT": "v=spf1 ?a:nx.example"}],
                "u.example": [{"TXT": "v=spf1 redirect=R.EXAMPLE"}]}
        result = checked(ZoneResolver(zone), "192.0.2.1", "a@s.example")
        self.assertEqual(result.local_explanation(), "s.example ... r.example: Default "
                         "neutral result due to no mechanism matches")
        result = checked(ZoneResolver(zone), "192.0.2.1", "a@u.example")
        self.assertEqual(result.local_explanation(), "u.example ... r.example: Default "
                         "neutral result due to no mechanism matches")
        result = checked(ZoneResolver({"s.example": [{"TXT": "v=spf1"}]}), "192.0.2.1",
                         "a@s.example")
        self.assertEqual(result.local_explanation(), "s.example: Default neutral result due "
                         "to no mechanism matches")
