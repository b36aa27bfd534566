"""The suite's private DNS server and its helpers (tests.support.dns, dns_shaper,
resolv_conf): what NSD answers after each zone change, what the relay delays and drops, and
that a server under test (ours and Perl qpsmtpd) reads the test's resolv.conf.

Queries are made with tests.support.dns_query (twisted.names messages over real UDP/TCP
sockets); no clock is asserted: a delay shows as "no answer yet when a short timer fired,
the answer later", silence as "no answer when a timer fired, and the relay counted it as
dropped".
"""

import os
import socket
import subprocess

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.names import dns as names
from twisted.trial import unittest

from qpsmtpd_tx.dns.names import reverse_name

from tests.support import dns_query, perl_qpsmtpd, resolv_conf
from tests.support.dns import alive, private_dns
from tests.support.harness import write_config
from tests.support.processes import start_twistd

#: seconds a test waits for something that must happen
PATIENCE = 10.0


def addresses(answer):
    """The A/AAAA addresses in an answer."""
    return sorted(record.payload.dottedQuad() if record.type == names.A
                  else socket.inet_ntop(socket.AF_INET6, record.payload.address)
                  for record in answer.answers if record.type in (names.A, names.AAAA))


def txt_strings(answer):
    """The character-strings of the TXT records of an answer, each record as a list."""
    return [[s.decode() for s in record.payload.data] for record in answer.answers
            if record.type == names.TXT]


def settled(deferred):
    """A list that gets the result of ``deferred`` once it fires (errors too)."""
    box = []
    deferred.addBoth(box.append)
    return box


class ZoneTests(unittest.TestCase):
    """Zones set by tests are what NSD answers, right after set_zone returns."""

    def setUp(self):
        self.dns = private_dns()

    def test_records_of_each_type(self):
        zone = self.dns.set_zone(self.dns.unique_zone("types"), [
            ("www", "A", "192.0.2.1"),
            ("www", "A", "192.0.2.2", 300),
            ("v6", "AAAA", "2001:db8::1"),
            ("@", "MX", (10, "mx.example.com")),
            "alias IN CNAME www",
        ])
        www = self.dns.query("www." + zone)
        self.assertEqual((www.rCode, www.auth, addresses(www)), (0, 1, ["192.0.2.1", "192.0.2.2"]))
        self.assertEqual(addresses(self.dns.query("v6." + zone, "AAAA")), ["2001:db8::1"])
        mx = self.dns.query(zone, "MX").answers[0].payload
        self.assertEqual((mx.preference, str(mx.name)), (10, "mx.example.com"))
        self.assertEqual(str(self.dns.query("alias." + zone, "CNAME").answers[0].payload.name),
                         "www." + zone)
        self.assertEqual(self.dns.query("nothing." + zone).rCode, names.ENAME)

    def test_long_txt_over_tcp(self):
        text = "".join("word%04d " % i for i in range(80))  # 720 bytes
        zone = self.dns.set_zone(self.dns.unique_zone("txt"), [
            ("long", "TXT", text), ("parts", "TXT", ["v=spf1", 'quote" \\ back'])])
        over_udp = self.dns.query("long." + zone, "TXT")
        self.assertTrue(over_udp.trunc, "more than 512 bytes without EDNS: truncated over UDP")
        strings = txt_strings(self.dns.query("long." + zone, "TXT", tcp=True))
        self.assertEqual([len(s) for s in strings[0]], [255, 255, 210])
        self.assertEqual("".join(strings[0]), text)
        self.assertEqual(txt_strings(self.dns.query("parts." + zone, "TXT")), [["v=spf1", 'quote" \\ back']])

    def test_ptr_in_reverse_zones(self):
        v4 = self.dns.set_ptr("192.0.2.55", "host.example.com")
        v6 = self.dns.set_ptr("2001:db8::55", "host6.example.com", "other6.example.com")
        self.addCleanup(self.dns.remove_zone, v4)
        self.addCleanup(self.dns.remove_zone, v6)
        self.assertEqual(v4, "55.2.0.192.in-addr.arpa")
        self.assertTrue(v6.endswith(".8.b.d.0.1.0.0.2.ip6.arpa"), v6)
        self.assertEqual(v6, reverse_name("2001:db8::55"))
        self.assertEqual([str(r.payload.name) for r in self.dns.query(v4, "PTR").answers],
                         ["host.example.com"])
        self.assertEqual(sorted(str(r.payload.name) for r in self.dns.query(v6, "PTR").answers),
                         ["host6.example.com", "other6.example.com"])

    def test_replaced_zone_is_served_by_every_answer(self):
        """NSD briefly answers from old and new processes after a reload: set_zone waits
        for the old ones, so no later answer is the old one."""
        zone = self.dns.unique_zone("swap")
        for n in range(1, 21):
            old = self.dns.server_processes()
            self.dns.set_zone(zone, [("www", "A", "192.0.2.%d" % n)])
            self.assertEqual([pid for pid in old if alive(pid)], [], "old NSD processes still answer")
            for _ in range(10):
                self.assertEqual(addresses(self.dns.query("www." + zone)), ["192.0.2.%d" % n])

    def test_servfail_zone(self):
        new = self.dns.servfail_zone(self.dns.unique_zone("sf"))
        self.assertEqual(self.dns.query("www." + new).rCode, names.ESERVER)
        served = self.dns.set_zone(self.dns.unique_zone("sf"), [("www", "A", "192.0.2.1")])
        self.dns.servfail_zone(served)
        self.assertEqual(self.dns.query("www." + served).rCode, names.ESERVER)
        self.dns.set_zone(served, [("www", "A", "192.0.2.9")])
        self.assertEqual(addresses(self.dns.query("www." + served)), ["192.0.2.9"])

    def test_removed_zone_is_refused(self):
        zone = self.dns.set_zone(self.dns.unique_zone("gone"), [("www", "A", "192.0.2.1")])
        self.dns.remove_zone(zone)
        self.assertEqual(self.dns.query("www." + zone).rCode, names.EREFUSED)
        self.assertNotIn(zone, self.dns.zones)

    def test_bad_record_is_a_clear_error(self):
        zone = self.dns.set_zone(self.dns.unique_zone("bad"), [("www", "A", "192.0.2.1")])
        with self.assertRaises(ValueError) as raised:
            self.dns.set_zone(zone, [("www", "A", "192.0.2.300")])
        self.assertIn("invalid IPv4 address", str(raised.exception))
        self.assertIn("5  www IN A 192.0.2.300", str(raised.exception))
        self.assertEqual(addresses(self.dns.query("www." + zone)), ["192.0.2.1"])
        with self.assertRaises(ValueError):
            self.dns.set_zone("../etc", [])

    def test_unique_zones(self):
        names_given = {self.dns.unique_zone("u") for _ in range(50)}
        self.assertEqual(len(names_given), 50)


class ShaperTests(unittest.TestCase):
    """Through ``shaped_address`` the answers are NSD's, delayed or dropped per zone."""

    def setUp(self):
        self.dns = private_dns()
        self.zone = self.dns.set_zone(self.dns.unique_zone("shaped"), [
            ("www", "A", "192.0.2.7"), ("long", "TXT", "x" * 700)])
        self.addCleanup(self.dns.clear_shaping)

    def wait(self, deferred):
        return deferred.addTimeout(PATIENCE, reactor)

    def test_unshaped_answer_is_nsds(self):
        direct = self.dns.query("www." + self.zone)
        relayed = self.dns.query("www." + self.zone, shaped=True)
        self.assertEqual((relayed.rCode, relayed.answers), (direct.rCode, direct.answers))
        self.assertEqual(txt_strings(self.dns.query("long." + self.zone, "TXT", tcp=True, shaped=True)),
                         txt_strings(self.dns.query("long." + self.zone, "TXT", tcp=True)))

    @defer.inlineCallbacks
    def test_delay(self):
        slow = self.dns.set_zone("slow." + self.zone, [("www", "A", "192.0.2.8")])
        self.dns.set_delay(slow, 1.5)
        for tcp in (False, True):
            late = settled(dns_query.ask(self.dns.shaped_address, "www." + slow, tcp=tcp))
            prompt = yield self.wait(dns_query.ask(self.dns.shaped_address, "www." + self.zone, tcp=tcp))
            self.assertEqual(addresses(prompt), ["192.0.2.7"])
            yield deferLater(reactor, 0.1, lambda: None)
            self.assertEqual(late, [], "the delayed answer came before a short timer fired")
            yield self.wait(self._fired(late))
            self.assertEqual(addresses(late[0]), ["192.0.2.8"], tcp)

    @defer.inlineCallbacks
    def test_silent(self):
        self.dns.set_silent(self.zone)
        before = self.dns.shaper_stats()
        for tcp in (False, True):
            asking = dns_query.ask(self.dns.shaped_address, "www." + self.zone, tcp=tcp)
            answer = settled(asking)
            self.addCleanup(asking.cancel)
            yield deferLater(reactor, 0.5, lambda: None)
            self.assertEqual(answer, [], tcp)
        stats = self.dns.shaper_stats()
        self.assertEqual(stats["dropped"] - before["dropped"], 2)
        self.assertEqual(stats["queries"] - before["queries"], 2)
        self.dns.clear_shaping(self.zone)
        self.assertEqual(addresses(self.dns.query("www." + self.zone, shaped=True)), ["192.0.2.7"])

    def test_longest_suffix_wins(self):
        self.dns.set_silent(self.zone)
        self.dns.set_delay("www." + self.zone, 0)
        self.assertEqual(addresses(self.dns.query("www." + self.zone, shaped=True)), ["192.0.2.7"])
        with self.assertRaises(dns_query.NoAnswer):
            self.dns.query("long." + self.zone, "TXT", shaped=True, timeout=0.3)

    def test_bad_rule(self):
        with self.assertRaises(ValueError):
            self.dns.set_delay(self.zone, -1)

    @staticmethod
    def _fired(box):
        """A Deferred firing once ``box`` (from :func:`settled`) holds a result."""
        def check():
            return box or deferLater(reactor, 0.02, check)
        return defer.maybeDeferred(check)


class ResolvConfTests(unittest.TestCase):
    """A process started through resolv_conf reads the test's file as /etc/resolv.conf."""

    def setUp(self):
        self.dns = private_dns()
        with open("/etc/resolv.conf", "rb") as f:
            self.real = f.read()

    def tearDown(self):
        with open("/etc/resolv.conf", "rb") as f:
            self.assertEqual(f.read(), self.real)

    def test_process_reads_the_test_nameserver(self):
        zone = self.dns.set_zone(self.dns.unique_zone("resolv"), [("host", "A", "192.0.2.44")])
        path = resolv_conf.write_resolv_conf(self.mktemp(), [self.dns.address], ["timeout:2"])
        shown = subprocess.run(resolv_conf.with_resolv_conf(path, ["cat", "/etc/resolv.conf"]),
                               stdout=subprocess.PIPE, check=True).stdout
        self.assertEqual(shown.decode(), "nameserver %s\noptions timeout:2\n" % self.dns.address)
        found = subprocess.run(resolv_conf.with_resolv_conf(path, ["getent", "hosts", "host." + zone]),
                               stdout=subprocess.PIPE, check=True).stdout
        self.assertEqual(found.split()[0], b"192.0.2.44")

    def test_real_file_unchanged_while_it_runs(self):
        path = resolv_conf.write_resolv_conf(self.mktemp(), [self.dns.address])
        child = subprocess.Popen(resolv_conf.with_resolv_conf(path, ["sh", "-c", "cat /etc/resolv.conf; read x"]),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.addCleanup(child.wait)
        self.addCleanup(child.stdin.close)
        self.assertEqual(child.stdout.readline().decode(), "nameserver %s\n" % self.dns.address)
        self.assertIsNone(child.poll())
        with open("/etc/resolv.conf", "rb") as f:
            self.assertEqual(f.read(), self.real)


def helo_reply(port, source):
    """The reply to HELO on 127.0.0.1:``port``, connecting from ``source`` (a 127/8 address)."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE, source_address=(source, 0)) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"HELO client.example\r\n")
        return reader.readline().decode()


class ServersUnderTestTests(unittest.TestCase):
    """twistd (ours) and Perl qpsmtpd started with ``nameservers=`` look the client's name up
    in the private DNS: its PTR shows in their HELO reply."""

    def setUp(self):
        self.dns = private_dns()

    def client_with_ptr(self, source, name):
        self.addCleanup(self.dns.remove_zone, self.dns.set_ptr(source, name))

    def test_twistd(self):
        self.client_with_ptr("127.0.55.2", "client-tx.qptx.test")
        config = write_config(os.path.abspath(self.mktemp()), ["rcpt_ok"])
        _, port, _ = start_twistd(self, config, nameservers=[self.dns.address])
        self.assertIn("Hi client-tx.qptx.test [127.0.55.2]", helo_reply(port, "127.0.55.2"))

    def test_perl_forkserver(self):
        self.client_with_ptr("127.0.55.3", "client-perl.qptx.test")
        root = perl_qpsmtpd.shared_root(self, "qptx-dns-perl-")
        config = write_config(os.path.join(root, "config"), ["rcpt_ok"],
                              {"plugin_dirs": perl_qpsmtpd.PERL_PLUGIN_DIR})
        perl_qpsmtpd.give_to_perl_user(root)
        port = perl_qpsmtpd.start_forkserver(self, config, nameservers=[self.dns.address])
        self.assertIn("Hi client-perl.qptx.test [127.0.55.3]", helo_reply(port, "127.0.55.3"))
