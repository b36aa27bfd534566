"""The resolver over real UDP sockets on 127.0.0.1.

Here the name server is a UDP socket of the test that reads queries and never answers (what a
dead or firewalled DNS server is): timeouts, the per-connection budget, merging of identical
lookups in flight and EDNS0 are checked on the queries it receives. Answers from a real DNS
server (NSD) are in test_dns_answers.
"""

import struct

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial import unittest

from qpsmtpd_tx.dns import DNSBudget, DNSTimeout, Resolver


class SilentNameServer(DatagramProtocol):
    """Keeps every query datagram it receives and answers none."""

    def __init__(self):
        self.queries = []
        self._waiters = []

    def datagramReceived(self, data, addr):
        self.queries.append(data)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def next_query(self):
        """A Deferred firing when the next query arrives."""
        d = defer.Deferred()
        self._waiters.append(d)
        return d

    def question_names(self):
        """The query name of each datagram received."""
        return [_question_name(q) for q in self.queries]


def _question_name(packet):
    labels, offset = [], 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1:offset + 1 + length].decode())
        offset += 1 + length
    return ".".join(labels)


def _has_opt_record(packet):
    """True if the query carries an EDNS0 OPT pseudo-record (type 41) in its additional section."""
    arcount = struct.unpack("!H", packet[10:12])[0]
    offset = 12
    while packet[offset]:
        offset += 1 + packet[offset]
    offset += 5                              # end of name, QTYPE, QCLASS
    for _ in range(arcount):
        if packet[offset] == 0 and struct.unpack("!H", packet[offset + 1:offset + 3])[0] == 41:
            return True
        offset += 11 + struct.unpack("!H", packet[offset + 9:offset + 11])[0]
    return False


class SilentServerTests(unittest.TestCase):
    def setUp(self):
        self.server = SilentNameServer()
        self.port = reactor.listenUDP(0, self.server, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        address = "127.0.0.1:%d" % self.port.getHost().port
        # c-ares' own retries are long (5 s × 3): the waits below end first
        self.resolver = Resolver.from_settings(reactor, servers=[address], timeout=5, tries=3)
        self.addCleanup(self.resolver.close)

    async def test_timeout_is_its_own_error(self):
        with self.assertRaises(DNSTimeout) as caught:
            await self.resolver.a("never.example", timeout=0.2)
        self.assertEqual((caught.exception.name, caught.exception.rrtype), ("never.example", "A"))
        self.assertFalse(caught.exception.definite)

    async def test_identical_lookups_in_flight_share_one_query(self):
        arrived = self.server.next_query()
        first = self.resolver.a("Same.Example.", timeout=0.3)
        second = self.resolver.a("same.example", timeout=0.3)
        third = self.resolver.txt("same.example", timeout=0.3)
        await arrived
        for d in (first, second, third):
            with self.assertRaises(DNSTimeout):
                await d
        names = self.server.question_names()
        self.assertEqual(names.count("same.example"), 2, names)   # one A, one TXT
        self.assertEqual(self.resolver.stats["merged"], 1)

    async def test_queries_carry_edns0(self):
        arrived = self.server.next_query()
        d = self.resolver.txt("edns.example", timeout=0.2)
        await arrived
        self.assertTrue(_has_opt_record(self.server.queries[0]))
        with self.assertRaises(DNSTimeout):
            await d

    async def test_connection_budget_bounds_all_lookups(self):
        budget = DNSBudget(lambda: self.resolver, 0.3, reactor)
        # in parallel: they share the budget instead of each using it up
        waits = [budget.a("p%d.example" % n, timeout=30) for n in range(3)]
        for d in waits:
            with self.assertRaises(DNSTimeout) as caught:
                await d
            # cut to what the budget left, not the 30 s asked nor c-ares' own 15 s
            self.assertRegex(caught.exception.detail, r"^no answer in 0\.[0-3]\d* s$")
        self.assertEqual(budget.left(), 0.0)
        before = len(self.server.queries)
        with self.assertRaises(DNSTimeout) as caught:
            await budget.mx("later.example", timeout=30)
        self.assertIn("budget", str(caught.exception))
        self.assertEqual(len(self.server.queries), before)   # not even asked

    async def test_bad_names_fail_without_a_query(self):
        from qpsmtpd_tx.dns import BadName
        for name in ("", "a..b", "x" * 64 + ".example", "é" * 300):
            with self.assertRaises(BadName):
                await self.resolver.a(name, timeout=0.2)
        self.assertEqual(self.server.queries, [])


class ServerResolverTests(unittest.TestCase):
    def test_closed_resolver_leaves_nothing_holding_the_server(self):
        import gc
        import weakref
        from qpsmtpd_tx.testing import make_server
        server = make_server(self, ["rcpt_ok"])
        self.assertIs(server.resolver, server.resolver)      # one per server, made at first use
        server.close_dns()
        released = weakref.ref(server)
        del server
        gc.collect()
        self.assertIsNone(released())

    def test_a_connections_budget_asks_the_resolver_made_after_a_close(self):
        """A connection's DNSBudget keeps the resolver it was given; once that one is
        closed (close_dns), its next lookup uses the server's new one."""
        from qpsmtpd_tx.testing import make_server
        server = make_server(self, ["rcpt_ok"])
        budget = server.connection_dns()
        first = budget.resolver
        self.assertIs(first, server.resolver)
        self.assertIsNone(budget.cached("example.com", "A"))
        server.close_dns()
        self.assertTrue(first.closed)
        self.assertIsNone(budget.cached("example.com", "A"))
        self.assertIsNot(budget.resolver, first)
        self.assertIs(budget.resolver, server.resolver)
