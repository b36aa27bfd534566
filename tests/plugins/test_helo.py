"""Tests of the helo plugin (old name check_spamhelo): HELO/EHLO names refused by list,
pattern, policy and address, driven through a real SMTPProtocol on an in-memory transport
(MemoryClient), and end to end over a loopback socket (``EndToEndTests``). Reply texts are
qpsmtpd 0.94's; tests/test_plugins_envelope_perl_comparison.py checks them on the Perl server.
"""

import os

from qpsmtpd_tx import codes
from tests.support import harness
from tests.support.dns import private_dns
from tests.support.envelope_cases import EndToEndTestCase, PluginTestCase, QUEUED, mail_ok
from tests.support.harness import MemoryClient, make_server


def helo_ok(ip="192.0.2.1"):
    return "250 mx.example.org Hi Unknown [%s]; I am so happy to meet you.\r\n" % ip


def fake_transaction(remote_ip="192.0.2.1", local_ip="192.0.2.25"):
    """The kit's fake_transaction, on a connection to ``local_ip``."""
    return harness.fake_transaction(remote_ip, local_ip=local_ip)


class HeloTests(PluginTestCase):
    def helo(self, args="", files=None, remote_ip="192.0.2.1", name="helo"):
        return self.client([("%s %s" % (name, args)).strip(), "rcpt_ok", "scripted queue OK"],
                           files, remote_ip)

    def assertRefused(self, client, line, reply, closed=True):
        self.assertEqual(client.command(line), reply)
        self.assertEqual(client.closed, closed)

    def assertAccepted(self, client, line, ip="192.0.2.1"):
        self.assertEqual(client.command(line), helo_ok(ip))
        self.assertFalse(client.closed)

    def test_badhelo_name(self):
        files = {"badhelo": "aol.com\nyahoo.com\n"}
        self.assertRefused(self.helo(files=files), "HELO AOL.com",
                           "550 I do not believe you are AOL.com.\r\n")
        self.assertRefused(self.helo(files=files), "EHLO yahoo.com",
                           "550 I do not believe you are yahoo.com.\r\n")
        self.assertAccepted(self.helo(files=files), "HELO mail.aol.com")

    def test_badhelo_pattern(self):
        files = {"badhelo": "^MAIL\\d+\\.example\\.net$"}  # 0.94: capitals never matched
        for name in ("mail12.example.net", "MAIL7.Example.NET"):
            self.assertRefused(self.helo(files=files), "HELO " + name,
                               "550 Your HELO hostname is not allowed\r\n")
        self.assertAccepted(self.helo(files=files), "HELO mail.example.net")

    def test_badhelo_negated_pattern(self):
        files = {"badhelo": "!\\."}
        self.assertRefused(self.helo(files=files), "HELO nodot",
                           "550 Your HELO hostname is not allowed\r\n")
        self.assertAccepted(self.helo(files=files), "HELO has.dot.example")

    def test_every_badhelo_line_is_tried(self):
        # 0.94 stopped at the first pattern line: aol.com and the negated line went unused.
        files = {"badhelo": "^zzz\\.\naol.com\n!^[a-z0-9.]+$\n"}
        self.assertRefused(self.helo(files=files), "HELO aol.com",
                           "550 I do not believe you are aol.com.\r\n")
        self.assertRefused(self.helo(files=files), "HELO under_score.example",
                           "550 Your HELO hostname is not allowed\r\n")
        self.assertAccepted(self.helo(files=files), "HELO fine.example")

    def test_badhelo_address_literal_is_an_exact_entry(self):
        # 0.94 read "[192.0.2.1]" as a character class that matched nearly every name.
        files = {"badhelo": "[192.0.2.1]"}
        self.assertRefused(self.helo(files=files), "HELO [192.0.2.1]",
                           "550 I do not believe you are [192.0.2.1].\r\n")
        self.assertAccepted(self.helo(files=files), "HELO host1.example")

    def test_invalid_localhost(self):
        self.assertRefused(self.helo(), "HELO localhost", "550 You are not localhost\r\n")
        self.assertRefused(self.helo(), "HELO LocalHost", "550 You are not localhost\r\n")
        self.assertAccepted(self.helo(remote_ip="127.0.0.1"), "HELO localhost", "127.0.0.1")

    def test_localhost_from_any_loopback_address(self):
        plugin = make_server(self, ["helo"]).plugins[0]
        for ip in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
            self.assertIsNone(plugin.invalid_localhost(fake_transaction(ip), "localhost"), ip)
        for ip in ("192.0.2.1", "2001:db8::1", ""):
            self.assertEqual(plugin.invalid_localhost(fake_transaction(ip), "localhost"),
                             ("You are not localhost", "invalid localhost"), ip)

    def test_forged_literal(self):
        for literal in ("[192.0.2.9]", "[IPv6:2001:db8::1]", "[999.1.1.1]"):
            self.assertRefused(self.helo(), "HELO " + literal,
                               "550 Forged IPs not accepted here\r\n")
        self.assertAccepted(self.helo(), "HELO [192.0.2.1]")

    def test_literal_compared_as_addresses(self):
        plugin = make_server(self, ["helo"]).plugins[0]
        self.assertIsNone(plugin.is_forged_literal(fake_transaction("::ffff:192.0.2.1"),
                                                   "[192.0.2.1]"))
        self.assertIsNone(plugin.is_forged_literal(fake_transaction("2001:db8::1"),
                                                   "[IPv6:2001:DB8:0::1]"))
        self.assertEqual(plugin.is_forged_literal(fake_transaction("2001:db8::1"),
                                                  "[IPv6:2001:db8::2]"),
                         ("Forged IPs not accepted here", "forged IP literal"))

    def test_plain_ip(self):
        for name in ("192.0.2.1", "2001:db8::1", "999.1.2.3"):
            self.assertRefused(self.helo(), "HELO " + name,
                               "550 Plain IP is invalid HELO hostname (RFC 2821)\r\n")
        self.assertAccepted(self.helo(), "HELO 192.0.2.1.example.com")

    def test_rfc_policy_requires_a_fqdn(self):
        self.assertRefused(self.helo("policy rfc"), "HELO nodot",
                           "550 HELO name is not fully qualified. Read RFC 2821\r\n")
        self.assertRefused(self.helo("policy rfc"), "HELO bad_name.example",
                           "550 HELO name contains invalid FQDN characters. Read RFC 1035\r\n")
        # names that pass are then looked up: tests/plugins/test_helo_dns.py
        # lenient does not look at the form of the name
        self.assertAccepted(self.helo(), "HELO nodot")
        self.assertAccepted(self.helo("policy lenient"), "HELO bad_name.example")

    def test_rfc_policy_refuses_our_own_name(self):
        self.assertRefused(self.helo("policy rfc"), "HELO MX.example.org",
                           "550 I do not believe you are MX.example.org.\r\n")
        self.assertAccepted(self.helo(), "HELO mx.example.org")

    def test_our_name_from_our_own_address(self):
        plugin = make_server(self, ["helo policy rfc"]).plugins[0]
        txn = fake_transaction("192.0.2.25", local_ip="192.0.2.25")
        self.assertIsNone(plugin.is_our_name(txn, "mx.example.org"))
        txn = fake_transaction("192.0.2.26", local_ip="192.0.2.25")
        self.assertEqual(plugin.is_our_name(txn, "mx.example.org."),
                         ("I do not believe you are mx.example.org..", "forged our own name"))

    def test_strict_policy_requires_a_fqdn(self):
        # address literals (refused after the DNS tests): tests/plugins/test_helo_dns.py
        self.assertRefused(self.helo("policy strict"), "HELO nodot",
                           "550 HELO name is not fully qualified. Read RFC 2821\r\n")

    def test_reject_types(self):
        table = [
            ("", "550", True), ("reject_type disconnect", "550", True),
            ("reject_type perm", "550", False), ("reject_type hard", "550", False),
            ("reject_type temp", "450", False), ("reject_type soft", "450", False),
            ("reject_type temp_disconnect", "450", True),
        ]
        for args, code, closed in table:
            client = self.helo(args, {"badhelo": "aol.com"})
            self.assertRefused(client, "HELO aol.com",
                               "%s I do not believe you are aol.com.\r\n" % code, closed)
            if not closed:  # refused, not greeted: the client may try again
                self.assertAccepted(client, "HELO good.example")

    def test_failure_costs_karma(self):
        client = self.helo("reject_type perm", {"badhelo": "aol.com"})
        client.command("HELO aol.com")
        self.assertEqual(client.session.connection.notes["karma"], -1)
        client.command("HELO good.example")
        self.assertEqual(client.session.connection.notes["karma"], -1)

    def test_reject_0_only_logs(self):
        server, records = self.recording_server(["helo reject 0"], {"badhelo": "aol.com"})
        client = MemoryClient(server)
        self.assertEqual(client.command("HELO aol.com"), helo_ok())
        self.assertIn((codes.LOGINFO, "helo", "fail, tolerated, in badhelo"), records)
        self.assertEqual(client.session.connection.notes["karma"], -1)

    def test_reject_naughty_defers_to_naughty(self):
        client = self.client(["helo reject naughty", "naughty", "rcpt_ok"],
                             {"badhelo": "aol.com"})
        self.assertEqual(client.command("HELO aol.com"), helo_ok())
        notes = client.session.connection.notes
        self.assertEqual(notes["naughty"], "I do not believe you are aol.com.")
        self.assertEqual(notes["naughty_reject_type"], "disconnect")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), mail_ok("<a@b.example>"))
        self.assertEqual(client.command("RCPT TO:<u@example.com>"),
                         "550 I do not believe you are aol.com.\r\n")
        self.assertTrue(client.closed)

    def test_relay_clients_are_not_checked(self):
        client = self.client(["relay", "helo"], {"relayclients": "192.0.2.1",
                                                 "badhelo": "aol.com"})
        self.assertEqual(client.command("HELO aol.com"), helo_ok())
        self.assertNotIn("karma", client.session.connection.notes)

    def test_x_helo_header_added_at_the_top(self):
        client = self.helo()
        client.command("EHLO Good.Example")
        client.command("MAIL FROM:<a@b.example>")
        client.command("RCPT TO:<u@example.com>")
        reply = self.send_message(client, "X-HELO: forged.example\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
        self.assertEqual(reply, QUEUED)
        message = client.session.connection.notes["scripted_message"]
        self.assertTrue(message.startswith(b"X-HELO: Good.Example\nReceived: from Unknown "),
                        message)
        self.assertEqual(message.count(b"X-HELO"), 1)
        self.assertIn(b"\nSubject: x\n\nhi\n", message)

    def test_check_spamhelo_is_helo(self):
        client = self.helo("policy rfc reject_type perm", name="check_spamhelo")
        self.assertRefused(client, "HELO nodot",
                           "550 HELO name is not fully qualified. Read RFC 2821\r\n", False)
        self.assertEqual(client.session.server.plugins[0].name, "check_spamhelo")

    def test_bad_arguments(self):
        table = [
            ("helo policy lax", "plugin helo: policy must be one of lenient|rfc|strict, not 'lax'"),
            ("helo reject maybe", "plugin helo: reject must be 0, 1 or naughty, not 'maybe'"),
            ("helo reject_type never", "plugin helo: reject_type must be one of perm|hard|temp|"
                                       "soft|disconnect|temp_disconnect, not 'never'"),
            ("helo timeout soon", "plugin helo: timeout must be a positive number of seconds, "
                                  "not 'soon'"),
            ("helo dns_timeout 0", "plugin helo: timeout must be a positive number of seconds"),
            ("helo policy", "plugin helo: arguments must be key/value pairs"),
            ("helo colour red", "plugin helo: unknown argument 'colour'"),
            ("check_spamhelo policy lax", "plugin check_spamhelo: policy must be one of"),
        ]
        for line, expected in table:
            message = self.assertStartupError([line], expected)
            self.assertRegex(message, r"^/\S+/plugins:1: plugin ")

    def test_bad_badhelo_pattern_stops_startup(self):
        for pattern in ("^(unclosed", "[[:alpha:]]+", "*oops"):
            self.assertConfigLineError(["helo"], {"badhelo": "ok.example\n" + pattern},
                                       "badhelo", 2, "bad regular expression %r" % pattern)

    def test_nested_repeat_warns(self):
        _, records = self.recording_server(["helo"], {"badhelo": "# spam\n^(a+)+$\n^b+$"})
        warnings = [r for r in records if r[0] == codes.LOGWARN]
        self.assertEqual(len(warnings), 1, records)
        self.assertIn("/badhelo:2: pattern '^(a+)+$' repeats a repeat", warnings[0][2])


class EndToEndTests(EndToEndTestCase):
    async def test_helo_and_check_spamhelo(self):
        for name in ("helo", "check_spamhelo"):
            client, replies = await self.talk([name, "rcpt_ok"], {"badhelo": "aol.com"},
                                              ["HELO aol.com"])
            self.assertEqual(replies, [(550, ["I do not believe you are aol.com."])], name)
            await client.wait_closed()
        # the DNS tests ask the private DNS server, which refuses these names: skipped
        client, replies = await self.talk(["helo policy strict reject_type perm", "rcpt_ok"],
                                          {"dns_servers": private_dns().address},
                                          ["HELO nodot", "HELO [127.0.0.1]", "EHLO good.example"])
        self.assertEqual(replies, [
            (550, ["HELO name is not fully qualified. Read RFC 2821"]),
            (550, ["RFC 2821 allows an address literal, but we do not"]),
            (250, ["mx.example.org Hi Unknown [127.0.0.1]", "PIPELINING", "8BITMIME"])])
        self.assertFalse(client.closed)

    async def test_helo_x_helo_header(self):
        maildir = os.path.abspath(self.mktemp())
        client, replies = await self.talk(
            ["helo", "rcpt_ok", "queue/maildir %s" % maildir], {},
            ["EHLO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"])
        self.assertEqual(replies[-1], (354, ["go ahead"]))
        client.send("Subject: e2e\r\n\r\nbody\r\n.")
        code, _ = await client.reply()
        self.assertEqual(code, 250)
        [name] = os.listdir(os.path.join(maildir, "new"))
        with open(os.path.join(maildir, "new", name), "rb") as f:
            message = f.read()
        self.assertIn(b"X-HELO: client.example\nReceived: from Unknown (HELO client.example)",
                      message)
