"""resolvable_fromhost, fcrdns and helo's DNS tests against qpsmtpd 0.94 itself: the Perl
forkserver and our twistd, on the same config, both reading a private /etc/resolv.conf that
names the suite's private DNS server (NSD, tests/support/dns.py; the resolv.conf route an
operator's server takes), get the same sessions from the same client addresses and give the
same replies, and for fcrdns write the same Authentication-Results into the messages they
queue. The cases are those where our plugins mean to answer as 0.94 does; the intended
differences are documented in each plugin and tested in tests/plugins/test_<name>.py.
"""

import email
import os

from twisted.trial import unittest

from qpsmtpd_tx.dns.names import reverse_name
from tests.support import perl_qpsmtpd
from tests.support.dns import private_dns
from tests.support.harness import write_config
from tests.support.host_dns import client_address
from tests.support.processes import start_twistd
from tests.test_plugins_envelope_perl_comparison import perl_session

#: the parent of the test clients' reverse zones: NXDOMAIN for an address without its own
REVERSE_PARENT = "77.127.in-addr.arpa"
MESSAGE = ["HELO c.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA",
           "Message-ID: <m1@c.example>\r\nSubject: x\r\n\r\nbody\r\n.", "QUIT"]


class HostDNSPerlComparisonTests(unittest.TestCase):
    def setUp(self):
        why = perl_qpsmtpd.available()
        if why:
            raise unittest.SkipTest(why)
        self.dns = private_dns()
        if REVERSE_PARENT not in self.dns.zones:
            self.dns.set_zone(REVERSE_PARENT, [])

    def start_both(self, plugins, files=None):
        """Start the Perl server and ours with ``plugins`` (then rcpt_ok and queue/maildir)
        and ``files``; returns ``{"perl": port, "ours": port}`` and sets ``self.maildirs``."""
        root = perl_qpsmtpd.shared_root(self, "qpsmtpd-tx-hostdns-")
        self.maildirs, ports, configs = {}, {}, {}
        for side in ("perl", "ours"):
            self.maildirs[side] = os.path.join(root, side + "-maildir")
            lines = list(plugins) + ["rcpt_ok", "queue/maildir " + self.maildirs[side]]
            side_files = dict(files or {})
            if side == "perl":
                side_files.update(plugin_dirs=perl_qpsmtpd.PERL_PLUGIN_DIR, loglevel="6",
                                  spool_dir=os.path.join(root, "spool"))
                os.makedirs(os.path.join(root, "spool"))
            configs[side] = write_config(os.path.join(root, side), lines, side_files)
        perl_qpsmtpd.give_to_perl_user(root)
        ports["perl"] = perl_qpsmtpd.start_forkserver(self, configs["perl"],
                                                      nameservers=[self.dns.address])
        ports["ours"] = start_twistd(self, configs["ours"], nameservers=[self.dns.address])[1]
        return ports

    def assertSameReplies(self, ports, lines, source=None):
        """Both servers answer ``lines`` (from ``source``) alike; returns the replies."""
        perl = perl_session(ports["perl"], lines, source)
        ours = perl_session(ports["ours"], lines, source)
        self.assertEqual(ours, perl, "%s from %s" % (lines, source))
        return ours

    def authentication_results(self, side):
        """The Authentication-Results of the one message ``side`` queued (and remove it)."""
        new = os.path.join(self.maildirs[side], "new")
        [name] = os.listdir(new)
        with open(os.path.join(new, name), "rb") as f:
            message = email.message_from_binary_file(f)
        os.remove(os.path.join(new, name))
        return message["Authentication-Results"]

    def test_resolvable_fromhost(self):
        dns = self.dns
        zone = dns.set_zone(dns.unique_zone("rfp"), [
            ("good", "MX", (10, "mx-good")), ("mx-good", "A", "192.0.2.10"),
            ("bad", "MX", (10, "mx-bad")), ("mx-bad", "A", "10.1.1.1"),
            ("lost", "MX", (10, "nowhere")),
            ("plain", "A", "192.0.2.11"), ("six", "AAAA", "2001:db8::11"),
            ("text", "TXT", "nothing else here"), "nullmx IN MX 0 ."])
        ports = self.start_both(["resolvable_fromhost"],
                                {"invalid_resolvable_fromhost": "10.0.0.0/8\n"})
        senders = ["<>", "<postmaster>", "<a@[192.0.2.1]>"] + [
            "<a@%s.%s>" % (name, zone)
            for name in ("good", "bad", "lost", "plain", "six", "gone", "text", "nullmx")]
        replies = [self.assertSameReplies(ports, ["HELO c.example", "MAIL FROM:" + sender,
                                                  "QUIT"])[1]
                   for sender in senders]
        self.assertEqual([reply[0] for reply in replies],
                         [250, 450, 250, 250, 450, 450, 250, 250, 450, 450, 450])

    def test_fcrdns(self):
        dns = self.dns
        confirmed, elsewhere, unnamed, no_ptr = (client_address() for _ in range(4))
        zone = dns.set_zone(dns.unique_zone("fcp"), [("a", "A", confirmed),
                                                     ("b", "A", "192.0.2.1")])
        dns.set_ptr(confirmed, "a." + zone)
        dns.set_ptr(elsewhere, "b." + zone)
        dns.set_zone(reverse_name(no_ptr), [("@", "TXT", "no PTR here")])
        ports = self.start_both(["fcrdns"])
        for source, iprev in ((confirmed, "iprev=pass"), (elsewhere, "iprev=fail"),
                              (unnamed, "iprev=permerror"), (no_ptr, "iprev=permerror")):
            self.assertSameReplies(ports, MESSAGE, source)
            results = {side: self.authentication_results(side) for side in ports}
            self.assertEqual(results["ours"], results["perl"], source)
            self.assertEqual(results["ours"], "mx.example.org; auth=none; " + iprev)

    def test_helo_dns_tests(self):
        dns = self.dns
        named, pooled, unnamed, no_ptr, stranger = (client_address() for _ in range(5))
        zone = dns.set_zone(dns.unique_zone("hdp"), [
            ("mail", "A", named), ("mail", "A", unnamed), ("mail", "A", no_ptr),
            ("far", "A", "192.0.2.1"), ("pool", "A", "192.0.2.2")])
        dns.set_ptr(named, "mail." + zone)
        dns.set_ptr(pooled, "pool-9." + zone)
        dns.set_ptr(stranger, "other.example.net")
        dns.set_zone(reverse_name(no_ptr), [("@", "TXT", "no PTR here")])
        ports = self.start_both(["helo policy strict"])
        cases = [
            (named, "HELO mail.%s" % zone, 250),
            (pooled, "HELO pool.%s" % zone, 250),        # PTR in the HELO name's domain
            (named, "HELO gone.%s" % zone, 550),         # HELO hostname does not exist
            (unnamed, "HELO mail.%s" % zone, 550),       # no rDNS for …
            (no_ptr, "HELO mail.%s" % zone, 550),        # error getting reverse DNS for …
            (stranger, "HELO far.%s" % zone, 550),       # That HELO hostname fails FCrDNS
        ]
        for source, line, code in cases:
            # a refusal closes the connection (0.94's helo always disconnects)
            replies = self.assertSameReplies(ports, [line] + ["QUIT"] * (code == 250), source)
            self.assertEqual(replies[0][0], code, (line, source, replies))
