"""RFC 7208 4.6.4's void lookups are counted by term: "the number of 'terms' for which DNS
queries return" no records. pyspf counted each query, and looks up the addresses of all of
an ``mx``'s names before comparing: an ``mx`` whose first two names had no address was a
permerror though its third name matched (Mail::SPF, which stops at the match, passes; found
by tests/test_spf_differential.py). DNS answers come from the RFC suite's zone stand-in."""

from twisted.trial import unittest

from tests.test_spf import checked
from tests.test_spf_rfc7208 import ZoneResolver

ZONE = {
    "mx.example": [{"TXT": "v=spf1 mx -all"}, {"MX": [10, "n1.mx.example"]},
                   {"MX": [20, "n2.mx.example"]}, {"MX": [30, "n3.mx.example"]},
                   {"MX": [40, "n4.mx.example"]}],
    "n1.mx.example": [{"AAAA": "2001:db8::1"}],
    "n2.mx.example": [{"TXT": "no address"}],
    "n3.mx.example": [{"A": "192.0.2.3"}],
    "ptr.example": [{"TXT": "v=spf1 ptr -all"}],
    "3.2.0.192.in-addr.arpa": [{"PTR": "p1.ptr.example"}, {"PTR": "p2.ptr.example"},
                               {"PTR": "p3.ptr.example"}, {"PTR": "p4.ptr.example"}],
    "p3.ptr.example": [{"A": "192.0.2.3"}],
    "void.example": [{"TXT": "v=spf1 a:nx1.void.example mx:mx.void.example a:nx2.void.example"
                             " ip4:192.0.2.3 -all"}],
    "mx.void.example": [{"MX": [10, "nx3.void.example"]}, {"MX": [20, "nx4.void.example"]}],
    "two.example": [{"TXT": "v=spf1 a:nx1.void.example mx:mx.void.example ip4:192.0.2.3 -all"}],
}


class VoidTermTests(unittest.TestCase):
    def test_mx_names_without_address_count_once(self):
        # n1 (AAAA only), n2 (no address), n4 (no such name) are empty for an IPv4 client
        result = checked(ZoneResolver(ZONE), "192.0.2.3", "a@mx.example")
        self.assertEqual((result.result, result.mechanism), ("pass", "mx"))
        result = checked(ZoneResolver(ZONE), "192.0.2.9", "a@mx.example")
        self.assertEqual((result.result, result.mechanism), ("fail", "-all"))

    def test_ptr_names_without_address_count_once(self):
        result = checked(ZoneResolver(ZONE), "192.0.2.3", "a@ptr.example")
        self.assertEqual((result.result, result.mechanism), ("pass", "ptr"))

    def test_three_void_terms_are_over_the_limit(self):
        result = checked(ZoneResolver(ZONE), "192.0.2.3", "a@void.example")
        self.assertEqual((result.result, result.problem),
                         ("permerror", "Void lookup limit of 2 exceeded"))
        result = checked(ZoneResolver(ZONE), "192.0.2.3", "a@two.example")
        self.assertEqual(result.result, "pass")
