"""End to end behind a real HAProxy (Debian's): ``send-proxy`` and ``send-proxy-v2`` to a
``twistd qpsmtpd-tx --listen-proxy`` endpoint.

The client (smtplib) connects to HAProxy from 127.0.0.5, .6 or .7 (any 127/8 address is
ours); HAProxy connects to us from 127.0.0.1 and sends the PROXY header. The client's address
must reach the Received header, the log, the relay decision (``relayclients`` names only
127.0.0.5) and ``dnsbl`` (the suite's private NSD lists only 127.0.0.7); the proxy's address
127.0.0.1 is in none of them.
"""

import os
import smtplib

from twisted.trial import unittest

from qpsmtpd_tx.testing import maildir_messages, write_config
from tests.support.dns import private_dns
from tests.support.haproxy import start_haproxy
from tests.support.processes import read_text, reserve_port, start_twistd, wait_for_port

RELAY_CLIENT, PLAIN_CLIENT, LISTED_CLIENT = "127.0.0.5", "127.0.0.6", "127.0.0.7"
MESSAGE = "Subject: proxied\r\n\r\nhello\r\n"


def send(port, source, recipient="u@example.com", host="127.0.0.1"):
    """Send MESSAGE through ``host``:``port`` from ``source``; smtplib's refusals propagate."""
    with smtplib.SMTP(host, port, source_address=(source, 0), timeout=30) as client:
        client.ehlo("client.example")
        return client.sendmail("a@b.example", [recipient], MESSAGE)


class BehindHAProxyTests(unittest.TestCase):
    def setUp(self):
        dns = private_dns()
        zone = dns.set_zone(dns.unique_zone("bl"), [("7.0.0.127", "A", "127.0.0.2"),
                                                     ("7.0.0.127", "TXT", "listed: 127.0.0.7")])
        self.maildir = os.path.abspath(self.mktemp())
        config = write_config(os.path.abspath(self.mktemp()), [
            "dnsbl", "relay", "rcpt_ok", "queue/maildir " + self.maildir], {
            "relayclients": RELAY_CLIENT, "dnsbl_zones": zone, "dns_servers": dns.address,
            "loglevel": "LOGINFO"})
        proxy_port = reserve_port(self)
        process, _, self.log_path = start_twistd(
            self, config, extra=["--no-rdns", "--listen-proxy", "tcp:%d:interface=127.0.0.1" % proxy_port])
        wait_for_port(proxy_port, process)
        self.ports = {kind: start_haproxy(self, [("127.0.0.1", proxy_port)], kind).port
                      for kind in ("send-proxy", "send-proxy-v2")}
        self.proxy_port = proxy_port

    def test_client_address_in_received_and_log(self):
        for version, kind in ((1, "send-proxy"), (2, "send-proxy-v2")):
            self.assertEqual(send(self.ports[kind], PLAIN_CLIENT), {})
            log = read_text(self.log_path)
            self.assertIn("PROXY v%d from 127.0.0.1: client %s:" % (version, PLAIN_CLIENT), log)
        self.assertIn("Connection from [%s] [%s]" % (PLAIN_CLIENT, PLAIN_CLIENT), log)
        messages = maildir_messages(self.maildir)
        self.assertEqual(len(messages), 2)
        for message in messages:
            received = message.decode().split("\nReceived: ", 1)[1].split(";")[0]
            self.assertIn("(%s)" % PLAIN_CLIENT, received)
            self.assertNotIn("127.0.0.1", received)

    def test_relay_decided_by_the_proxied_client(self):
        for port in self.ports.values():
            self.assertEqual(send(port, RELAY_CLIENT, "someone@elsewhere.example"), {})
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as caught:
                send(port, PLAIN_CLIENT, "someone@elsewhere.example")
            [(code, _)] = caught.exception.recipients.values()
            self.assertEqual(code, 550)

    def test_dnsbl_looks_up_the_proxied_client(self):
        for port in self.ports.values():
            with self.assertRaises(smtplib.SMTPException) as caught:
                send(port, LISTED_CLIENT)
            self.assertIn(b"listed: 127.0.0.7", str(caught.exception).encode())
            self.assertEqual(send(port, PLAIN_CLIENT), {})

    def test_ipv6_client_of_an_ipv4_backend(self):
        """HAProxy listening on ::1 sends TCP6 headers (v1 and v2) to our IPv4 endpoint."""
        for kind in ("send-proxy", "send-proxy-v2"):
            port = start_haproxy(self, [("127.0.0.1", self.proxy_port)], kind, bind="::1").port
            self.assertEqual(send(port, "::1", host="::1"), {})
        log = read_text(self.log_path)
        for version in (1, 2):
            self.assertIn("PROXY v%d from 127.0.0.1: client ::1:" % version, log)
        for message in maildir_messages(self.maildir):
            self.assertIn("(::1)", message.decode().split("\nReceived: ", 1)[1].split(";")[0])
