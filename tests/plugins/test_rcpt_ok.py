"""Tests of the rcpt_ok plugin: local parts that route the mail elsewhere are relaying.

Driven through a real SMTPProtocol on an in-memory transport (MemoryClient). Reply texts are
qpsmtpd 0.94's, read from /usr/share/qpsmtpd/plugins and probed on the Perl server
(tests/test_plugins_envelope_perl_comparison.py); the intended differences are documented in
the plugin and tested here as such.
"""

from tests.support.envelope_cases import DENIED, ROUTING_RECIPIENTS, PluginTestCase, rcpt_ok
from tests.support.harness import MemoryClient


class RcptOkTests(PluginTestCase):
    def rcpt(self, client, address):
        return client.command("RCPT TO:%s" % address)

    def start(self, client):
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        return client

    def test_routing_local_parts_are_relaying(self):
        server, records = self.recording_server(["rcpt_ok"])
        client = self.start(MemoryClient(server))
        for address, char in ROUTING_RECIPIENTS:
            self.assertEqual(self.rcpt(client, address), DENIED, address)
        logged = [r[2] for r in records if r[1] == "rcpt_ok" and r[2].startswith("fail")]
        self.assertEqual(logged[0], "fail: <victim%evil.example@example.com>: "
                         "routing character '%' in the local part")
        self.assertEqual(len(logged), len(ROUTING_RECIPIENTS), logged)

    def test_other_local_parts_still_pass(self):
        client = self.start(self.client(["rcpt_ok"]))
        for address in ("<u@example.com>", "<first.last+tag@example.com>", '<"john smith"@example.com>',
                        "<a=b/c#d@example.com>", "<u@mx.example.org>", "<postmaster>"):
            self.assertEqual(self.rcpt(client, address), rcpt_ok(address), address)

    def test_relay_clients_may_use_them(self):
        client = self.start(self.client(["relay", "rcpt_ok"], {"relayclients": "192.0.2.1"}))
        for address, _ in ROUTING_RECIPIENTS:
            # (the reply writes the address back in its shortest form)
            self.assertRegex(self.rcpt(client, address), "^250 <.+>, recipient ok\r\n$", address)

    def test_only_postmaster_goes_without_a_domain(self):
        # As 0.94 (test_same_replies_as_qpsmtpd_094 asks the Perl server): its address
        # parser knows only <postmaster> without a domain, so <abuse> never reaches rcpt_ok
        client = self.start(self.client(["rcpt_ok"]))
        for address in ("<abuse>", "<Abuse>", "<root>"):
            self.assertEqual(self.rcpt(client, address), "501 could not parse recipient\r\n")
        self.assertEqual(self.rcpt(client, "<PostMaster>"), rcpt_ok("<postmaster>"))
        self.assertEqual(self.rcpt(client, "<abuse@mx.example.org>"),
                         rcpt_ok("<abuse@mx.example.org>"))
