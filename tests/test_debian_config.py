"""An unchanged copy of Debian's /etc/qpsmtpd (from the qpsmtpd package) runs on qpsmtpd-tx and
answers as Perl qpsmtpd 0.94 does on the same copy: its plugins file loads rhsbl and dnsbl (with
Debian's empty zone files), check_earlytalker, check_relay, check_spamhelo, check_badmailfrom,
check_badrcptto, check_loop, rcpt_ok and the debconf-chosen queue method (none: mail is
refused with 451), and logs with logging/file to /var/log/qpsmtpd/qpsmtpd.log.

Both servers run with /etc/resolv.conf naming the suite's private DNS server (NSD), and are
asked the same sessions, from 127.0.0.1 (a relay client in Debian's relayclients) and from
another loopback address (not one)."""

import os
import shutil
import smtplib

from twisted.trial import unittest

from tests.support import perl_qpsmtpd
from tests.support.dns import private_dns
from tests.support.processes import start_twistd

DEBIAN_CONFIG = "/etc/qpsmtpd"
MESSAGE = b"From: a@example.net\r\nSubject: debian\r\n\r\nbody\r\n"


def session(port, source):
    """EHLO, MAIL, RCPT (two), DATA, QUIT from address ``source``; the codes in order."""
    client = smtplib.SMTP(timeout=60, source_address=(source, 0))
    codes = [client.connect("127.0.0.1", port)[0], client.ehlo("client.example")[0],
             client.mail("a@example.net")[0], client.rcpt("b@example.com")[0],
             client.rcpt("postmaster@unset")[0]]
    code, _ = client.docmd("DATA")
    codes.append(code)
    if code == 354:
        client.send(MESSAGE + b".\r\n")
        codes.append(client.getreply()[0])
    codes.append(client.quit()[0])
    return codes


class DebianConfigTests(unittest.TestCase):
    def setUp(self):
        if not os.path.isfile(os.path.join(DEBIAN_CONFIG, "plugins")):
            raise unittest.SkipTest("Debian's qpsmtpd package is not installed")
        self.dns = private_dns()
        # where the Perl server (as the qpsmtpd user) can read it; skips without Perl
        self.copy = os.path.join(perl_qpsmtpd.shared_root(self, "qptx-debian-"), "qpsmtpd")
        shutil.copytree(DEBIAN_CONFIG, self.copy)
        perl_qpsmtpd.give_to_perl_user(self.copy)

    def test_same_answers_as_perl(self):
        _, tx_port, log = start_twistd(self, self.copy, nameservers=[self.dns.address])
        perl_port = perl_qpsmtpd.start_forkserver(self, self.copy, nameservers=[self.dns.address])
        relay = "127.0.0.1"                 # in Debian's relayclients
        ours, perls = session(tx_port, relay), session(perl_port, relay)
        # After the data: Perl refuses every message with 552 Too many hops: Debian's
        # check_loop shim never sets loop's max_hops (see plugins/check_loop.py). Ours goes on
        # to the queue, which Debian leaves unset (debian-queue-method): 451.
        self.assertEqual(ours[:6], perls[:6])
        self.assertEqual((ours[6], perls[6]), (451, 552))
        self.assertEqual(ours[3:5], [250, 250])
        # not a relay client: refused at RCPT but for a domain of rcpthosts (Debian's "unset")
        other = "127.0.55.201"
        ours, perls = session(tx_port, other), session(perl_port, other)
        self.assertEqual(ours[:6], perls[:6])
        self.assertEqual(ours[3:5], [550, 250])
        self.assertEqual((ours[6], perls[6]), (451, 552))
