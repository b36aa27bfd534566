"""The address and name helpers that remember their answers (reverse_name, the resolver's
name normalisation, the protocol's plain client address) give the same answers the second
time, keep raising for bad input, and do not mix up their inputs."""

import tracemalloc

from twisted.trial import unittest

from qpsmtpd_tx.dns.errors import BadName
from qpsmtpd_tx.dns.names import reverse_name
from qpsmtpd_tx.dns.resolver import _normalise
from qpsmtpd_tx.protocol import _plain_ip


class RememberedNamesTests(unittest.TestCase):
    def test_reverse_names_are_the_same_again(self):
        for _ in range(2):
            self.assertEqual(reverse_name("192.0.2.1"), "1.2.0.192.in-addr.arpa")
            self.assertEqual(reverse_name("::ffff:192.0.2.1"), "1.2.0.192.in-addr.arpa")
            self.assertTrue(reverse_name("2001:db8::1").endswith(".8.b.d.0.1.0.0.2.ip6.arpa"))
            with self.assertRaises(ValueError):
                reverse_name("not an address")

    def test_normalised_names_are_the_same_again_and_bad_ones_fail_each_time(self):
        for _ in range(2):
            self.assertEqual(_normalise(" Mail.Example.COM. "), "mail.example.com")
            self.assertEqual(_normalise("bücher.example"), "xn--bcher-kva.example")
            for bad in ("", "a" * 64 + ".example", "x..example", None, ["list"]):
                with self.assertRaises(BadName, msg=repr(bad)):
                    _normalise(bad)

    def test_long_names_as_given_are_not_kept(self):
        """A name made valid by dropping its final dots (a DKIM d= with 200,000 of them) is
        answered, and not remembered whole: 100 of them kept 20 MB."""
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for i in range(100):
                name = "key%d._domainkey.example.com" % i + "." * 200000
                self.assertEqual(_normalise(name), "key%d._domainkey.example.com" % i)
                del name
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertLess(after - before, 1000000)

    def test_plain_client_addresses(self):
        for _ in range(2):
            self.assertEqual(_plain_ip("::ffff:192.0.2.1"), "192.0.2.1")
            self.assertEqual(_plain_ip("2001:DB8::1"), "2001:db8::1")
            self.assertEqual(_plain_ip("192.0.2.1"), "192.0.2.1")
            self.assertEqual(_plain_ip("/run/qpsmtpd.sock"), "/run/qpsmtpd.sock")
