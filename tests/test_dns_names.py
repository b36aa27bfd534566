"""DNS names made from addresses, and the bounded TTL cache of the resolver (no I/O here; the
resolver against a real DNS server is in test_dns_resolver)."""

from twisted.internet.task import Clock
from twisted.trial import unittest

from qpsmtpd_tx.dns.cache import TTLCache
from qpsmtpd_tx.dns.names import list_query_name, parse_ip, reverse_name


class NameTests(unittest.TestCase):
    def test_ipv4(self):
        self.assertEqual(reverse_name("192.0.2.1"), "1.2.0.192.in-addr.arpa")
        self.assertEqual(list_query_name("192.0.2.1", "zen.example."), "1.2.0.192.zen.example")

    def test_ipv6_nibbles(self):
        name = reverse_name("2001:db8::567:89ab")
        self.assertEqual(name, "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
                               ".ip6.arpa")
        self.assertEqual(list_query_name("2001:db8::567:89ab", "bl.example"),
                         name.replace("ip6.arpa", "bl.example"))

    def test_mapped_ipv4_is_ipv4(self):
        self.assertEqual(str(parse_ip("::ffff:192.0.2.7")), "192.0.2.7")
        self.assertEqual(list_query_name("::ffff:192.0.2.7", "bl.example"), "7.2.0.192.bl.example")

    def test_not_an_address(self):
        self.assertIsNone(parse_ip("mail.example"))
        self.assertIsNone(parse_ip(None))
        self.assertRaises(ValueError, reverse_name, "mail.example")


class CacheTests(unittest.TestCase):
    def test_expiry_by_ttl(self):
        clock = Clock()
        cache = TTLCache(10, clock)
        cache.put("a", 1, 30)
        clock.advance(29)
        self.assertEqual(cache.get("a"), 1)
        clock.advance(1)
        self.assertIsNone(cache.get("a"))
        self.assertEqual(len(cache), 0)

    def test_bounded_least_recently_used_first(self):
        cache = TTLCache(3, Clock())
        for key in "abc":
            cache.put(key, key, 60)
        cache.get("a")
        cache.put("d", "d", 60)
        self.assertEqual(len(cache), 3)
        self.assertIsNone(cache.get("b"))
        self.assertEqual([cache.get(k) for k in "acd"], ["a", "c", "d"])

    def test_size_zero_and_ttl_zero_keep_nothing(self):
        cache = TTLCache(0, Clock())
        cache.put("a", 1, 60)
        self.assertIsNone(cache.get("a"))
        cache = TTLCache(5, Clock())
        cache.put("a", 1, 0)
        self.assertIsNone(cache.get("a"))
