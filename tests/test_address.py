"""Tests for qpsmtpd_tx.address: RFC 5321 path parsing, formatting and comparison.

Rows marked ``# 0.94:`` are where qpsmtpd 0.94 behaves differently, on purpose (see the
module docstring of qpsmtpd_tx.address for why).
"""

from twisted.trial import unittest

from qpsmtpd_tx.address import (
    Address,
    is_valid_address_literal,
    is_valid_domain,
    quote_local_part,
)

# (path, (user, host)) or (path, None) when the path must be refused
PARSE_TABLE = [
    # plain addresses (addresses.t, qpsmtpd-address.t)
    ("<ask@perl.org>", ("ask", "perl.org")),
    ("ask@perl.org", ("ask", "perl.org")),
    ("<ask@p.qpsmtpd-test.askask.com>", ("ask", "p.qpsmtpd-test.askask.com")),
    ("<foo@foo.x.example.com>", ("foo", "foo.x.example.com")),
    ("<matt@test.com>", ("matt", "test.com")),
    ("<a.b-c@example.com>", ("a.b-c", "example.com")),
    ("<a-b@c-d.example.com>", ("a-b", "c-d.example.com")),
    ("<a@examplecom>", ("a", "examplecom")),
    ("<a@1.2.3.4>", ("a", "1.2.3.4")),
    ("<Ask@Perl.ORG>", ("Ask", "Perl.ORG")),
    ("<!#$%&'*+-/=?^_`{|}~@example.com>", ("!#$%&'*+-/=?^_`{|}~", "example.com")),
    # null path and postmaster
    ("<>", (None, None)),
    ("<postmaster>", ("postmaster", None)),
    ("<PostMaster>", ("postmaster", None)),
    ("postmaster", ("postmaster", None)),  # 0.94: new('postmaster') without brackets is <>
    ("<postmaster@Example.COM>", ("postmaster", "Example.COM")),
    ("", None),  # 0.94: new("") without brackets is <>
    ("<", None),  # 0.94: new("<") without brackets is <>
    ("<<a@b.example>>", None),
    ("<x>", None),
    ("<x@>", None),
    ("<@example.com>", None),
    # quoted local parts
    ('<"q u"@example.org>', ("q u", "example.org")),  # 0.94: refused (no space in its qtext)
    ('<"foo bar"@example.com>', ("foo bar", "example.com")),  # 0.94: refused
    ('<"a\\"b"@example.com>', ('a"b', "example.com")),
    ('<"a\\\\b"@example.com>', ("a\\b", "example.com")),
    ('<"a\\xb"@example.com>', ("axb", "example.com")),
    ('<"a@b"@example.com>', ("a@b", "example.com")),
    ('<"musa_ibrah@caramail.comandrea.luger"@wifo.ac.at>',
     ("musa_ibrah@caramail.comandrea.luger", "wifo.ac.at")),
    ('<"a.b"@example.com>', ("a.b", "example.com")),
    ('<""@example.com>', ("", "example.com")),
    ('<"a@example.com>', None),
    ('<"a"b@example.com>', None),
    ('<x"@"y@example.com>', None),  # 0.94: accepted
    # dots in odd places: accepted like 0.94 (legacy mailboxes), refused at the start like 0.94
    ("<a..b@example.com>", ("a..b", "example.com")),
    ("<a.@example.com>", ("a.", "example.com")),
    ("<.a@example.com>", None),
    # unquoted spaces, specials and "@": 0.94 accepts all of these after a first atom character
    ("<ask @perl.org>", None),  # 0.94: user "ask " (addresses.t)
    ("<a b@c.example>", None),  # 0.94: user "a b"
    ("<foo bar@example.com>", None),  # 0.94: user "foo bar"
    ("<a@b@example.com>", None),  # 0.94: user "a@b"
    ("<a@@example.com>", None),  # 0.94: user "a@"
    ('<a"b@example.com>', None),  # 0.94: accepted
    ("<a(b@example.com>", None),  # 0.94: accepted
    ("<a)b@example.com>", None),  # 0.94: accepted
    ("<a<b@example.com>", None),  # 0.94: accepted
    ("<a,b@example.com>", None),  # 0.94: accepted
    ("<a;b@example.com>", None),  # 0.94: accepted
    ("<a:b@example.com>", None),  # 0.94: accepted
    ("<a[b@example.com>", None),  # 0.94: accepted
    ("<a\\b@example.com>", None),  # 0.94: accepted
    # domains
    ("<x@-bad.example>", None),
    ("<x@bad-.example>", None),
    ("<x@example.org.>", None),
    ("<x@.example.org>", None),
    ("<x@ex..ample.org>", None),
    ("<user@example.com#>", None),
    # 0.94's domain pattern lets any character stand in for a dot, so it takes the next three
    ("<a@example!com>", None),  # 0.94: accepted
    ("<a@ex_ample.com>", None),  # 0.94: accepted
    ("<a@ex ample.com>", None),  # 0.94: accepted
    # address literals
    ("<ask@[1.2.3.4]>", ("ask", "[1.2.3.4]")),
    ("<a@[0.0.0.0]>", ("a", "[0.0.0.0]")),
    ("<a@[255.255.255.255]>", ("a", "[255.255.255.255]")),
    ("<a@[010.001.000.099]>", ("a", "[010.001.000.099]")),
    ("<a@[IPv6:2001:db8::1]>", ("a", "[IPv6:2001:db8::1]")),
    ("<a@[IPv6:2001:db8:0:0:0:0:0:1]>", ("a", "[IPv6:2001:db8:0:0:0:0:0:1]")),
    ("<a@[ipv6:FE80::1]>", ("a", "[ipv6:FE80::1]")),  # 0.94: refused (tag case)
    ("<a@[IPv6:::]>", ("a", "[IPv6:::]")),
    ("<a@[IPv6:::ffff:1.2.3.4]>", ("a", "[IPv6:::ffff:1.2.3.4]")),
    ("<a@[IPv6:1:2:3:4:5:6::]>", ("a", "[IPv6:1:2:3:4:5:6::]")),
    ("<a@[IPv6:1:2:3:4::1.2.3.4]>", ("a", "[IPv6:1:2:3:4::1.2.3.4]")),
    ("<a@[256.0.0.1]>", None),  # 0.94: accepted
    ("<a@[1.2.3.999]>", None),  # 0.94: accepted
    ("<a@[1.2.3]>", None),
    ("<a@[1.2.3.4.5]>", None),
    ("<a@[1.2.3.0001]>", None),
    ("<a@[IPv6:]>", None),
    ("<a@[IPv6:::::::::]>", None),  # 0.94: accepted
    ("<a@[IPv6:1::2::3]>", None),  # 0.94: accepted
    ("<a@[IPv6:12345::]>", None),  # 0.94: accepted
    ("<a@[IPv6:1:2:3:4:5:6:7::]>", None),  # 0.94: accepted ("::" must be 2+ groups)
    ("<a@[IPv6:1:2:3:4:5::1.2.3.4]>", None),  # 0.94: accepted
    ("<a@[IPv6:fe80::1%eth0]>", None),
    ("<a@[IPv7:::1]>", None),
    ("<a@[example.com]>", None),
    ("<a@[]>", None),
    ("<#@[]>", None),
    # source routes
    ("<@relay.example:x@example.org>", ("x", "example.org")),
    ("<@a.example,@b.example:u@[127.0.0.1]>", ("u", "[127.0.0.1]")),
    ('<@a.example:"x:y"@example.org>', ("x:y", "example.org")),
    ("<@a.example x@example.org>", None),
    ("<@-bad.example:x@example.org>", None),
    ("<@a.example,b.example:x@example.org>", None),  # 0.94: accepted (same dot bug)
    ("<@[127.0.0.1]:u@example.com>", None),  # 0.94: accepted (literals allowed in routes)
    ("<@a.example:>", None),  # 0.94: the null path
    ("<@a.example:postmaster>", None),  # 0.94: <postmaster>
    ("<@192.168.1.1>", None),
    # control characters
    ("<a\x00b@example.com>", None),  # 0.94: accepted
    ("<a\x7fb@example.com>", None),  # 0.94: accepted
    ("<a@ex\x01ample.com>", None),  # 0.94: accepted (same dot bug)
    ('<"a\tb"@example.com>', None),
    ('<"a\x7fb"@example.com>', None),  # 0.94: accepted (obsolete qtext)
    ('<"a\x1bb"@example.com>', None),  # 0.94: accepted (obsolete qtext)
    ("<a@example.com\r>", None),
    ("<\ra@example.com>", None),
    ("<a@example.com>\n", None),  # 0.94: accepted (Perl's $ matches before a newline)
    # non-ASCII: refused, we do not offer SMTPUTF8
    ("<m\u00fcller@example.com>", None),  # 0.94: accepted (starts with an ASCII atom)
    ("<postm\u00e1ster@test>", None),  # 0.94: accepted
    ("<\u00fcber@example.com>", None),  # refused by 0.94 too: no ASCII atom first
    ("<user@m\u00fcller.example>", None),
    ('<"m\u00fcller"@example.com>', None),
    # an undecodable byte, as surrogateescape gives it
    ("<m\udcc3ller@example.com>", None),  # 0.94: accepted
]

# length limits (RFC 5321 4.5.3.1); 0.94 has none
LENGTH_TABLE = [
    ("<%s@example.com>" % ("a" * 64), ("a" * 64, "example.com")),
    ("<%s@example.com>" % ("a" * 65), None),  # 0.94: accepted
    ('<"%s"@example.com>' % ("a" * 62), ("a" * 62, "example.com")),
    ('<"%s"@example.com>' % ("a" * 63), None),  # 0.94: accepted (quotes count)
    ("<a@%s.example>" % ("b" * 63), ("a", "b" * 63 + ".example")),
    ("<a@%s.example>" % ("b" * 64), None),  # 0.94: accepted (DNS label over 63)
    ("<%s@%s.%s.%s.%s>" % ("a" * 64, "b" * 60, "c" * 60, "d" * 60, "e" * 6),
     ("a" * 64, "%s.%s.%s.%s" % ("b" * 60, "c" * 60, "d" * 60, "e" * 6))),  # exactly 256
    # 0.94: accepted (257 octets)
    ("<%s@%s.%s.%s.%s>" % ("a" * 64, "b" * 60, "c" * 60, "d" * 60, "e" * 7), None),
    # 0.94: accepted (the route counts too)
    ("<@%s:a@example.com>" % ".".join(["r" * 60] * 4), None),
    # inputs that defeat a backtracking parser are refused on length, at once
    ("<%s(@example.com>" % ("a" * 20000), None),
    ("<%sa@%s!>" % ("a." * 20000, "a" * 20000), None),
    ("<%sexample.com!>" % ("a@" * 20000), None),
    ('<"%s@example.com>' % ("a" * 20000), None),
    ("<%s>" % ("@a," * 20000), None),
    ("<a@%s>" % ("a-" * 20000), None),
]

# (path, format(), address, unquoted_address)
FORMAT_TABLE = [
    ("<ask@perl.org>", "<ask@perl.org>", "ask@perl.org", "ask@perl.org"),
    ("<Ask@Perl.ORG>", "<Ask@Perl.ORG>", "Ask@Perl.ORG", "Ask@Perl.ORG"),
    ("<ask@[1.2.3.4]>", "<ask@[1.2.3.4]>", "ask@[1.2.3.4]", "ask@[1.2.3.4]"),
    ("<>", "<>", "", ""),
    ("<postmaster>", "<postmaster>", "postmaster", "postmaster"),
    ("<@r.example:x@example.org>", "<x@example.org>", "x@example.org", "x@example.org"),
    # 0.94 refuses this path; Address("foo bar", ...) it formats as <"foo\ bar"@example.com>,
    # and its address() is never quoted
    ('<"foo bar"@example.com>', '<"foo bar"@example.com>', '"foo bar"@example.com',
     "foo bar@example.com"),
    ('<"a.b"@example.com>', "<a.b@example.com>", "a.b@example.com", "a.b@example.com"),
    ('<"a\\"b"@example.com>', '<"a\\"b"@example.com>', '"a\\"b"@example.com',
     'a"b@example.com'),
    ('<"a\\\\b"@example.com>', '<"a\\\\b"@example.com>', '"a\\\\b"@example.com',
     "a\\b@example.com"),
    # 0.94: <"a\@b"@example.com>
    ('<"a@b"@example.com>', '<"a@b"@example.com>', '"a@b"@example.com', "a@b@example.com"),
    # 0.94: <@example.com>, which is not a valid path
    ('<""@example.com>', '<""@example.com>', '""@example.com', "@example.com"),
    # 0.94 writes these unquoted, which is not a valid RFC 5321 local part
    ("<a..b@example.com>", '<"a..b"@example.com>', '"a..b"@example.com', "a..b@example.com"),
    ("<a.@example.com>", '<"a."@example.com>', '"a."@example.com', "a.@example.com"),
]


class ParseTests(unittest.TestCase):
    """Address.parse over the tables above."""

    def check_table(self, table):
        failures = []
        for path, expected in table:
            parsed = Address.parse(path)
            got = None if parsed is None else (parsed.user, parsed.host)
            if got != expected:
                failures.append("%r: expected %r, got %r" % (path[:80], expected, got))
        self.assertEqual(failures, [])

    def test_parse_table(self):
        self.check_table(PARSE_TABLE)

    def test_length_table(self):
        self.check_table(LENGTH_TABLE)

    def test_null(self):
        null = Address.parse("<>")
        self.assertTrue(null.is_null)
        self.assertEqual(null, Address.null())
        self.assertFalse(Address.parse("<postmaster>").is_null)
        self.assertFalse(Address.parse("<a@b.example>").is_null)


class FormatTests(unittest.TestCase):
    """format(), address, unquoted_address and str()."""

    def test_format_table(self):
        for path, formatted, address, unquoted in FORMAT_TABLE:
            parsed = Address.parse(path)
            self.assertEqual(
                (parsed.format(), str(parsed), parsed.address, parsed.unquoted_address),
                (formatted, formatted, address, unquoted),
                path,
            )

    def test_round_trip(self):
        """Whatever parses formats to a path that parses back to the same address."""
        for path, expected in PARSE_TABLE + LENGTH_TABLE:
            parsed = Address.parse(path)
            if parsed is None:
                continue
            again = Address.parse(parsed.format())
            self.assertEqual((again.user, again.host), expected, path)
            self.assertEqual(again.format(), parsed.format(), path)

    def test_constructed(self):
        """Address(user, host) takes the parts as given and quotes them on output."""
        a = Address("foo bar", "example.com")
        self.assertEqual(a.format(), '<"foo bar"@example.com>')
        self.assertEqual(str(a), '<"foo bar"@example.com>')
        self.assertEqual(a.address, '"foo bar"@example.com')
        self.assertEqual(a.unquoted_address, "foo bar@example.com")
        self.assertEqual(Address("x", "y.example").format(), "<x@y.example>")
        self.assertEqual(Address("postmaster", None).format(), "<postmaster>")
        self.assertEqual(Address.null().format(), "<>")
        self.assertEqual(Address.null().address, "")

    def test_quote_local_part(self):
        for user, quoted in [
            ("a", "a"),
            ("a.b", "a.b"),
            ("", '""'),
            ("a b", '"a b"'),
            ('a"b', '"a\\"b"'),
            ("a\\b", '"a\\\\b"'),
            ("a@b", '"a@b"'),
            (".a", '".a"'),
            ("a..b", '"a..b"'),
        ]:
            self.assertEqual(quote_local_part(user), quoted, user)

    def test_repr_hides_notes(self):
        a = Address("a", "b.example")
        a.notes["secret"] = "x"
        self.assertEqual(repr(a), "Address(user='a', host='b.example')")


class EqualityTests(unittest.TestCase):
    """Hosts compare case-insensitively, users case-sensitively; notes do not count."""

    def test_host_case_insensitive(self):
        self.assertEqual(Address.parse("<ask@PERL.org>"), Address.parse("<ask@perl.ORG>"))
        self.assertEqual(hash(Address("ask", "PERL.org")), hash(Address("ask", "perl.ORG")))
        self.assertEqual(len({Address("a", "X.example"), Address("a", "x.EXAMPLE")}), 1)

    def test_user_case_sensitive(self):
        self.assertNotEqual(Address.parse("<Ask@perl.org>"), Address.parse("<ask@perl.org>"))

    def test_host_case_preserved(self):
        self.assertEqual(Address.parse("<a@Example.COM>").host, "Example.COM")

    def test_different_hosts(self):
        self.assertNotEqual(Address("a", "b.example"), Address("a", "c.example"))
        self.assertNotEqual(Address("postmaster", None), Address("postmaster", "b.example"))
        self.assertNotEqual(Address.null(), Address("", None))

    def test_notes_ignored(self):
        a, b = Address("a", "b.example"), Address("a", "b.example")
        a.notes["spamassassin_reject_threshold"] = 10
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
        self.assertEqual(b.notes, {})

    def test_not_equal_to_strings(self):
        self.assertNotEqual(Address("a", "b.example"), "<a@b.example>")
        self.assertNotEqual(Address("a", "b.example"), "a@b.example")

    def test_type_checks(self):
        self.assertRaises(TypeError, Address, b"a", "b.example")
        self.assertRaises(TypeError, Address, "a", 42)


class HelperTests(unittest.TestCase):
    """The domain and address-literal checks plugins may reuse."""

    def test_is_valid_domain(self):
        for domain, valid in [
            ("example.com", True),
            ("a", True),
            ("xn--mller-kva.example", True),
            ("", False),
            ("example.com.", False),
            ("-a.example", False),
            ("a_b.example", False),
            ("[1.2.3.4]", False),
        ]:
            self.assertEqual(is_valid_domain(domain), valid, domain)

    def test_is_valid_address_literal(self):
        for literal, valid in [
            ("[1.2.3.4]", True),
            ("[IPv6:::1]", True),
            ("1.2.3.4", False),
            ("[]", False),
            ("[", False),
            ("[IPv6:::1", False),
        ]:
            self.assertEqual(is_valid_address_literal(literal), valid, literal)
