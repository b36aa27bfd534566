"""Tests of the rcpt_ok plugin: local parts that route the mail elsewhere are relaying;
rcpthosts re-read on reload (SIGHUP); morercpthosts as a plain file or a qmail cdb. Driven
through a real SMTPProtocol on an in-memory transport (MemoryClient). Reply texts are qpsmtpd
0.94's; tests/test_plugins_envelope_perl_comparison.py checks some on the Perl server.
"""

from twisted.trial import unittest

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


class ReloadTests(unittest.TestCase):
    """SIGHUP (server.reload_config) makes rcpt_ok read a changed rcpthosts; a broken file is kept out."""

    def test_rcpthosts_reread_after_reload(self):
        import os
        from tests.support.harness import MemoryClient, make_server
        server = make_server(self, ["rcpt_ok"])
        path = server.config.path_of("rcpthosts")

        def rcpt(address):
            client = MemoryClient(server)
            client.command("HELO c.example")
            client.command("MAIL FROM:<a@b.example>")
            return client.command("RCPT TO:<%s>" % address)[:3]

        self.assertEqual(rcpt("u@new.example"), "550")
        with open(path, "w") as f:
            f.write("example.com\nnew.example\n")
        self.assertEqual(rcpt("u@new.example"), "550")       # cached until reload
        server.reload_config()
        self.assertEqual(rcpt("u@new.example"), "250")
        os.unlink(path)
        server.reload_config()
        self.assertEqual(rcpt("u@new.example"), "550")


class MoreRcptHostsTests(unittest.TestCase):
    """rcpt_ok's morercpthosts: a plain file or a morercpthosts.cdb (qmail's compiled form)."""

    def rcpt(self, server, address):
        from tests.support.harness import MemoryClient
        client = MemoryClient(server)
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        return client.command("RCPT TO:<%s>" % address)

    def test_cdb_and_plain_file(self):
        import os
        from qpsmtpd_tx.cdb import write_cdb
        from tests.support.harness import make_server
        server = make_server(self, ["rcpt_ok"], {"morercpthosts": "plain.example"})
        self.assertEqual(self.rcpt(server, "u@plain.example"), "250 <u@plain.example>, recipient ok\r\n")
        self.assertEqual(self.rcpt(server, "u@cdb.example"), "550 Relaying denied (#5.7.1)\r\n")
        server = make_server(self, ["rcpt_ok"])
        write_cdb(os.path.join(os.path.dirname(server.config.path_of("me")), "morercpthosts.cdb"),
                  [(b"cdb.example", b"")])
        self.assertEqual(self.rcpt(server, "u@CDB.example"), "250 <u@CDB.example>, recipient ok\r\n")
        self.assertEqual(self.rcpt(server, "u@sub.cdb.example"), "550 Relaying denied (#5.7.1)\r\n")
