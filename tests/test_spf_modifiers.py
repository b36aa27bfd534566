"""RFC 7208's case-insensitive names and repeated unknown modifiers, where pyspf differed
(found by tests/test_spf_differential.py): ``REDIRECT=`` and ``EXP=`` were taken for
unknown modifiers and ignored (4.6.1: names are case-insensitive); a second unknown
modifier was a permerror (6: unknown modifiers are ignored however often they appear); a
macro's ``R`` transformer did not reverse (7.1's ABNF is case-insensitive, RFC 5234 2.3).
DNS answers come from the RFC suite's zone stand-in."""

from twisted.trial import unittest

from tests.test_spf import checked
from tests.test_spf_rfc7208 import ZoneResolver


def result(record, **more):
    """The SPFResult for client 192.0.2.1, sender a@s.example, with ``record``."""
    zone = {"s.example": [{"TXT": record}],
            "r.example": [{"TXT": "v=spf1 -all"}],
            "e.example": [{"TXT": "not from %{i}"}],
            "example.s.t.example": [{"A": "192.0.2.1"}]}
    zone.update(more)
    return checked(ZoneResolver(zone), "192.0.2.1", "a@s.example",
                   default_explanation="DEFAULT")


class ModifierNameTests(unittest.TestCase):
    def test_upper_case_redirect_and_exp_apply(self):
        got = result("v=spf1 ?a:nx.example REDIRECT=r.example")
        self.assertEqual((got.result, got.mechanism), ("fail", "-all"))
        got = result("v=spf1 -all EXP=e.example")
        self.assertEqual((got.result, got.explanation), ("fail", "not from 192.0.2.1"))
        got = result("v=spf1 Redirect=r.example redirect=r.example")
        self.assertEqual(got.result, "permerror")


class UnknownModifierTests(unittest.TestCase):
    def test_a_repeated_unknown_modifier_is_ignored(self):
        self.assertEqual(result("v=spf1 moo=1 moo=2 MOO=3 +all").result, "pass")

    def test_its_macros_are_still_checked(self):
        got = result("v=spf1 moo=1 moo=%{z} +all")
        self.assertEqual(got.result, "permerror")


class TransformerTests(unittest.TestCase):
    def test_upper_case_r_reverses(self):
        for macro in ("%{dr}", "%{dR}", "%{D2R}"):
            got = result("v=spf1 a:%s.t.example -all" % macro)
            self.assertEqual(got.result, "pass", macro)


class ZeroPartsTests(unittest.TestCase):
    def test_a_transformer_of_zero_parts_is_a_syntax_error(self):
        # RFC 7208 7.3: a DIGIT, if given, MUST be nonzero (pyspf expanded %{d0} as %{d};
        # Mail::SPF: permerror; found by the differential test, case 14902)
        self.assertEqual(result("v=spf1 exists:%{d0}.t.example +all").result, "permerror")
        self.assertEqual(result("v=spf1 exists:%{d00r}.t.example +all").result, "permerror")
        self.assertEqual(result("v=spf1 a:%{d01r}.t.example -all").result, "fail")
        self.assertEqual(result("v=spf1 a:%%{d0}.t.example +all").result, "pass")

    def test_an_unclosed_macro_is_a_syntax_error(self):
        # RFC 7208 7.1: a '%' starts a macro or is '%%'; pyspf kept "%{d" as text (a name
        # asked as it was, or an unknown modifier ignored); Mail::SPF: permerror (case 16375)
        self.assertEqual(result("v=spf1 foo=%{ +all").result, "permerror")
        self.assertEqual(result("v=spf1 exists:%{d.t.example +all").result, "permerror")
        self.assertEqual(result("v=spf1 foo=%%{ +all").result, "pass")
