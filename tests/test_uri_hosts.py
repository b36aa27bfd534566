"""The URI scanner of the uribl plugin (qpsmtpd_tx/uri_hosts.py): the names it finds, the same as
qpsmtpd 0.94's uribl finds (compared with the installed Perl plugin's own code on hand-written
and generated lines), bounded line length and name count."""

import io
import os
import random
import subprocess
import unittest

from qpsmtpd_tx.uri_hosts import (MAX_LINE, URIScanner, host_names, message_lines, scan_lines,
                                  unmunge)

PERL_URIBL = "/usr/share/qpsmtpd/plugins/uribl"
PERL_NAMES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support", "uribl_names.pl")


def names_of(text, whitelist=(), check_ip=True, limit=None, head=b""):
    """What the scanner finds in the body ``text`` (str, LF line ends)."""
    scanner = URIScanner(frozenset(whitelist), check_ip, limit)
    scan_lines(message_lines(head, io.BytesIO(text.encode("latin-1"))), scanner)
    return scanner.names


def perl_names(messages, whitelist=()):
    """The names 0.94's uribl finds in each message (a list of lines), one list per message."""
    data = "".join("\n".join(lines) + "\n\0\n" for lines in messages).encode("latin-1")
    result = subprocess.run(["perl", PERL_NAMES, PERL_URIBL] + list(whitelist), input=data,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    out = result.stdout.decode("latin-1").split("\n")[:len(messages)]
    return [line.split("|") if line else [] for line in out]


#: lines that exercise each of 0.94's patterns and its odd corners
CORPUS = [
    ["see http://www.Example.com/x and foo.bar.co.uk, mail me@host.example.org"],
    ["http://3232235777/ http://0x7f.0.0.01/ http://user@1.2.3.4:80/"],
    ["http://example.xyz/ ab.com a.com http://x@y@evil.example.net/ ok"],
    ["http://example.com/?u=3Dhttp%3A%2F%2Fhidden.example.net%2F", "x&#46;example&#46;org"],
    ["click http://split.exam=", "ple.com/now"],
    ["ht;tp://semi;colon.example.info/", "www.example.museum www.example.travels e.g. i.e."],
    ["http://0X7F.0.0.1/ http://0x7f.0x0.0.0x1/ http://08.09.010.011/ http://1.2.3.4.5/"],
    ["http://999999999999999999999999/ http://4294967296:25/x http://1234567/?"],
    ["mailto:someone@mail.example.co.uk https://a.b.c.d.example.com.au/"],
    ["http://www.example.community/ http://example.comm-x.org/ example.com_x.org"],
    ["ftp://user:pass@host.example.edu:21/file http:///@tricky.example.gov/"],
]


class ScannerTests(unittest.TestCase):
    def test_hosts_and_their_parents_down_to_the_registered_domain(self):
        self.assertEqual(names_of("Visit http://a.b.Example.COM/x now\n"),
                         ["a.b.example.com", "b.example.com", "example.com"])
        self.assertEqual(names_of("see www.shop.example.co.uk\n"),
                         ["www.shop.example.co.uk", "shop.example.co.uk", "example.co.uk"])

    def test_addresses_in_uris_are_reversed(self):
        self.assertEqual(names_of("http://192.0.2.10/ http://3232235777/\n"),
                         ["1.1.168.192", "10.2.0.192"])  # integer form first, as 0.94
        self.assertEqual(names_of("http://0x7f.0.0.01/\n"), ["1.0.0.127"])

    def test_checkip_0_skips_addresses(self):
        self.assertEqual(names_of("http://192.0.2.10/ and http://x.example.net/\n",
                                  check_ip=False), ["x.example.net", "example.net"])

    def test_escapes_and_soft_line_breaks_are_undone(self):
        self.assertEqual(names_of("go to http://spam.exam=\nple.com/ now\n"),
                         ["spam.ex", "spam.example.com", "example.com"])
        self.assertEqual(names_of("http%3A%2F%2Fa&#46;example&#46;org\n"),
                         ["a.example.org", "example.org"])
        self.assertEqual(unmunge("a=3Db%2Ec&#64;d;e"), "a=b.c@de")

    def test_whitelisted_registered_domain_is_not_looked_up(self):
        text = "http://example.com/ http://www.example.com/ http://x.other.org/\n"
        self.assertEqual(names_of(text, whitelist=["example.com"]), ["x.other.org", "other.org"])
        self.assertIsNone(host_names("a.example.co.uk", frozenset(["example.co.uk"])))

    def test_the_number_of_names_is_bounded(self):
        text = "".join("http://host%d.example%d.com/\n" % (i, i) for i in range(500))
        scanner = URIScanner(limit=7)
        scan_lines(message_lines(b"", io.BytesIO(text.encode())), scanner)
        self.assertEqual(len(scanner.names), 7)
        self.assertTrue(scanner.full)
        self.assertEqual(scanner.names[:2], ["host0.example0.com", "example0.com"])

    def test_each_name_once(self):
        self.assertEqual(names_of("http://a.example.com/ a.example.com\nb.example.com\n"),
                         ["a.example.com", "example.com", "b.example.com"])

    def test_headers_are_scanned_only_when_given(self):
        head = b"From: x@sender.example.net\nSubject: hi\n\n"
        self.assertEqual(names_of("body www.body.example.org\n", head=head),
                         ["sender.example.net", "example.net", "www.body.example.org",
                          "body.example.org", "example.org"])

    def test_a_long_line_is_read_in_pieces(self):
        body = io.BytesIO(b"x" * (3 * MAX_LINE + 5) + b"\nshort\n")
        pieces = list(message_lines(b"", body))
        self.assertEqual([len(p) for p in pieces], [MAX_LINE] * 3 + [6, 6])

    def test_pathological_lines_still_give_the_names_after_them(self):
        # quadratic for 0.94's patterns; linear here (no time is asserted: the test would
        # take minutes, not fail, if it were quadratic)
        junk = "aaa:/" * 12000 + " " + "http://" + "a@" * 12000 + " " + "a-" * 20000
        self.assertEqual(names_of(junk + " http://found.example.net/\n"),
                         ["found.example.net", "example.net"])


@unittest.skipUnless(os.path.exists(PERL_URIBL), "qpsmtpd's uribl plugin is not installed")
class SameNamesAsPerlTests(unittest.TestCase):
    """The scanner finds the same names, in the same order, as 0.94's own lookup_start."""

    def assertSameAsPerl(self, messages, whitelist=()):
        expected = perl_names(messages, whitelist)
        for lines, perl in zip(messages, expected):
            self.assertEqual(names_of("\n".join(lines) + "\n", whitelist), perl, lines)

    def test_corpus(self):
        self.assertSameAsPerl(CORPUS)

    def test_whitelist_where_both_agree(self):
        self.assertSameAsPerl([["http://www.example.com/ www.example.com x.example.org"]],
                              ["example.com"])

    def test_generated_lines(self):
        tokens = ["http", "https", "ftp", "abcdefghijklmnopqrstu", "http://", ":", "/", "//",
                  "@", "@x.com", "user", "a", "ab", "www", ".", "..", "-", "_", "com", "co",
                  "uk", "xyz", "info", "int", "museum", "COM", "a.co.uk", "1", "127", "0x7f",
                  "0X1f", "0777", "08", "3232235777", "12345678901234567890123", " ", "\t",
                  "?", "=", "=3D", "%2E", "&#46;", "&#064;", ";", ":80", "example", "e.g.",
                  "1.2.3.4"]
        rng = random.Random(11)
        messages = []
        for _ in range(300):
            lines = ["".join(rng.choice(tokens) for _ in range(rng.randint(1, 25)))
                     for _ in range(rng.randint(1, 4))]
            # a soft line break at the very end joins nothing in either
            messages.append(lines + ["end"])
        self.assertSameAsPerl(messages)
