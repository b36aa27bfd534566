"""A ``(`` inside a quoted string starts no comment (RFC 5322 3.2.4): a trusted sealer's
ARC-Authentication-Results whose ``reason="…"`` holds one keeps the results after it (they
were all taken for an unclosed comment, so an ``spf=pass`` after such a reason was lost)."""

from twisted.trial import unittest

from qpsmtpd_tx import arc_override, cfws


class QuotedParenthesisTests(unittest.TestCase):
    def test_results_after_a_quoted_parenthesis_are_kept(self):
        value = ('i=1; mx.trusted.example; dkim=fail reason="bad sig (x" header.d=a.example; '
                 'spf=pass smtp.mailfrom=a.example; dmarc=pass header.from=a.example')
        self.assertEqual(arc_override.parse_results(value), [
            ("dkim", "fail", {"reason": "bad sig (x", "header.d": "a.example"}),
            ("spf", "pass", {"smtp.mailfrom": "a.example"}),
            ("dmarc", "pass", {"header.from": "a.example"})])

    def test_quoted_strings_are_not_comments(self):
        self.assertEqual(cfws.without_comments('a "b (c" (d) e', ""), 'a "b (c"  e')
        self.assertEqual(cfws.without_comments('a "b \\" (c" (d "e) f'), 'a "b \\" (c"   f')
        self.assertEqual(cfws.without_comments('(a "b) c'), '  c')     # in a comment: text
