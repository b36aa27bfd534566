"""Tests of the fcrdns plugin: each test connects from a loopback address of its own
(127.77.Y.Z) whose PTR records, and the addresses of the names they give, are served by the
suite's private DNS server (NSD, tests/support/dns.py); a real server on a loopback socket
asks it through its ``dns_servers`` config item, with the core's reverse DNS on, as twistd runs.
"""

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.dns.names import reverse_name
from tests.support.dns import private_dns
from tests.support.harness import StartupErrorMixin, log_every_level
from tests.support.host_dns import client_address, start_dns_server
from tests.support.server import connect

#: the parent of the test clients' reverse zones: NXDOMAIN for an address without its own
REVERSE_PARENT = "77.127.in-addr.arpa"


def not_resolving(ip):
    return "Your reverse DNS does not resolve to your IP address %s" % ip


class FcrdnsTests(StartupErrorMixin, unittest.TestCase):
    def setUp(self):
        self.dns = private_dns()
        if REVERSE_PARENT not in self.dns.zones:
            self.dns.set_zone(REVERSE_PARENT, [])
        self.ip = client_address()

    def ptr(self, *names, ip=None):
        """Serve ``names`` as the PTR records of the client (``ip``). The test's own address
        is no other test's: its zone stays (NSD cannot remove a zone under a served parent
        and answer REFUSED, as the helper waits for); ``::1``'s is removed at the end."""
        origin = self.dns.set_ptr(ip or self.ip, *names)
        if ip is not None:
            self.addCleanup(self.dns.remove_zone, origin)

    def hosts(self, records, prefix="fc"):
        """A zone of this test with ``records``; returns its name."""
        return self.dns.set_zone(self.dns.unique_zone(prefix), records)

    async def connect(self, args="", interface="127.0.0.1", shaped=False, files=None,
                      plugins=(), reverse_dns=True):
        """A client connected from the test's address to a server running ``plugins`` and
        fcrdns with ``args``; the log is ``self.log``. Returns the client."""
        plugins = list(plugins) + [("fcrdns " + args).strip()]
        server, port, _ = start_dns_server(self, plugins, files, shaped=shaped,
                                           reverse_dns=reverse_dns, interface=interface)
        self.server = server
        self.log, self.connections = [], []

        def log(level, message, plugin=None, transaction=None, hook=None):
            name = plugin.name if plugin is not None else None
            self.log.append((level, name, message))
            if name == "fcrdns" and transaction is not None:
                self.connections.append(transaction.connection)
        log_every_level(self, server)
        self.patch(server, "log", log)
        source = None if interface == "::1" else self.ip
        client = await connect(self, port, host=interface, source=source)
        return client

    @property
    def connection(self):
        """The connection fcrdns logged about (a refused one is gone from server.sessions)."""
        self.assertTrue(self.connections, "fcrdns logged nothing: %r" % (self.log,))
        return self.connections[-1]

    def iprev(self):
        return self.connection.notes.get("authentication_results")

    def plugin_log(self, level=None):
        return [m for lvl, name, m in self.log if name == "fcrdns" and level in (None, lvl)]

    async def test_forward_confirmed(self):
        zone = self.hosts([("mail", "A", self.ip)])
        self.ptr("mail." + zone)
        client = await self.connect("reject 1")
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(self.connection.remote_host, "mail." + zone)
        self.assertEqual(self.iprev(), "iprev=pass")
        self.assertEqual(self.connection.notes.get("karma"), 1)
        self.assertIn("pass, mail.%s has address %s" % (zone, self.ip),
                      self.plugin_log(codes.LOGINFO))

    async def test_the_core_ptr_answer_is_reused(self):
        zone = self.hosts([("mail", "A", self.ip)])
        self.ptr("mail." + zone)
        await self.connect()
        self.assertEqual(self.iprev(), "iprev=pass")
        stats = self.server.resolver.stats
        # the PTR once (for the core, fcrdns gets it from the cache), then A and AAAA
        self.assertEqual((stats["queries"], stats["cached"]), (3, 1), stats)

    async def test_without_the_cores_reverse_dns(self):
        # twistd -H (no reverse lookup by the core): fcrdns asks the PTR itself
        zone = self.hosts([("mail", "A", self.ip)])
        self.ptr("mail." + zone)
        await self.connect("reject 1", reverse_dns=False)
        self.assertIsNone(self.connection.remote_host)
        self.assertEqual(self.iprev(), "iprev=pass")

    async def test_one_of_several_names_confirms(self):
        zone = self.hosts([("a", "A", "192.0.2.1"), ("b", "AAAA", "2001:db8::1"),
                           ("c", "A", "192.0.2.3"), ("c", "A", self.ip)])
        self.ptr("a." + zone, "b." + zone, "c." + zone, "nowhere." + zone)
        await self.connect("reject 1")
        self.assertEqual(self.iprev(), "iprev=pass")

    async def test_an_address_in_the_same_slash_24_matches(self):
        neighbour = self.ip.rsplit(".", 1)[0] + ".250"
        zone = self.hosts([("pool", "A", neighbour)])
        self.ptr("pool." + zone)
        client = await self.connect("reject 1")
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(self.iprev(), "iprev=pass")
        self.assertIsNone(self.connection.notes.get("karma"))

    async def test_names_resolving_elsewhere(self):
        zone = self.hosts([("mail", "A", "192.0.2.1"), ("mail", "AAAA", "2001:db8::1")])
        self.ptr("mail." + zone)
        client = await self.connect("reject 1")
        self.assertEqual(client.greeting, (450, [not_resolving(self.ip)]))
        await client.wait_closed()
        self.assertEqual(self.iprev(), "iprev=fail")

    async def test_names_that_do_not_exist(self):
        zone = self.hosts([])
        self.ptr("gone." + zone, "also-gone." + zone)
        client = await self.connect("reject 1")
        self.assertEqual(client.greeting, (450, [not_resolving(self.ip)]))
        self.assertEqual(self.iprev(), "iprev=fail")
        self.assertEqual(self.connection.notes.get("karma"), -1)

    async def test_no_reverse_dns(self):
        client = await self.connect("reject 1")   # the parent zone answers NXDOMAIN
        self.assertEqual(client.greeting,
                         (450, ["Your IP address %s has no reverse DNS" % self.ip]))
        self.assertEqual(self.iprev(), "iprev=permerror")
        self.assertIn("fail, no rDNS: NXDOMAIN", self.plugin_log(codes.LOGINFO))

    async def test_no_ptr_record(self):
        self.dns.set_zone(reverse_name(self.ip), [("@", "TXT", "no ptr")])
        client = await self.connect("reject 1 reject_type perm")
        self.assertEqual(client.greeting,
                         (550, ["Your IP address %s has no reverse DNS" % self.ip]))
        self.assertEqual(self.iprev(), "iprev=permerror")

    async def test_failures_are_tolerated_by_default(self):
        zone = self.hosts([("mail", "A", "192.0.2.1")])
        self.ptr("mail." + zone)
        client = await self.connect()
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(self.iprev(), "iprev=fail")
        self.assertIn("fail, tolerated, no PTR host has an address matching %s" % self.ip,
                      self.plugin_log(codes.LOGINFO))

    async def test_reject_naughty(self):
        client = await self.connect("reject naughty")
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(self.connection.notes.get("naughty"),
                         "Your IP address %s has no reverse DNS" % self.ip)

    async def test_reverse_dns_server_failure_is_a_skip(self):
        self.dns.servfail_zone(reverse_name(self.ip))
        client = await self.connect("reject 1")
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(self.iprev(), "iprev=temperror")
        skips = self.plugin_log(codes.LOGWARN)
        self.assertEqual(len(skips), 1, self.log)
        self.assertTrue(skips[0].startswith("skip, error getting rDNS:"), skips)

    async def test_silent_forward_dns_is_a_skip(self):
        zone = self.hosts([("mail", "A", "192.0.2.1")], prefix="fcq")
        self.ptr("mail." + zone)
        self.dns.set_silent(zone)
        self.addCleanup(self.dns.clear_shaping, zone)
        client = await self.connect("reject 1 timeout 1", shaped=True)
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(self.iprev(), "iprev=temperror")
        self.assertIn("timed out", self.plugin_log(codes.LOGWARN)[0])

    async def test_ptr_names_are_asked_at_once(self):
        # Three PTR names in a silent zone and a 2 s budget of DNS waiting: one after the
        # other (1 s each), the budget would be spent before the third; at once, all six
        # queries (A and AAAA of each) reach the DNS relay, which drops them.
        zone = self.hosts([("n%d" % n, "A", self.ip) for n in (1, 2, 3)], prefix="fcqq")
        self.ptr(*("n%d.%s" % (n, zone) for n in (1, 2, 3)))
        self.dns.set_silent(zone)
        self.addCleanup(self.dns.clear_shaping, zone)
        before = self.dns.shaper_stats()["dropped"]
        await self.connect("reject 1", shaped=True, files={"dns_budget": "2"})
        self.assertEqual(self.dns.shaper_stats()["dropped"] - before, 6)
        self.assertEqual(self.iprev(), "iprev=temperror")

    async def test_a_false_localhost(self):
        self.ptr("localhost.")
        client = await self.connect("reject 1")
        self.assertEqual(client.greeting, (450, ["You are not localhost"]))
        self.assertEqual(self.connection.notes.get("karma"), -1)

    async def test_a_host_name_that_is_not_fully_qualified(self):
        self.ptr("nodot.")
        client = await self.connect("reject 1")
        self.assertEqual(client.greeting, (450, ["Your host name nodot is not fully qualified"]))

    async def test_ipv6_client(self):
        zone = self.hosts([("six", "AAAA", "::1")])
        self.ptr("six." + zone, ip="::1")
        client = await self.connect("reject 1", interface="::1")
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(self.iprev(), "iprev=pass")

    async def test_relay_clients_are_not_checked(self):
        client = await self.connect("reject 1", files={"relayclients": self.ip},
                                    plugins=["relay"])
        self.assertEqual(client.greeting[0], 220)
        self.assertNotIn("authentication_results", self.connection.notes)
        self.assertEqual(self.plugin_log(), ["skip, immune (relay client or whitelisted)"])

    def test_bad_arguments_stop_start_up(self):
        self.assertStartupError(["fcrdns reject 2"], "reject must be")
        self.assertStartupError(["fcrdns reject_type later"], "reject_type must be")
        self.assertStartupError(["fcrdns timeout soon"], "timeout must be")
