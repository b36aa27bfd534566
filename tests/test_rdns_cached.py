"""The core's reverse DNS of a client whose PTR outcome is in the resolver's cache: taken at
once, without a lookup (no Deferred, no Failure per connection), and with the same result as
the lookup gives: host name, EHLO greeting line, Received field, ``Unknown`` without a PTR.

A real server on a loopback socket with reverse DNS on asks the suite's private DNS server
(NSD); each test connects from a loopback address of its own (127.77.Y.Z).
"""

from twisted.internet import reactor
from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED
from qpsmtpd_tx.dns import DNSBudget, NXDomain
from qpsmtpd_tx.plugin import Plugin
from tests.support.dns import private_dns
from tests.support.harness import TEST_PLUGINS
from tests.support.host_dns import client_address, start_dns_server
from tests.support.server import connect

#: the parent of the test clients' reverse zones: NXDOMAIN for an address without its own
REVERSE_PARENT = "77.127.in-addr.arpa"


class CachedReverseDNSTests(unittest.TestCase):
    def setUp(self):
        self.dns = private_dns()
        if REVERSE_PARENT not in self.dns.zones:
            self.dns.set_zone(REVERSE_PARENT, [])
        self.ip = client_address()
        self.server, self.port, _ = start_dns_server(
            self, ["rcpt_ok", "scripted queue OK"], reverse_dns=True, plugin_dirs=[TEST_PLUGINS])
        #: (remote_host, remote_info, Received) of each message queued
        self.queued = []
        recorder = Plugin()
        recorder.name = recorder.path = "record_received"
        recorder.server = self.server

        def queue_post(transaction):
            conn = transaction.connection
            self.queued.append((conn.remote_host, conn.remote_info,
                                transaction.header.get_first("Received")))
            return DECLINED
        self.server.hooks.register("queue_post", recorder, queue_post)
        #: resolver lookups made by the connections (counted once the resolver exists)
        self.lookups = []

    def count_lookups(self):
        resolver = self.server.resolver
        lookup = resolver.lookup

        def counted(name, rrtype, timeout=None):
            self.lookups.append((name, rrtype))
            return lookup(name, rrtype, timeout)
        self.patch(resolver, "lookup", counted)

    async def session(self):
        """One connection with one message; (EHLO greeting line, the message's record)."""
        client = await connect(self, self.port, source=self.ip)
        code, greeting = await client.command("EHLO client.example")
        self.assertEqual(code, 250, greeting)
        for line, expected in (("MAIL FROM:<a@example.net>", 250), ("RCPT TO:<b@example.com>", 250),
                               ("DATA", 354)):
            self.assertEqual((await client.command(line))[0], expected, line)
        code, lines = await client.command("Subject: x\r\n\r\nbody\r\n.")
        self.assertEqual(code, 250, lines)
        await client.command("QUIT")
        await client.wait_closed()
        return greeting[0], self.queued[-1]

    def received_from(self, received):
        """The Received field's ``from`` clause (the rest holds the date)."""
        return received.split(" by ")[0]

    async def test_a_cached_ptr_name_is_taken_without_a_lookup(self):
        self.dns.set_ptr(self.ip, "mail.client.example")
        first_line, first = await self.session()          # asks DNS: a real lookup
        self.count_lookups()
        second_line, second = await self.session()        # the answer is in the cache
        self.assertEqual(self.lookups, [])
        self.assertEqual(first_line, "mx.example.org Hi mail.client.example [%s]" % self.ip)
        self.assertEqual(second_line, first_line)
        self.assertEqual(first[:2], ("mail.client.example", "mail.client.example"))
        self.assertEqual(second[:2], first[:2])
        self.assertEqual(self.received_from(first[2]),
                         "from mail.client.example (HELO client.example) (%s)" % self.ip)
        self.assertEqual(self.received_from(second[2]), self.received_from(first[2]))
        stats = self.server.resolver.stats
        self.assertEqual((stats["queries"], stats["cached"]), (1, 1), stats)

    async def test_a_cached_no_such_name_is_unknown_without_a_lookup(self):
        first_line, first = await self.session()
        self.count_lookups()
        second_line, second = await self.session()
        self.assertEqual(self.lookups, [])
        self.assertEqual(first_line, "mx.example.org Hi Unknown [%s]" % self.ip)
        self.assertEqual(second_line, first_line)
        self.assertEqual(first[:2], ("Unknown", "Unknown"))
        self.assertEqual(second[:2], first[:2])
        self.assertEqual(self.received_from(second[2]),
                         "from Unknown (HELO client.example) (%s)" % self.ip)

    async def test_an_unclean_cached_name_is_cleaned_as_a_looked_up_one(self):
        self.dns.set_ptr(self.ip, "bad_name.example")
        first_line, first = await self.session()
        second_line, second = await self.session()
        self.assertEqual(first[:2], ("badname.example", "badname.example"))
        self.assertEqual(second[:2], first[:2])

    async def test_a_spent_dns_budget_is_not_bypassed_by_the_cache(self):
        await self.session()                 # the cache now holds the address's NXDOMAIN
        fresh = DNSBudget(lambda: self.server.resolver, 1.0, reactor)
        self.assertIsInstance(fresh.ptr_cached(self.ip), NXDomain)
        spent = DNSBudget(lambda: self.server.resolver, 1.0, reactor)
        spent.spent = 1.0
        # None: the connection learns from the lookup itself that its budget is spent
        self.assertIsNone(spent.ptr_cached(self.ip))
