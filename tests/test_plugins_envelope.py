"""The network-free envelope policy plugins and their old names.

helo (check_spamhelo), badmailfrom (check_badmailfrom, check_badmailfrom_patterns),
badmailfromto, bogus_bounce (check_bogus_bounce), dont_require_anglebrackets,
parse_addr_withhelo, badrcptto (check_badrcptto, check_badrcptto_patterns), rcpt_map and
rcpt_regexp.

Most rules are driven through a real SMTPProtocol on an in-memory transport (MemoryClient);
``EndToEndTests`` runs at least one case of every plugin over a loopback socket, and
``PerlComparisonTests`` checks the replies that are meant to equal qpsmtpd 0.94's against the
Perl server itself (skipped where it is not installed). Reply texts are qpsmtpd 0.94's, read
from /usr/share/qpsmtpd/plugins and probed on the Perl server; the intended differences are
documented in each plugin and tested here as such.
"""

import io
import os
import shutil
import socket
import tempfile

from twisted.trial import unittest

from qpsmtpd_tx import cli, codes
from tests.support import perl_qpsmtpd
from tests.support import harness
from tests.support.harness import MemoryClient, StartupErrorMixin, make_server, plugin_module, write_config
from tests.support.server import ConnectionClosed, connect, start_server

MESSAGE = "Subject: x\r\n\r\nbody\r\n.\r\n"
QUEUED = "250 Queued\r\n"


def helo_ok(ip="192.0.2.1"):
    return "250 mx.example.org Hi Unknown [%s]; I am so happy to meet you.\r\n" % ip


def mail_ok(address):
    return "250 %s, sender OK - how exciting to get mail from you!\r\n" % address


def rcpt_ok(address):
    return "250 %s, recipient ok\r\n" % address


def fake_transaction(remote_ip="192.0.2.1", local_ip="192.0.2.25"):
    """The kit's fake_transaction, on a connection to ``local_ip``."""
    return harness.fake_transaction(remote_ip, local_ip=local_ip)


class PluginTestCase(StartupErrorMixin, unittest.TestCase):
    """Helpers: a client on a fresh server, a log recorder, start-up error checks."""

    def client(self, plugins, files=None, remote_ip="192.0.2.1"):
        return MemoryClient(make_server(self, plugins, files), remote_ip=remote_ip)

    def recording_server(self, plugins, files=None):
        """A loaded server whose plugin log lines (start-up included) are kept in ``records``.

        Each record is ``(level, plugin name, message)``, kept whatever the log level.
        """
        server = make_server(self, plugins, files, load=False)
        records = []
        original = server.log

        def log(level, message, plugin=None, transaction=None, hook=None):
            records.append((level, plugin.name if plugin is not None else None, message))
            original(level, message, plugin=plugin, transaction=transaction, hook=hook)

        server.log = log
        server.load_plugins()
        return server, records

    def assertConfigLineError(self, plugins, files, name, lineno, expected):
        """A bad line of config file ``name`` stops start-up, naming that file and line."""
        message = self.assertStartupError(plugins, expected, files)
        self.assertRegex(message, r"^/\S+/plugins:1: plugin ")
        self.assertIn("/%s:%d: " % (name, lineno), message)

    def send_message(self, client, message=MESSAGE):
        self.assertEqual(client.command("DATA"), "354 go ahead\r\n")
        return client.send(message)


# -- helo -------------------------------------------------------------------------------------

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
        self.assertAccepted(self.helo("policy rfc"), "HELO good-name.example")
        self.assertAccepted(self.helo("policy rfc"), "HELO [192.0.2.1]")
        # lenient does not look at the form of the name
        self.assertAccepted(self.helo(), "HELO nodot")
        self.assertAccepted(self.helo("policy lenient"), "HELO bad_name.example")

    def test_rfc_policy_refuses_our_own_name(self):
        self.assertRefused(self.helo("policy rfc"), "HELO MX.example.org",
                           "550 I do not believe you are MX.example.org.\r\n")
        self.assertAccepted(self.helo("policy strict", remote_ip="127.0.0.1"),
                            "HELO mx.example.org", "127.0.0.1")
        self.assertAccepted(self.helo(), "HELO mx.example.org")

    def test_our_name_from_our_own_address(self):
        plugin = make_server(self, ["helo policy rfc"]).plugins[0]
        txn = fake_transaction("192.0.2.25", local_ip="192.0.2.25")
        self.assertIsNone(plugin.is_our_name(txn, "mx.example.org"))
        txn = fake_transaction("192.0.2.26", local_ip="192.0.2.25")
        self.assertEqual(plugin.is_our_name(txn, "mx.example.org."),
                         ("I do not believe you are mx.example.org..", "forged our own name"))

    def test_strict_policy_refuses_address_literals(self):
        self.assertRefused(self.helo("policy strict"), "HELO [192.0.2.1]",
                           "550 RFC 2821 allows an address literal, but we do not\r\n")
        self.assertRefused(self.helo("policy strict"), "HELO nodot",
                           "550 HELO name is not fully qualified. Read RFC 2821\r\n")
        self.assertAccepted(self.helo("policy strict"), "HELO good.example")

    def test_dns_tests_are_skipped_with_a_note(self):
        needs_dns = [(codes.LOGINFO, "helo", "%s: skip, needs DNS (not yet supported)" % test)
                     for test in ("no_forward_dns", "no_reverse_dns", "no_matching_dns")]
        for policy, expected in (("strict", needs_dns), ("rfc", needs_dns[:2]), ("lenient", [])):
            server, records = self.recording_server(["helo policy " + policy])
            client = MemoryClient(server)
            self.assertEqual(client.command("HELO good.example"), helo_ok())
            self.assertEqual([r for r in records if "needs DNS" in r[2]], expected, policy)
            self.assertIn((codes.LOGINFO, "helo", "pass"), records)

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
        self.assertAccepted(client, "HELO good.example")
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


# -- badmailfrom ------------------------------------------------------------------------------

BADMAILFROM = """\
# comments and blank lines are skipped

spammer@bad.example
@worse.example   Go away,  now
^Admin.*\\.PPOONN\\.com$   No admins
UPPER@CASE.example
"""


class BadMailFromTests(PluginTestCase):
    def mail(self, sender, args="", files=None, name="badmailfrom", plugins_before=()):
        """The reply to MAIL FROM:<sender> after HELO, and the client."""
        files = {"badmailfrom": BADMAILFROM} if files is None else files
        client = self.client(list(plugins_before) + [("%s %s" % (name, args)).strip(),
                                                     "rcpt_ok"], files)
        client.command("HELO c.example")
        return client.command("MAIL FROM:%s" % sender), client

    def test_exact_address(self):
        for sender in ("<spammer@bad.example>", "<Spammer@BAD.example>", "<upper@case.example>"):
            self.assertEqual(self.mail(sender)[0],
                             "550 Your envelope sender is in my badmailfrom list\r\n", sender)
        self.assertEqual(self.mail("<other@bad.example>")[0], mail_ok("<other@bad.example>"))

    def test_domain_with_reason(self):
        self.assertEqual(self.mail("<a@Worse.example>")[0], "550 Go away,  now\r\n")
        self.assertEqual(self.mail("<a@sub.worse.example>")[0], mail_ok("<a@sub.worse.example>"))

    def test_pattern(self):
        # case-insensitive: 0.94 never matched a pattern holding capitals
        for sender in ("<admin1@www.ppoonn.com>", "<ADMIN@WWW.PPOONN.COM>"):
            self.assertEqual(self.mail(sender)[0], "550 No admins\r\n", sender)
        self.assertEqual(self.mail("<xadmin@www.ppoonn.com>")[0],
                         mail_ok("<xadmin@www.ppoonn.com>"))

    def test_first_matching_line_wins(self):
        files = {"badmailfrom": "^nomatch\n@bad.example First\nspammer@bad.example Second"}
        self.assertEqual(self.mail("<spammer@bad.example>", files=files)[0], "550 First\r\n")

    def test_null_sender_and_senders_without_domain_pass(self):
        files = {"badmailfrom": "^"}  # a pattern matching every address
        self.assertEqual(self.mail("<>", files=files)[0], mail_ok("<>"))
        self.assertEqual(self.mail("<postmaster>", files=files)[0], mail_ok("<postmaster>"))
        self.assertEqual(self.mail("<x@y.example>", files=files)[0],
                         "550 Your envelope sender is in my badmailfrom list\r\n")

    def test_empty_or_missing_list(self):
        self.assertEqual(self.mail("<spammer@bad.example>", files={})[0],
                         mail_ok("<spammer@bad.example>"))

    def test_karma(self):
        _, client = self.mail("<spammer@bad.example>")
        self.assertEqual(client.session.connection.notes["karma"], -1)
        _, client = self.mail("<fine@good.example>")
        self.assertNotIn("karma", client.session.connection.notes)

    def test_reject_and_reject_type(self):
        table = [
            ("reject 1", "550 Your envelope sender is in my badmailfrom list\r\n", False),
            ("reject_type temp", "450 Your envelope sender is in my badmailfrom list\r\n", False),
            ("reject_type disconnect",
             "550 Your envelope sender is in my badmailfrom list\r\n", True),
            ("reject_type temp_disconnect",
             "421 Your envelope sender is in my badmailfrom list\r\n", True),
            ("reject 0", mail_ok("<spammer@bad.example>"), False),
        ]
        for args, reply, closed in table:
            got, client = self.mail("<spammer@bad.example>", args)
            self.assertEqual(got, reply, args)
            self.assertEqual(client.closed, closed, args)

    def test_reject_naughty(self):
        got, client = self.mail("<a@worse.example>", "reject naughty", plugins_before=["naughty"])
        self.assertEqual(got, mail_ok("<a@worse.example>"))
        self.assertEqual(client.session.connection.notes["naughty"], "Go away,  now")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "550 Go away,  now\r\n")
        self.assertTrue(client.closed)

    def test_relay_clients_are_not_checked(self):
        files = {"badmailfrom": BADMAILFROM, "relayclients": "192.0.2.1"}
        got, client = self.mail("<spammer@bad.example>", files=files, plugins_before=["relay"])
        self.assertEqual(got, mail_ok("<spammer@bad.example>"))

    def test_check_badmailfrom_is_badmailfrom(self):
        got, client = self.mail("<spammer@bad.example>", "reject_type temp",
                                name="check_badmailfrom")
        self.assertEqual(got, "450 Your envelope sender is in my badmailfrom list\r\n")
        self.assertEqual(self.mail("<a@worse.example>", name="check_badmailfrom")[0],
                         "550 Go away,  now\r\n")
        self.assertEqual(client.session.server.plugins[0].name, "check_badmailfrom")

    def test_check_badmailfrom_patterns_reads_its_own_file(self):
        files = {"badmailfrom_patterns": "^return.*@.*\\.pidplate\\.biz$\nfoo   Custom text",
                 "badmailfrom": "ok@x.example"}
        name = "check_badmailfrom_patterns"
        self.assertEqual(self.mail("<Return1@x.pidplate.biz>", files=files, name=name)[0],
                         "550 Your envelope sender is in my badmailfrom_patterns list\r\n")
        # every line is a pattern, even one without pattern characters
        self.assertEqual(self.mail("<myfoo@x.example>", files=files, name=name)[0],
                         "550 Custom text\r\n")
        self.assertEqual(self.mail("<ok@x.example>", files=files, name=name)[0],
                         mail_ok("<ok@x.example>"))
        got, client = self.mail("<myfoo@x.example>", "reject 0", files=files, name=name)
        self.assertEqual(got, mail_ok("<myfoo@x.example>"))
        self.assertEqual(client.session.connection.notes["karma"], -1)

    def test_bad_lines_stop_startup(self):
        self.assertConfigLineError(["badmailfrom"], {"badmailfrom": "a@b.example\nnobody  text"},
                                   "badmailfrom", 2,
                                   "'nobody' is not user@host, @host or a regular expression")
        self.assertConfigLineError(["check_badmailfrom"], {"badmailfrom": "^(x@"},
                                   "badmailfrom", 1, "bad regular expression '^(x@'")
        self.assertConfigLineError(["check_badmailfrom_patterns"],
                                   {"badmailfrom_patterns": "ok\n# c\n(x"},
                                   "badmailfrom_patterns", 3, "bad regular expression '(x'")

    def test_bad_arguments(self):
        table = [
            ("badmailfrom reject 2", "plugin badmailfrom: reject must be 0, 1 or naughty, not '2'"),
            ("badmailfrom reject_type sometimes", "plugin badmailfrom: reject_type must be one of"),
            ("badmailfrom reject", "plugin badmailfrom: arguments must be key/value pairs"),
            ("check_badmailfrom_patterns foo bar",
             "plugin check_badmailfrom_patterns: unknown argument 'foo'"),
        ]
        for line, expected in table:
            self.assertStartupError([line], expected)


# -- badmailfromto ----------------------------------------------------------------------------

BADMAILFROMTO = """\
stalker@example.net\tvictim@example.com
@spammy.example      sales@example.com   (a comment)
a@from.example u@example.com
@from.example v@example.com
both@x.example @example.com
"""


class BadMailFromToTests(PluginTestCase):
    def session(self, sender):
        client = self.client(["badmailfromto", "rcpt_ok"], {"badmailfromto": BADMAILFROMTO})
        client.command("HELO c.example")
        self.assertEqual(client.command("MAIL FROM:%s" % sender), mail_ok(sender))
        return client

    def test_pair_refused_and_others_pass(self):
        client = self.session("<Stalker@Example.NET>")
        self.assertEqual(client.command("RCPT TO:<Victim@example.com>"),
                         "550 mail to victim@example.com not accepted here\r\n")
        self.assertEqual(client.command("RCPT TO:<other@example.com>"),
                         rcpt_ok("<other@example.com>"))
        client = self.session("<other@example.net>")
        self.assertEqual(client.command("RCPT TO:<victim@example.com>"),
                         rcpt_ok("<victim@example.com>"))

    def test_sender_domain(self):
        client = self.session("<anyone@spammy.example>")
        self.assertEqual(client.command("RCPT TO:<sales@example.com>"),
                         "550 mail to sales@example.com not accepted here\r\n")
        self.assertEqual(client.command("RCPT TO:<support@example.com>"),
                         rcpt_ok("<support@example.com>"))

    def test_every_matching_sender_line_counts(self):
        # 0.94 kept only the last matching sender line: u@example.com got through.
        client = self.session("<a@from.example>")
        self.assertEqual(client.session.transaction.notes["badmailfromto_senders"],
                         ["@from.example", "a@from.example"])
        for rcpt in ("u@example.com", "v@example.com"):
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt),
                             "550 mail to %s not accepted here\r\n" % rcpt)

    def test_recipient_domain(self):
        client = self.session("<both@x.example>")
        self.assertEqual(client.command("RCPT TO:<Anyone@Example.com>"),
                         "550 mail to anyone@example.com not accepted here\r\n")
        self.assertEqual(client.command("RCPT TO:<postmaster>"), rcpt_ok("<postmaster>"))

    def test_null_sender_is_not_matched(self):
        client = self.session("<>")
        self.assertNotIn("badmailfromto_senders", client.session.transaction.notes)
        self.assertEqual(client.command("RCPT TO:<victim@example.com>"),
                         rcpt_ok("<victim@example.com>"))

    def test_bad_lines_stop_startup(self):
        self.assertConfigLineError(["badmailfromto"], {"badmailfromto": "a@b.example c@d.example\n"
                                                                        "lonely@example.com"},
                                   "badmailfromto", 2, "need a sender and a recipient")
        self.assertConfigLineError(["badmailfromto"],
                                   {"badmailfromto": "nobody victim@example.com"},
                                   "badmailfromto", 1, "'nobody' is not user@host or @host")
        self.assertStartupError(["badmailfromto now"],
                                "plugin badmailfromto: arguments must be key/value pairs")


# -- bogus_bounce -----------------------------------------------------------------------------

TOO_MANY = "fail, this bounce message does not have 1 recipient"
RETURN_PATH = "a bounce return path must be empty (RFC 3834)"


class BogusBounceTests(PluginTestCase):
    def deliver(self, args, sender="<>", recipients=("u@example.com",), message=MESSAGE,
                name="bogus_bounce", plugins_before=()):
        """The reply at the end of DATA, and the client."""
        client = self.client(list(plugins_before) + [("%s %s" % (name, args)).strip(),
                                                     "rcpt_ok", "scripted queue OK"])
        client.command("HELO c.example")
        self.assertEqual(client.command("MAIL FROM:%s" % sender), mail_ok(sender))
        for rcpt in recipients:
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt), rcpt_ok("<%s>" % rcpt))
        return self.send_message(client, message), client

    def test_bounce_to_several_recipients(self):
        two = ("u@example.com", "v@example.com")
        self.assertEqual(self.deliver("deny", recipients=two)[0], "552 %s\r\n" % TOO_MANY)
        self.assertEqual(self.deliver("denysoft", recipients=two)[0], "452 %s\r\n" % TOO_MANY)
        self.assertEqual(self.deliver("deny")[0], QUEUED)
        self.assertEqual(self.deliver("deny", sender="<a@b.example>", recipients=two)[0], QUEUED)

    def test_return_path_must_be_empty(self):
        def with_return_path(value):
            return "Return-Path: %s\r\n%s" % (value, MESSAGE)
        for value in ("<a@b.example>", "a@b.example"):
            self.assertEqual(self.deliver("deny", message=with_return_path(value))[0],
                             "552 %s\r\n" % RETURN_PATH, value)
        for value in ("<>", ""):
            self.assertEqual(self.deliver("deny", message=with_return_path(value))[0], QUEUED,
                             value)
        self.assertEqual(self.deliver("deny", sender="<a@b.example>",
                                      message=with_return_path("<x@y.example>"))[0], QUEUED)

    def test_log_only_by_default(self):
        two = ("u@example.com", "v@example.com")
        for args in ("", "log", "LOG", "action log", "deny reject 0"):
            self.assertEqual(self.deliver(args, recipients=two)[0], QUEUED, args)

    def test_reject_and_reject_type_override_the_action(self):
        two = ("u@example.com", "v@example.com")
        table = [
            ("action deny", "552"), ("action denysoft", "452"), ("log reject 1", "552"),
            ("denysoft reject_type perm", "552"), ("deny reject_type temp", "452"),
            ("action deny reject 1 reject_type soft", "452"),
        ]
        for args, code in table:
            self.assertEqual(self.deliver(args, recipients=two)[0],
                             "%s %s\r\n" % (code, TOO_MANY), args)
        reply, client = self.deliver("deny reject_type disconnect", recipients=two)
        self.assertEqual(reply, "552 %s\r\n" % TOO_MANY)
        self.assertTrue(client.closed)

    def test_reject_naughty(self):
        reply, client = self.deliver("deny reject naughty",
                                     recipients=("u@example.com", "v@example.com"))
        self.assertEqual(reply, QUEUED)
        self.assertEqual(client.session.connection.notes["naughty"], TOO_MANY)

    def test_check_bogus_bounce_is_bogus_bounce(self):
        reply, client = self.deliver("denysoft", recipients=("u@example.com", "v@example.com"),
                                     name="check_bogus_bounce")
        self.assertEqual(reply, "452 %s\r\n" % TOO_MANY)
        self.assertEqual(client.session.server.plugins[0].name, "check_bogus_bounce")

    def test_bad_arguments(self):
        table = [
            ("bogus_bounce reject", "the action must be log, deny or denysoft, not 'reject'"),
            ("bogus_bounce bounce", "the action must be log, deny or denysoft, not 'bounce'"),
            ("bogus_bounce deny action log", "the action is given twice: 'deny' and action 'log'"),
            ("bogus_bounce deny reject 5", "reject must be 0, 1 or naughty, not '5'"),
            ("bogus_bounce reject_type later", "reject_type must be one of"),
            ("bogus_bounce foo bar", "unknown argument 'foo'"),
        ]
        for line, expected in table:
            self.assertStartupError([line], ":1: plugin bogus_bounce: " + expected)
        self.assertStartupError(["check_bogus_bounce deny deny"],
                                ":1: plugin check_bogus_bounce: unknown argument 'deny'")


# -- dont_require_anglebrackets ---------------------------------------------------------------

class DontRequireAnglebracketsTests(PluginTestCase):
    def test_bare_addresses_are_wrapped(self):
        client = self.client(["dont_require_anglebrackets", "rcpt_ok"])
        client.command("EHLO c.example")
        self.assertEqual(client.command("MAIL FROM:a@b.example"), mail_ok("<a@b.example>"))
        self.assertEqual(client.session.connection.notes["karma"], -2)
        self.assertEqual(client.command("RCPT TO:u@example.com"), rcpt_ok("<u@example.com>"))
        self.assertEqual(client.command("RCPT TO:postmaster"), rcpt_ok("<postmaster>"))
        self.assertEqual(client.session.connection.notes["karma"], -6)
        self.assertEqual(client.command("RCPT TO:<v@example.com>"), rcpt_ok("<v@example.com>"))
        self.assertEqual(client.command("MAIL FROM:<c@d.example>"), mail_ok("<c@d.example>"))
        self.assertEqual(client.command("MAIL FROM:"), mail_ok("<>"))
        self.assertEqual(client.session.connection.notes["karma"], -6)

    def test_without_the_plugin_brackets_are_required(self):
        client = self.client(["rcpt_ok"])
        client.command("EHLO c.example")
        self.assertEqual(client.command("MAIL FROM:a@b.example"),
                         "501 could not parse your mail from command\r\n")
        client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(client.command("RCPT TO:u@example.com"),
                         "501 could not parse recipient\r\n")

    def test_what_is_still_no_address_is_refused(self):
        client = self.client(["dont_require_anglebrackets", "rcpt_ok"])
        client.command("EHLO c.example")
        self.assertEqual(client.command("MAIL FROM:<a@b.example"),
                         "501 could not parse your mail from command\r\n")
        self.assertEqual(client.command("MAIL FROM:a@b.example c@d.example"),
                         "501 Syntax error in parameters\r\n")

    def test_bracketed_addresses_go_to_the_next_plugin(self):
        client = self.client(["dont_require_anglebrackets", "scripted mail_pre OK <x@y.example>",
                              "rcpt_ok"])
        client.command("EHLO c.example")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), mail_ok("<x@y.example>"))

    def test_takes_no_arguments(self):
        self.assertStartupError(["dont_require_anglebrackets yes"],
                                ":1: plugin dont_require_anglebrackets: arguments must be "
                                "key/value pairs")


# -- parse_addr_withhelo ----------------------------------------------------------------------

class ParseAddrWithHeloTests(PluginTestCase):
    def session(self, greeting="HELO c.example", plugins=("parse_addr_withhelo", "rcpt_ok")):
        client = self.client(list(plugins))
        client.command(greeting)
        return client

    def test_no_parameters_after_helo(self):
        client = self.session()
        table = [
            ("MAIL FROM:<a@b.example> SIZE=10", "501 No parameters allowed in MAIL\r\n"),
            ("MAIL FROM:a@b.example SIZE=10", "501 No parameters allowed in MAIL\r\n"),
            ("MAIL FROM:<a@b.example>x", "501 No parameters allowed in MAIL\r\n"),
            ("MAIL FROM:foo", "501 Could not parse your MAIL FROM command\r\n"),
            ("MAIL FROM :<a@b.example>", "501 Syntax error in command\r\n"),
            ("MAIL FROM:a@b.example", "501 could not parse your mail from command\r\n"),
            ("MAIL FROM:", mail_ok("<>")),
            ("MAIL FROM: <a@b.example>  ", mail_ok("<a@b.example>")),
            ("RCPT TO:<u@example.com> NOTIFY=NEVER", "501 No parameters allowed in RCPT\r\n"),
            ("RCPT TO:foo", "501 Could not parse your RCPT TO command\r\n"),
            ("RCPT TO <u@example.com>", "501 Syntax error in command\r\n"),
            ("RCPT TO:postmaster", "501 could not parse recipient\r\n"),
            ("RCPT TO:<u@example.com>", rcpt_ok("<u@example.com>")),
            ("RCPT TO:<Postmaster>", rcpt_ok("<postmaster>")),
        ]
        for line, reply in table:
            self.assertEqual(client.command(line), reply, line)

    def test_with_dont_require_anglebrackets(self):
        client = self.session(plugins=("parse_addr_withhelo", "dont_require_anglebrackets",
                                       "rcpt_ok"))
        self.assertEqual(client.command("MAIL FROM:a@b.example"), mail_ok("<a@b.example>"))
        self.assertEqual(client.command("RCPT TO:postmaster"), rcpt_ok("<postmaster>"))
        self.assertEqual(client.command("RCPT TO:u@example.com"), rcpt_ok("<u@example.com>"))

    def test_parameters_allowed_after_ehlo(self):
        client = self.session("EHLO c.example")
        self.assertEqual(client.command("MAIL FROM:<a@b.example> SIZE=10"),
                         mail_ok("<a@b.example>"))
        self.assertEqual(client.command("RCPT TO:<u@example.com> NOTIFY=NEVER"),
                         rcpt_ok("<u@example.com>"))

    def test_parse(self):
        parse = plugin_module("parse_addr_withhelo").parse
        table = [
            ("mail", "FROM:<a@b.example>", (codes.OK, ("<a@b.example>", {}))),
            ("mail", "from:   <a@b.example>  ", (codes.OK, ("<a@b.example>", {}))),
            ("mail", "FROM:<a@b> <c@d>", (codes.OK, ("<a@b> <c@d>", {}))),
            ("mail", "FROM:a@b.example", (codes.OK, ("a@b.example", {}))),
            ("mail", "FROM:", (codes.OK, ("<>", {}))),
            ("mail", "FROM:<a@b.example> BODY=8BITMIME",
             (codes.DENY, "No parameters allowed in MAIL")),
            ("mail", "TO:<a@b.example>", (codes.DENY, "Syntax error in command")),
            ("rcpt", "To:POSTMASTER", (codes.OK, ("POSTMASTER", {}))),
            ("rcpt", "TO:", (codes.DENY, "Could not parse your RCPT TO command")),
            ("rcpt", "TO:x@y z", (codes.DENY, "No parameters allowed in RCPT")),
        ]
        for kind, line, expected in table:
            self.assertEqual(parse(kind, line), expected, line)

    def test_takes_no_arguments(self):
        self.assertStartupError(["parse_addr_withhelo 1"],
                                ":1: plugin parse_addr_withhelo: arguments must be key/value pairs")


# -- badrcptto --------------------------------------------------------------------------------

BADRCPTTO = """\
bad@example.com
@badhost.example   nope, gone
^x\\D+@example\\.com$
"""


class BadRcptToTests(PluginTestCase):
    def session(self, files=None, name="badrcptto", plugins_before=()):
        files = {"badrcptto": BADRCPTTO} if files is None else files
        client = self.client(list(plugins_before) + [name, "rcpt_ok"], files)
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        return client

    def test_address(self):
        client = self.session()
        for rcpt in ("bad@example.com", "BAD@Example.COM"):
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt),
                             "550 mail to bad@example.com not accepted here (#5.1.1)\r\n")
        self.assertEqual(client.command("RCPT TO:<good@example.com>"),
                         rcpt_ok("<good@example.com>"))
        self.assertFalse(client.closed)

    def test_domain_with_reason(self):
        # 0.94 dropped the reason: "550 mail to @badhost.example not accepted here"
        client = self.session(files={"badrcptto": BADRCPTTO, "rcpthosts": "badhost.example"})
        self.assertEqual(client.command("RCPT TO:<x@BadHost.example>"), "550 nope, gone\r\n")
        self.assertEqual(client.command("RCPT TO:<x@sub.badhost.example>"),
                         "550 Relaying denied (#5.7.1)\r\n")

    def test_pattern_used_as_written(self):
        # 0.94 lower-cased the pattern: \D became \d and the rule meant the opposite
        client = self.session()
        self.assertEqual(client.command("RCPT TO:<Xyz@example.com>"),
                         "550 mail to ^x\\D+@example\\.com$ not accepted here (#5.1.1)\r\n")
        self.assertEqual(client.command("RCPT TO:<x12@example.com>"), rcpt_ok("<x12@example.com>"))

    def test_recipients_without_domain_pass(self):
        client = self.session(files={"badrcptto": "^"})
        self.assertEqual(client.command("RCPT TO:<postmaster>"), rcpt_ok("<postmaster>"))
        self.assertEqual(client.command("RCPT TO:<u@example.com>"),
                         "550 mail to ^ not accepted here (#5.1.1)\r\n")

    def test_empty_list(self):
        client = self.session(files={})
        self.assertEqual(client.command("RCPT TO:<bad@example.com>"), rcpt_ok("<bad@example.com>"))

    def test_karma(self):
        client = self.session()
        client.command("RCPT TO:<bad@example.com>")
        client.command("RCPT TO:<good@example.com>")
        client.command("RCPT TO:<x@badhost.example>")
        self.assertEqual(client.session.connection.notes["karma"], -4)

    def test_relay_clients_are_not_checked(self):
        client = self.session(files={"badrcptto": BADRCPTTO, "relayclients": "192.0.2.1"},
                              plugins_before=["relay"])
        self.assertEqual(client.command("RCPT TO:<bad@example.com>"), rcpt_ok("<bad@example.com>"))

    def test_check_badrcptto_is_badrcptto(self):
        client = self.session(name="check_badrcptto")
        self.assertEqual(client.command("RCPT TO:<bad@example.com>"),
                         "550 mail to bad@example.com not accepted here (#5.1.1)\r\n")
        self.assertEqual(client.command("RCPT TO:<ok@example.com>"), rcpt_ok("<ok@example.com>"))

    def test_check_badrcptto_patterns_reads_its_own_file(self):
        files = {"badrcptto_patterns": "[!%]   No bang paths\nzz", "badrcptto": "ok@example.com"}
        client = self.session(files=files, name="check_badrcptto_patterns")
        self.assertEqual(client.command("RCPT TO:<a%b@example.com>"), "550 No bang paths\r\n")
        self.assertEqual(client.command("RCPT TO:<fuzz@example.com>"),
                         "550 mail to zz not accepted here (#5.1.1)\r\n")
        self.assertEqual(client.command("RCPT TO:<ok@example.com>"), rcpt_ok("<ok@example.com>"))
        self.assertEqual(client.session.connection.notes["karma"], -4)

    def test_a_bad_edit_keeps_the_previous_list(self):
        # badmailfrom's list code, which badrcptto shares (ListFile)
        for name, first, command, refused in (
                ("badmailfrom", "x@bad.example", "MAIL FROM:<x@bad.example>", "550 Your envelope"),
                ("badrcptto", "x@example.com", "RCPT TO:<x@example.com>", "550 mail to x@")):
            server, records = self.recording_server([name, "rcpt_ok"], {name: first})
            with open(server.config.path_of(name), "w") as f:
                f.write("not-an-address\n")
            server.config.clear_cache()          # as SIGHUP does
            client = MemoryClient(server)
            client.command("HELO c.example")
            if name == "badrcptto":
                client.command("MAIL FROM:<a@b.example>")
            self.assertTrue(client.command(command).startswith(refused), name)
            errors = [r[2] for r in records if r[0] == codes.LOGERROR]
            self.assertEqual(len(errors), 1, records)
            self.assertIn("%s not reloaded, keeping the previous list: " % name, errors[0])

    def test_bad_lines_and_arguments_stop_startup(self):
        self.assertConfigLineError(["badrcptto"], {"badrcptto": "bad@example.com\n\nnobody"},
                                   "badrcptto", 3,
                                   "'nobody' is not user@host, @host or a regular expression")
        self.assertConfigLineError(["check_badrcptto"], {"badrcptto": "x+(@"},
                                   "badrcptto", 1, "bad regular expression 'x+(@'")
        self.assertConfigLineError(["check_badrcptto_patterns"], {"badrcptto_patterns": "a)"},
                                   "badrcptto_patterns", 1, "bad regular expression 'a)'")
        self.assertStartupError(["badrcptto reject 1"],
                                ":1: plugin badrcptto: unknown argument 'reject'")


# -- rcpt_regexp ------------------------------------------------------------------------------

RCPT_REGEXP = """\
# rcpt_regexp - config for rcpt_regexp plugin
me@myhost.org           OK       Accepting mail
/^USER\\d+@doma\\.in$/   OK       Accepting mail
info@myhost.org         DENY     User not found.
/^unused@.*/            DENY_DISCONNECT  Gone.
/^fall@/                DECLINED Fall through to the next plugin
/^nocomment@/           DENY
/^soft@/                DENYSOFT later   please
/^num@/                 902      by number
lower@x.example         deny     lower case
/foo/i                  DENY     not a pattern: compared as an address
"""


class RcptRegexpTests(PluginTestCase):
    def session(self, files=None):
        files = {"rcpt_regexp": RCPT_REGEXP} if files is None else files
        client = self.client(["rcpt_regexp", "rcpt_ok"], files)
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        return client

    def test_rules(self):
        client = self.session()
        table = [
            ("me@myhost.org", rcpt_ok("<me@myhost.org>")),      # rcpt_ok would refuse it
            ("User12@Doma.in", rcpt_ok("<User12@Doma.in>")),
            ("Info@MyHost.org", "550 User not found.\r\n"),
            ("fall@elsewhere.example", "550 Relaying denied (#5.7.1)\r\n"),  # rcpt_ok decides
            ("fall@example.com", rcpt_ok("<fall@example.com>")),
            ("nocomment@x.example", "550 relaying denied\r\n"),
            ("soft@x.example", "450 later   please\r\n"),
            ("num@x.example", "450 by number\r\n"),
            ("lower@x.example", "550 lower case\r\n"),
            ("foo@x.example", "550 Relaying denied (#5.7.1)\r\n"),
            ("other@example.com", rcpt_ok("<other@example.com>")),
            ("postmaster", rcpt_ok("<postmaster>")),
        ]
        for rcpt, reply in table:
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt), reply, rcpt)
        self.assertFalse(client.closed)
        self.assertEqual(client.command("RCPT TO:<unused@x.example>"), "550 Gone.\r\n")
        self.assertTrue(client.closed)

    def test_an_ok_rule_does_not_accept_routing_local_parts(self):
        # A broad OK rule would hand <victim%evil.example@example.com> to a back end that
        # relays it (see RcptOkTests); rcpt_ok is not even loaded here.
        client = self.client(["rcpt_regexp"], {"rcpt_regexp": "/@example\\.com$/ OK"})
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        for address, _ in ROUTING_RECIPIENTS[:5]:
            self.assertEqual(client.command("RCPT TO:%s" % address), DENIED, address)
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), rcpt_ok("<u@example.com>"))
        relay = self.client(["relay", "rcpt_regexp"], {"relayclients": "192.0.2.1",
                                                       "rcpt_regexp": "/@example\\.com$/ OK"})
        relay.command("HELO c.example")
        relay.command("MAIL FROM:<a@b.example>")
        self.assertRegex(relay.command("RCPT TO:<victim%evil.example@example.com>"), "^250 ")

    def test_first_matching_line_wins(self):
        client = self.session({"rcpt_regexp": "/^a/ DENY first\na@example.com OK second"})
        self.assertEqual(client.command("RCPT TO:<a@example.com>"), "550 first\r\n")

    def test_no_file_declines(self):
        client = self.session({})
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), rcpt_ok("<u@example.com>"))

    def test_bad_lines_stop_startup(self):
        table = [
            ("ok@x.example OK\nlonely@x.example", 2, "no return code after 'lonely@x.example'"),
            ("/x/ MAYBE text", 1, "'MAYBE' is not a return code a rcpt rule can give"),
            ("/x/ DONE", 1, "'DONE' is not a return code a rcpt rule can give"),
            ("/x/ YIELD", 1, "'YIELD' is not a return code a rcpt rule can give"),
            ("# c\n/^(x/ DENY", 2, "bad regular expression '^(x'"),
        ]
        for text, lineno, expected in table:
            self.assertConfigLineError(["rcpt_regexp"], {"rcpt_regexp": text}, "rcpt_regexp",
                                       lineno, expected)
        self.assertStartupError(["rcpt_regexp foo bar"],
                                ":1: plugin rcpt_regexp: unknown argument 'foo'")


# -- rcpt_map ---------------------------------------------------------------------------------

MAP = """\
# example_com_map - config for rcpt_map
me@example.com OK
you@example.com      OK      fine
Info@example.com DENY User not found.
soft@example.com DENYSOFT_DISCONNECT bye
next@example.com DECLINED

  other@elsewhere.example DENY not my domain
"""


class RcptMapTests(PluginTestCase):
    def map_file(self, text=MAP):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        return path

    def session(self, args, files=None):
        client = self.client(["rcpt_map " + args, "rcpt_ok"], files)
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        return client

    def test_map(self):
        client = self.session("domain Example.COM file %s" % self.map_file())
        table = [
            ("me@example.com", rcpt_ok("<me@example.com>")),
            ("you@example.com", rcpt_ok("<you@example.com>")),
            ("info@example.com", "550 User not found.\r\n"),
            ("INFO@Example.com", "550 User not found.\r\n"),
            ("nobody@example.com", "550 No such user.\r\n"),
            ("next@example.com", rcpt_ok("<next@example.com>")),     # DECLINED: rcpt_ok decides
            ("other@elsewhere.example", "550 Relaying denied (#5.7.1)\r\n"),  # not our domain
            ("postmaster", rcpt_ok("<postmaster>")),
        ]
        for rcpt, reply in table:
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt), reply, rcpt)
        self.assertFalse(client.closed)
        self.assertEqual(client.command("RCPT TO:<soft@example.com>"), "421 bye\r\n")
        self.assertTrue(client.closed)

    def test_default(self):
        path = self.map_file()
        table = [
            ("default DENYSOFT=Try_again_later", "450 Try again later\r\n"),
            ("default denysoft", "450 No such user.\r\n"),
            ("default 901=a=b", "550 a=b\r\n"),
            ("default OK", rcpt_ok("<nobody@example.com>")),
            ("default DECLINED", rcpt_ok("<nobody@example.com>")),
        ]
        for args, reply in table:
            client = self.session("domain example.com file %s %s" % (path, args))
            self.assertEqual(client.command("RCPT TO:<nobody@example.com>"), reply, args)
            self.assertEqual(client.command("RCPT TO:<info@example.com>"),
                             "550 User not found.\r\n")

    def test_default_ok_does_not_accept_routing_local_parts(self):
        client = self.client(["rcpt_map domain example.com file %s default OK" % self.map_file()])
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        for address, _ in ROUTING_RECIPIENTS[:5]:
            self.assertEqual(client.command("RCPT TO:%s" % address), DENIED, address)
        self.assertEqual(client.command("RCPT TO:<nobody@example.com>"),
                         rcpt_ok("<nobody@example.com>"))

    def test_relative_file_is_looked_up_as_config(self):
        client = self.session("domain example.com file map_example", {"map_example": MAP})
        self.assertEqual(client.command("RCPT TO:<info@example.com>"), "550 User not found.\r\n")

    def test_two_instances_two_maps(self):
        client = self.client([
            "rcpt_map domain a.example file %s" % self.map_file("x@a.example DENY from map a"),
            "rcpt_map:1 domain b.example file %s" % self.map_file("x@b.example DENY from map b"),
            "rcpt_ok"], {"rcpthosts": "a.example\nb.example"})
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(client.command("RCPT TO:<x@a.example>"), "550 from map a\r\n")
        self.assertEqual(client.command("RCPT TO:<x@b.example>"), "550 from map b\r\n")
        self.assertEqual(client.command("RCPT TO:<y@b.example>"), "550 No such user.\r\n")

    def test_map_read_again_when_changed(self):
        path = self.map_file("x@example.com DENY old text")
        server, records = self.recording_server(["rcpt_map domain example.com file %s" % path,
                                                 "rcpt_ok"])

        def answer():
            client = MemoryClient(server)
            client.command("HELO c.example")
            client.command("MAIL FROM:<a@b.example>")
            return client.command("RCPT TO:<x@example.com>")

        self.assertEqual(answer(), "550 old text\r\n")
        with open(path, "w") as f:
            f.write("x@example.com DENYSOFT new text, longer\n")
        self.assertEqual(answer(), "450 new text, longer\r\n")
        with open(path, "w") as f:
            f.write("x@example.com MAYBE broken map, a bit longer\n")
        self.assertEqual(answer(), "450 new text, longer\r\n")
        errors = [r for r in records if r[0] == codes.LOGERROR]
        self.assertEqual(len(errors), 1, records)
        self.assertIn("keeping the previous map: %s:1: 'MAYBE' is not a return code" % path,
                      errors[0][2])

    def test_bad_arguments(self):
        path = self.map_file()
        table = [
            ("rcpt_map file %s" % path, "no domain given (domain NAME)"),
            ("rcpt_map domain example.com", "no map file given (file PATH)"),
            ("rcpt_map domain example.com file /nonexistent/map",
             "cannot read map file /nonexistent/map: No such file or directory"),
            ("rcpt_map domain example.com file %s default MAYBE=x" % path,
             "default: 'MAYBE' is not a return code a rcpt map can give"),
            ("rcpt_map domain example.com file %s default DONE" % path,
             "default: 'DONE' is not a return code a rcpt map can give"),
            ("rcpt_map domain example.com file %s colour red" % path, "unknown argument 'colour'"),
        ]
        for line, expected in table:
            self.assertStartupError([line], ":1: plugin rcpt_map: " + expected)

    def test_bad_map_lines_stop_startup(self):
        table = [
            ("a@example.com OK\nb@example.com", 2, "no return code after 'b@example.com'"),
            ("a@example.com MAYBE", 1, "'MAYBE' is not a return code a rcpt map can give"),
            ("# only a comment\n\n", None, "empty map file"),
        ]
        for text, lineno, expected in table:
            path = self.map_file(text)
            where = "%s:%d: " % (path, lineno) if lineno else "empty map file %s" % path
            message = self.assertStartupError(["rcpt_map domain example.com file %s" % path],
                                              expected)
            self.assertIn(where, message)
            self.assertRegex(message, r"^/\S+/plugins:1: plugin rcpt_map: ")


# -- rcpt_ok ----------------------------------------------------------------------------------

#: local parts a mail router sends elsewhere (Postfix's defaults: percent hack, bang path,
#: dequoted "@"); test_queue_postfix shows a real Postfix doing it
ROUTING_RECIPIENTS = [
    ("<victim%evil.example@example.com>", "%"),
    ("<evil.example!victim@example.com>", "!"),
    ('<"victim@evil.example"@example.com>', "@"),
    ('<"victim%evil.example"@example.com>', "%"),
    ('<"evil.example!victim"@Example.COM>', "!"),
    ("<victim%evil.example@mx.example.org>", "%"),
]
DENIED = "550 Relaying denied (#5.7.1)\r\n"


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


# -- over a real socket -----------------------------------------------------------------------

class EndToEndTests(unittest.TestCase):
    """One session per plugin (and per old name) through a loopback TCP connection."""

    async def talk(self, plugins, files, lines):
        """Send ``lines`` one by one; return the client and the replies (code, [texts])."""
        _, port = start_server(self, plugins, files)
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        replies = []
        for line in lines:
            replies.append(await client.command(line))
        return client, replies

    async def test_helo_and_check_spamhelo(self):
        for name in ("helo", "check_spamhelo"):
            client, replies = await self.talk([name, "rcpt_ok"], {"badhelo": "aol.com"},
                                              ["HELO aol.com"])
            self.assertEqual(replies, [(550, ["I do not believe you are aol.com."])], name)
            await client.wait_closed()
        client, replies = await self.talk(["helo policy strict reject_type perm", "rcpt_ok"], {},
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

    async def test_badmailfrom_and_its_old_names(self):
        files = {"badmailfrom": "@bad.example go away", "badmailfrom_patterns": "^spam"}
        for name, sender, reply in [
                ("badmailfrom", "<x@bad.example>", "go away"),
                ("check_badmailfrom", "<x@bad.example>", "go away"),
                ("check_badmailfrom_patterns", "<spammer@x.example>",
                 "Your envelope sender is in my badmailfrom_patterns list")]:
            _, replies = await self.talk([name, "rcpt_ok"], files,
                                         ["HELO c.example", "MAIL FROM:%s" % sender,
                                          "MAIL FROM:<ok@good.example>"])
            self.assertEqual(replies[1:], [
                (550, [reply]),
                (250, ["<ok@good.example>, sender OK - how exciting to get mail from you!"])], name)

    async def test_badmailfromto(self):
        _, replies = await self.talk(["badmailfromto", "rcpt_ok"],
                                     {"badmailfromto": "a@b.example\tu@example.com"},
                                     ["HELO c.example", "MAIL FROM:<a@b.example>",
                                      "RCPT TO:<u@example.com>", "RCPT TO:<v@example.com>"])
        self.assertEqual(replies[2:], [(550, ["mail to u@example.com not accepted here"]),
                                       (250, ["<v@example.com>, recipient ok"])])

    async def test_bogus_bounce_and_check_bogus_bounce(self):
        for name, code in (("bogus_bounce deny", 552), ("check_bogus_bounce denysoft", 452)):
            client, replies = await self.talk(
                [name, "rcpt_ok", "scripted queue OK"], {},
                ["HELO c.example", "MAIL FROM:<>", "RCPT TO:<u@example.com>",
                 "RCPT TO:<v@example.com>", "DATA"])
            self.assertEqual(replies[-1], (354, ["go ahead"]))
            client.send("Subject: bounce\r\n\r\nbody\r\n.")
            self.assertEqual(await client.reply(),
                             (code, ["fail, this bounce message does not have 1 recipient"]))

    async def test_dont_require_anglebrackets(self):
        _, replies = await self.talk(["dont_require_anglebrackets", "rcpt_ok"], {},
                                     ["EHLO c.example", "MAIL FROM:a@b.example",
                                      "RCPT TO:u@example.com"])
        self.assertEqual(replies[1:], [
            (250, ["<a@b.example>, sender OK - how exciting to get mail from you!"]),
            (250, ["<u@example.com>, recipient ok"])])

    async def test_parse_addr_withhelo(self):
        _, replies = await self.talk(["parse_addr_withhelo", "rcpt_ok"], {},
                                     ["HELO c.example", "MAIL FROM:<a@b.example> SIZE=100",
                                      "MAIL FROM:<a@b.example>",
                                      "RCPT TO:<u@example.com> NOTIFY=NEVER"])
        self.assertEqual(replies[1:], [
            (501, ["No parameters allowed in MAIL"]),
            (250, ["<a@b.example>, sender OK - how exciting to get mail from you!"]),
            (501, ["No parameters allowed in RCPT"])])

    async def test_badrcptto_and_its_old_names(self):
        files = {"badrcptto": "bad@example.com", "badrcptto_patterns": "^bad  pattern says no"}
        not_here = "mail to bad@example.com not accepted here (#5.1.1)"
        for name, reply in [("badrcptto", not_here), ("check_badrcptto", not_here),
                            ("check_badrcptto_patterns", "pattern says no")]:
            _, replies = await self.talk([name, "rcpt_ok"], files,
                                         ["HELO c.example", "MAIL FROM:<a@b.example>",
                                          "RCPT TO:<bad@example.com>", "RCPT TO:<u@example.com>"])
            self.assertEqual(replies[2:], [(550, [reply]),
                                           (250, ["<u@example.com>, recipient ok"])], name)

    async def test_rcpt_map(self):
        _, replies = await self.talk(["rcpt_map domain example.com file map_example", "rcpt_ok"],
                                     {"map_example": "u@example.com OK\n"},
                                     ["HELO c.example", "MAIL FROM:<a@b.example>",
                                      "RCPT TO:<u@example.com>", "RCPT TO:<v@example.com>"])
        self.assertEqual(replies[2:], [(250, ["<u@example.com>, recipient ok"]),
                                       (550, ["No such user."])])

    async def test_rcpt_regexp(self):
        _, replies = await self.talk(["rcpt_regexp", "rcpt_ok"],
                                     {"rcpt_regexp": "/^v@/ DENYSOFT come back later"},
                                     ["HELO c.example", "MAIL FROM:<a@b.example>",
                                      "RCPT TO:<u@example.com>", "RCPT TO:<V@example.com>"])
        self.assertEqual(replies[2:], [(250, ["<u@example.com>, recipient ok"]),
                                       (450, ["come back later"])])


# -- documentation ----------------------------------------------------------------------------

PLUGINS = ["helo", "badmailfrom", "badmailfromto", "bogus_bounce", "dont_require_anglebrackets",
           "parse_addr_withhelo", "badrcptto", "rcpt_map", "rcpt_regexp",
           "check_badmailfrom_patterns", "check_badrcptto_patterns"]
ALIASES = {"check_spamhelo": "helo", "check_badmailfrom": "badmailfrom",
           "check_bogus_bounce": "bogus_bounce", "check_badrcptto": "badrcptto"}


class DocumentationTests(unittest.TestCase):
    def run_cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(["plugins"] + list(argv), out=out, err=err)
        self.assertIn(status, (0, None), err.getvalue())
        return out.getvalue()

    def test_listed_with_a_summary(self):
        listing = {line.split()[0]: line.split(None, 1)[1]
                   for line in self.run_cli().splitlines() if line.strip()}
        for name in PLUGINS:
            self.assertNotIn(listing[name], ("", "alias of"), name)
        for alias, target in ALIASES.items():
            self.assertEqual(listing[alias], "alias of %s" % target)

    def test_every_plugin_documents_its_parts(self):
        for name in PLUGINS:
            doc = self.run_cli("doc", name)
            for part in ("Arguments", "Replies"):
                self.assertIn(part, doc, name)
        for alias, target in ALIASES.items():
            self.assertIn("%s is an alias of %s" % (alias, target), self.run_cli("doc", alias))


# -- against qpsmtpd 0.94 itself --------------------------------------------------------------

PERL_PLUGINS = [
    "check_spamhelo", "parse_addr_withhelo", "dont_require_anglebrackets", "check_badmailfrom",
    "badmailfromto", "check_badrcptto", "rcpt_regexp", "rcpt_map domain example.com file MAP",
    "bogus_bounce action deny reject 1", "rcpt_ok",
]
PERL_FILES = {
    "badhelo": "aol.com\n",
    "badmailfrom": "spammer@bad.example\n@worse.example Go away now\n",
    "badmailfromto": "stalker@example.net\tvictim@example.com\n",
    "badrcptto": "bad@example.com\n",
    "rcpt_regexp": "info@myhost.org  DENY  User not found.\n/^soft@/  DENYSOFT later please\n",
}
# Lines written so that 0.94's map reader takes them (single spaces, each with a text).
PERL_MAP = "you@example.com OK fine\ninfo@example.com DENY User not found.\n"
PERL_SESSIONS = [
    ["HELO aol.com"],
    ["HELO 192.0.2.1"],
    ["HELO [192.0.2.9]"],
    ["HELO localhost", "MAIL FROM:<spammer@bad.example>", "MAIL FROM:<a@worse.example>",
     "MAIL FROM:<a@b.example> SIZE=10", "MAIL FROM:x@y.example", "MAIL FROM:<stalker@example.net>",
     "RCPT TO:<victim@example.com>", "RCPT TO:<bad@example.com>", "RCPT TO:<info@myhost.org>",
     "RCPT TO:<soft@x.example>", "RCPT TO:<you@example.com>", "RCPT TO:<info@example.com>",
     "RCPT TO:<nobody@example.com>", "RCPT TO:u@example.com", "MAIL FROM:<>",
     "RCPT TO:<you@example.com>", "DATA",
     "Return-Path: <a@b.example>\r\nSubject: x\r\n\r\nbody\r\n.", "MAIL FROM:<>",
     "RCPT TO:<you@example.com>", "DATA", "Subject: x\r\n\r\nbody\r\n.", "QUIT"],
    ["HELO c.example", "MAIL FROM:<a@b.example>", "RCPT TO:<abuse>", "RCPT TO:<Abuse>",
     "RCPT TO:<postmaster>", "RCPT TO:<abuse@mx.example.org>", "QUIT"],
]


def perl_session(port, lines):
    """Replies of the Perl server as (code, [texts]), then ``closed`` when it hangs up.

    Every session must end with the server closing the connection (a refusal that
    disconnects, or QUIT).
    """
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        reader = sock.makefile("rb")

        def reply():
            texts = []
            while True:
                line = reader.readline()
                if not line:
                    return "closed"
                line = line.decode().rstrip("\r\n")
                texts.append(line[4:])
                if line[3:4] != "-":
                    return (int(line[:3]), texts)

        reply()  # greeting
        for line in lines:
            sock.sendall(line.encode() + b"\r\n")
            replies.append(reply())
            if replies[-1] == "closed":
                break
        if replies[-1] != "closed" and not reader.readline():
            replies.append("closed")
    return replies


class PerlComparisonTests(unittest.TestCase):
    """Where these plugins mean to answer as 0.94 does, the Perl server answers the same."""

    def setUp(self):
        why = perl_qpsmtpd.available()
        if why:
            raise unittest.SkipTest(why)

    async def test_same_replies_as_qpsmtpd_094(self):
        # Not under trial's temp dir: the Perl server runs as the qpsmtpd user.
        root = tempfile.mkdtemp(prefix="qpsmtpd-tx-envelope-")
        self.addCleanup(shutil.rmtree, root, True)
        map_path = os.path.join(root, "map_example")
        with open(map_path, "w") as f:
            f.write(PERL_MAP)
        plugins = [line.replace("MAP", map_path) for line in PERL_PLUGINS]
        spool = os.path.join(root, "spool")
        os.makedirs(spool)
        config = write_config(os.path.join(root, "config"), plugins, dict(
            PERL_FILES, plugin_dirs=perl_qpsmtpd.PERL_PLUGIN_DIR, spool_dir=spool, loglevel="2"))
        os.chmod(root, 0o755)
        perl_qpsmtpd.give_to_perl_user(root)
        perl_port = perl_qpsmtpd.start_forkserver(self, config)
        _, our_port = start_server(self, plugins, PERL_FILES)

        for lines in PERL_SESSIONS:
            expected = perl_session(perl_port, lines)
            client = await connect(self, our_port)
            ours = []
            for line in lines:
                try:
                    ours.append(await client.command(line))
                except ConnectionClosed:
                    ours.append("closed")
                    break
            if ours[-1] != "closed":  # every session ends with the server closing
                await client.wait_closed()
                ours.append("closed")
            self.assertEqual(ours, expected, lines[0])
