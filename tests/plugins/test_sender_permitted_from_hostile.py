"""``sender_permitted_from`` against SPF records a hostile DNS zone publishes, on the suite's
private NSD: the work one check costs is bounded (counted in DNS queries and records read,
not timed)."""

import re

from qpsmtpd_tx import spf
from tests.plugins.test_sender_permitted_from import SPFCase


def ip4_terms(count):
    """``count`` ip4 terms that never match 127.0.0.1."""
    return " ".join("ip4:10.%d.%d.0/24" % (i // 250, i % 250) for i in range(count))


class RecordSizeTests(SPFCase):
    async def test_a_record_longer_than_the_limit_is_permerror_at_once(self):
        """11 records of 2500 ip4 terms (44 KB) chained by include: pyspf read them all
        again after each of the 11 round trips (1.7 s of reactor CPU for one MAIL FROM)."""
        zone = self.dns.unique_zone("spfbig")
        terms = ip4_terms(2500)
        self.dns.set_zone(zone, [
            ("@" if i == 0 else "i%d" % i, "TXT", "v=spf1 %s include:i%d.%s -all"
             % (terms, i + 1, zone)) for i in range(12)])
        server = self.serve_spf("reject 6")
        got = await self.mail(["a@" + zone], helo="[127.0.0.1]")
        size = len("v=spf1 %s include:i1.%s -all" % (terms, zone))
        self.assertEqual(got[0], (550, "SPF - permerror: %s: SPF record at %s is %d characters "
                                       "long (at most %d are read)"
                                  % (zone, zone, size, spf.MAX_RECORD)))
        self.assertEqual(server.connection_dns().resolver.stats["queries"], 1)

    async def test_a_number_too_long_for_int_is_no_traceback(self):
        """``a/`` and 5000 digits: pyspf's int() raised ValueError out of the check (the
        record is now refused for its length first; 4096 characters hold no number int()
        refuses)."""
        zone = self.dns.unique_zone("spfdigits")
        self.dns.set_zone(zone, [("@", "TXT", "v=spf1 a/%s -all" % ("9" * 5000))])
        self.serve_spf("reject 6")
        got = await self.mail(["a@" + zone], helo="[127.0.0.1]")
        self.assertEqual(got[0][0], 550)
        self.assertIn("SPF - permerror: %s: SPF record at" % zone, got[0][1])

    async def test_a_record_of_the_limit_is_read(self):
        zone = self.dns.unique_zone("spfedge")
        head, tail = "v=spf1 ip4:127.0.0.1 ", "=y -all"     # an unknown modifier x…x=y
        record = head + "x" * (spf.MAX_RECORD - len(head) - len(tail)) + tail
        self.assertEqual(len(record), spf.MAX_RECORD)
        self.dns.set_zone(zone, [("@", "TXT", record), ("over", "TXT", record + " ")])
        self.serve_spf("reject 6")
        got = await self.mail(["a@" + zone, "a@over." + zone], helo="[127.0.0.1]")
        self.assertEqual(got[0][0], 250)
        self.assertEqual(got[1][0], 550)
        self.assertIn("is %d characters long" % (spf.MAX_RECORD + 1), got[1][1])


class ExplanationTests(SPFCase):
    def count_expanded(self):
        """A list that gets the length of every text pyspf expands (macros: its cost)."""
        expanded = []
        original = spf._Query.expand

        def counting(query, text, *args, **kwargs):
            expanded.append(len(text))
            return original(query, text, *args, **kwargs)
        self.patch(spf._Query, "expand", counting)
        return expanded

    async def test_a_long_explanation_is_not_expanded(self):
        """An exp= record of 60 KB of macros: pyspf expanded it in time quadratic in its
        macros (7.5 s of reactor CPU per check). One of at most MAX_EXPLANATION is."""
        zone = self.dns.unique_zone("spfexp")
        macros = "%{d1r+-._}"
        short = (macros * 200)[:spf.MAX_EXPLANATION]
        self.dns.set_zone(zone, [
            ("@", "TXT", "v=spf1 exp=long.%s -all" % zone), ("long", "TXT", macros * 6000),
            ("short", "TXT", "v=spf1 exp=text.short.%s -all" % zone),
            ("text.short", "TXT", short)])
        self.serve_spf("reject 6")
        expanded = self.count_expanded()
        got = await self.mail(["a@" + zone], helo="[127.0.0.1]")
        self.assertEqual(got[0][0], 550)
        self.assertLess(sum(expanded), 1000, expanded)
        del expanded[:]
        got = await self.mail(["a@short." + zone], helo="[127.0.0.1]")
        self.assertEqual(got[0][0], 550)
        self.assertIn(len(short), expanded)


class MacroTests(SPFCase):
    async def test_a_macro_string_of_many_dots_is_expanded_at_once(self):
        """``%{d}`` and 4000 dots in each of a chain of includes: pyspf searched the whole
        text again for each of its labels, 6 s of reactor CPU for one MAIL FROM. The bound
        below is generous for the work left (0.1 s). In an unknown modifier (expanded, for
        its syntax, and not looked up): as ``exists:``'s target, the name's empty labels
        make it a void lookup, and the third ends the chain (tests/test_spf_long_names.py)."""
        zone = self.dns.unique_zone("spfdots")
        dots = "%{d}" + "." * 3900 + "x"
        self.dns.set_zone(zone, [
            ("@" if i == 0 else "i%d" % i, "TXT", "v=spf1 moo=%s include:i%d.%s -all"
             % (dots, i + 1, zone)) for i in range(12)])
        self.serve_spf("reject 6")
        got = await self.mail(["a@" + zone], helo="[127.0.0.1]")
        self.assertEqual(got[0][0], 550)
        self.assertIn("Too many DNS lookups", got[0][1])

    test_a_macro_string_of_many_dots_is_expanded_at_once.timeout = 4

    def test_the_same_text_is_searched_once(self):
        searched = []

        class Counting:
            def search(self, text):
                searched.append(text)
                return None
        once = spf._SearchedOnce(Counting())
        text = "%{d}" + "." * 100
        self.assertEqual([once.search(text) for _ in text.split(".")], [None] * 101)
        once.search("%{d}.x")
        self.assertEqual(searched, [text, "%{d}.x"])


class LabelTests(SPFCase):
    async def test_a_term_with_a_long_label_is_checked_at_once(self):
        """pyspf's top-label pattern backtracked over a long label where it fails (0.25 s
        for 4000 letters and an ``_``, at every term and rerun); ours is linear. A name of
        more than 253 characters loses labels from its left (RFC 7208 7.3): here down to
        the zone, whose A lookup finds nothing, so -all decides; a label of 64 in a name
        that fits is a name that does not exist (tests/test_spf_long_names.py)."""
        zone = self.dns.unique_zone("spflabel")
        self.dns.set_zone(zone, [
            ("@", "TXT", "v=spf1 a:x.%s.%s -all" % ("a" * 3900, zone)),
            ("bad", "TXT", "v=spf1 a:x.%s_ -all" % ("a" * 3900)),
            ("long", "TXT", "v=spf1 a:%s.%s ip4:127.0.0.1 -all" % ("a" * 64, zone))])
        self.serve_spf("reject 6")
        got = await self.mail(["a@" + zone, "a@bad." + zone, "a@long." + zone],
                              helo="[127.0.0.1]")
        self.assertEqual(got[0][0], 550)
        self.assertTrue(got[0][1].startswith("SPF - forgery: "), got[0])
        self.assertEqual(got[1], (550, "SPF - permerror: bad.%s: Invalid domain found (use "
                                       "FQDN)" % zone))
        self.assertEqual(got[2][0], 250)

    def test_the_top_label_pattern_answers_as_pyspfs(self):
        slow = re.compile(spf.pyspf.RE_TOPLAB.pattern.replace(spf._FAST_TOPLABEL,
                                                              spf._SLOW_TOPLABEL), re.I)
        self.assertNotEqual(slow.pattern, spf.pyspf.RE_TOPLAB.pattern)
        texts = ["x.com", "x.com.", "x.c0m", "x.123", "x.1-2", "x.-ab", "x.ab-", "x.a-b",
                 "%{d}", "x.%{d}", "%{d}.x", "x.a_b", "x._ab", "foo-bar", "x.%%", "x.%_"]
        texts += ["x.%s%s" % ("a1-"[i % 3] * (i % 5), tail) for i in range(40)
                  for tail in ("", ".", "_", "-", "1", "%{d}")]
        for text in texts:
            self.assertEqual(spf.pyspf.RE_TOPLAB.split(text), slow.split(text), text)
