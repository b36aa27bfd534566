"""Target names no DNS query can be made for (a label of 64 characters or more, a name longer
than 253), in every place of a record where a domain-spec is (RFC 7208 4.8, 5.x, 6.x, 7.3).

RFC 7208 4.8 leaves the result for such a name undefined; the RFC 7208 suite's
``invalid-domain-long`` tests allow fail or permerror and describe the name as one that
"must be treated as non-existent". Ours, place by place: ``a``, ``mx``, ``exists``: a
name that does not exist (no match, one void lookup, RFC 7208 4.6.4, as for a Name Error,
section 5); ``ptr``: no validated name can equal it (no match); ``include``: the recursive
check_host gives none (4.3), so permerror (5.2); ``redirect=``: permerror (6.1, a malformed
target-name); ``exp=``: no explanation (6.2). A name longer than 253 characters loses labels
from its left until it fits (7.3). Mail::SPF cuts an overlong label to 63 characters and
asks that name (tests/test_spf_differential.py lists it); a whole check was a permerror
before (``Invalid domain found``). DNS answers come from the RFC suite's zone stand-in.
"""

from twisted.trial import unittest

from tests.test_spf import checked
from tests.test_spf_rfc7208 import ZoneResolver

LONG = "x" * 64
#: a label of 63, the longest a name may have, which the zone holds: Mail::SPF's cut name
CUT = "x" * 63


def zone(record, **more):
    """A zone where ``s.example`` has ``record``; ``CUT.example`` exists (A 192.0.2.1, an
    SPF record that passes anything, an MX), so cutting the label would match."""
    data = {"s.example": [{"TXT": record}],
            CUT + ".example": [{"A": "192.0.2.1"}, {"TXT": "v=spf1 +all"},
                               {"MX": [10, CUT + ".example"]}],
            "1.2.0.192.in-addr.arpa": [{"PTR": "host.example"}],
            "host.example": [{"A": "192.0.2.1"}],
            "exp.example": [{"TXT": "explained"}]}
    data.update(more)
    return ZoneResolver(data)


def result(record, sender="a@s.example", **more):
    """The SPFResult for client 192.0.2.1 and ``sender`` with ``s.example``'s ``record``."""
    return checked(zone(record, **more), "192.0.2.1", sender)


class LongLabelTests(unittest.TestCase):
    def test_a_mx_exists_do_not_match_and_go_on(self):
        for mechanism in ("a", "mx", "exists"):
            got = result("v=spf1 %s:%s.example ip4:192.0.2.1 -all" % (mechanism, LONG))
            self.assertEqual((got.result, got.mechanism), ("pass", "ip4:192.0.2.1"), mechanism)
            got = result("v=spf1 %s:%s.example -all" % (mechanism, LONG))
            self.assertEqual((got.result, got.mechanism), ("fail", "-all"), mechanism)

    def test_the_name_is_not_asked_cut_or_whole(self):
        resolver = zone("v=spf1 a:%s.example -all" % LONG)
        self.assertEqual(checked(resolver, "192.0.2.1", "a@s.example").result, "fail")
        self.assertEqual(resolver.asked, [("s.example", "TXT")])

    def test_it_is_a_void_lookup(self):
        # RFC 7208 4.6.4: a third void lookup is a permerror
        voids = "a:%s.example a:nx1.example a:nx2.example" % LONG
        got = result("v=spf1 %s ip4:192.0.2.1 -all" % voids)
        self.assertEqual((got.result, got.problem),
                         ("permerror", "Void lookup limit of 2 exceeded"))
        got = result("v=spf1 a:%s.example a:nx1.example ip4:192.0.2.1 -all" % LONG)
        self.assertEqual(got.result, "pass")

    def test_made_by_a_macro(self):
        got = result("v=spf1 a:%{l}.example a:nx1.example a:nx2.example -all",
                     sender=LONG + "@s.example")
        self.assertEqual(got.result, "permerror")
        got = result("v=spf1 exists:%{l}.example ip4:192.0.2.1 -all", sender=LONG + "@s.example")
        self.assertEqual(got.result, "pass")

    def test_ptr_does_not_match(self):
        got = result("v=spf1 ptr:%s.example ptr:host.example -all" % LONG)
        self.assertEqual((got.result, got.mechanism), ("pass", "ptr:host.example"))

    def test_include_and_redirect_are_permerror(self):
        got = result("v=spf1 include:%s.example ip4:192.0.2.1 -all" % LONG)
        self.assertEqual((got.result, got.problem), (
            "permerror", "No valid SPF record for included domain: %s.example" % LONG))
        got = result("v=spf1 ip4:192.0.2.9 redirect=%s.example" % LONG)
        self.assertEqual((got.result, got.problem),
                         ("permerror", "redirect domain has no SPF record"))

    def test_exp_is_ignored(self):
        got = result("v=spf1 -all exp=%s.example" % LONG)
        self.assertEqual((got.result, got.explanation), ("fail", "SPF fail - not authorized"))
        got = result("v=spf1 -all exp=exp.example")
        self.assertEqual((got.result, got.explanation), ("fail", "explained"))

    def test_a_label_of_63_is_asked(self):
        got = result("v=spf1 a:%s.example -all" % CUT)
        self.assertEqual((got.result, got.mechanism), ("pass", "a:%s.example" % CUT))


class LongNameTests(unittest.TestCase):
    """RFC 7208 7.3: labels are removed from the left until the name fits in 253."""

    def test_labels_are_removed_until_the_name_fits(self):
        # six labels of 60 and a.example: 375 characters; two labels go (253 left); pyspf
        # removed one (314, no name: looked up as nothing), Mail::SPF as many as it takes
        local = "y" * 60
        fits = ".".join([local] * 4) + ".a.example"
        got = result("v=spf1 a:%s -all" % ("%{l}." * 6 + "a.example"),
                     sender=local + "@s.example", **{fits: [{"A": "192.0.2.1"}]})
        self.assertEqual((len(fits), got.result), (253, "pass"))

    def test_a_long_name_that_fits_when_cut_is_asked_cut(self):
        resolver = zone("v=spf1 exists:%s -all" % ".".join(["%{d}"] * 40))
        self.assertEqual(checked(resolver, "192.0.2.1", "a@s.example").result, "fail")
        asked = [name for name, rrtype in resolver.asked if rrtype == "A"]
        self.assertEqual(len(asked), 1)
        self.assertLessEqual(len(asked[0]), 253)
        self.assertGreater(len(asked[0]), 253 - len("s.example."))
