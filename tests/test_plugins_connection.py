"""The connection-level policy plugins: hosts_allow, earlytalker (and check_earlytalker),
connection_time, noop_counter, random_error, content_log, whitelist and naughty.

Protocol-level cases use MemoryClient (a real SMTPProtocol on an in-memory transport, with
Twisted's Clock where a plugin waits); every plugin also has at least one case over a real
loopback socket (tests.support.server). Reply texts are qpsmtpd 0.94's, read from its plugins
in /usr/share/qpsmtpd/plugins and checked against the Perl server where they differ from the
documentation.
"""

import os
import re
import threading
import time

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from qpsmtpd_tx import __version__, cli
from qpsmtpd_tx.address import Address
from qpsmtpd_tx.codes import (
    DECLINED,
    DENY,
    DENY_DISCONNECT,
    DENYSOFT,
    DENYSOFT_DISCONNECT,
    LOGDEBUG,
    LOGERROR,
    LOGINFO,
    LOGNOTICE,
    LOGWARN,
    OK,
)
from qpsmtpd_tx.loader import find_plugin_file
from qpsmtpd_tx.paths import default_plugin_dirs
from tests.support.harness import TEST_PLUGINS, MemoryClient, StartupErrorMixin, eventually, make_server, plugin_module
from tests.support import harness
from tests.support.harness import capture_log as capture_all_log, loaded_plugin as plugin_of
from tests.support.server import SMTPClient, connect, start_server, wait_sessions_closed

PLUGIN_DIRS = default_plugin_dirs()
GREETING = ("220 mx.example.org ESMTP qpsmtpd-tx %s ready; send us your mail, but not your spam.\r\n"
            % __version__)
EARLY = "Connecting host started transmitting before SMTP greeting"
HELO_OK = "250 mx.example.org Hi Unknown [%s]; I am so happy to meet you.\r\n"
MESSAGE = "Subject: hi\r\n\r\nbody line\r\n.\r\n"
QUIT_REPLY = "221 mx.example.org closing connection. Have a wonderful day.\r\n"


def fake_transaction(remote_ip="192.0.2.1", session=None):
    """A transaction on a connection from ``remote_ip``."""
    txn = harness.fake_transaction(remote_ip)
    txn.session = session
    return txn


def capture_log(testcase, server):
    """Record every ``(level, plugin name, message)`` logged through ``server``."""
    return capture_all_log(testcase, server, plugin_names=True)


def hang_up(client):
    """The connection of a MemoryClient is gone (runs disconnect / post-connection)."""
    client.protocol.connectionLost(Failure(ConnectionDone()))


def run_lines(client, lines):
    """Send each command line; the list of the replies."""
    return [client.command(line) for line in lines]


class Draws:
    """A stand-in for random.Random whose ``random()`` returns the given values in order."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        if not self.values:
            raise AssertionError("no more random draws scripted")
        return self.values.pop(0)


class FakeSession:
    """Records ``wait_for_input`` calls; the test fires the Deferreds."""

    def __init__(self):
        self.waits = []

    def wait_for_input(self, seconds, clock=None):
        from twisted.internet.defer import Deferred
        d = Deferred()
        self.waits.append((seconds, d))
        return d


# -- documentation ------------------------------------------------------------------------------

class DocumentationTests(unittest.TestCase):
    NAMES = ("hosts_allow", "earlytalker", "connection_time", "noop_counter", "random_error",
             "content_log", "whitelist", "naughty")

    def test_every_plugin_documents_itself(self):
        for name in self.NAMES:
            info = cli.PluginInfo(name, find_plugin_file(name, PLUGIN_DIRS))
            self.assertIsNone(info.error, name)
            self.assertTrue(info.summary() and not info.summary().startswith("("), name)
            for section in ("Arguments", "Notes", "Replies", "Config file"):
                self.assertIn(section, info.doc, (name, section))

    def test_alias_is_listed_as_alias(self):
        info = cli.PluginInfo("check_earlytalker", find_plugin_file("check_earlytalker", PLUGIN_DIRS))
        self.assertEqual(info.summary(), "alias of earlytalker")


# -- hosts_allow --------------------------------------------------------------------------------

class HostsAllowTests(StartupErrorMixin, unittest.TestCase):
    RULES = ("192.168.3.4    DECLINED\n"
             "192.168.3.0/24 DENY Sorry, known spam only source\n"
             "198.51.100.0/24 DENYSOFT come back later, please\n"
             "203.0.113.7/32 DENY_DISCONNECT\n"
             "203.0.113.8 DENYSOFT_DISCONNECT\n"
             "203.0.113.9 OK\n"
             "2001:db8:bad::/48 DENY no IPv6 spam\n")

    def client(self, ip, rules=None, extra=(), **kwargs):
        server = make_server(self, ["hosts_allow"] + list(extra), {"hosts_allow": rules or self.RULES},
                             **kwargs)
        return MemoryClient(server, remote_ip=ip)

    def test_deny_rule_with_message(self):
        client = self.client("192.168.3.77")
        self.assertEqual(client.greeting, "550 Sorry, known spam only source\r\n")
        self.assertTrue(client.closed)

    def test_declined_rule_exempts_an_address_from_a_later_rule(self):
        client = self.client("192.168.3.4")
        self.assertEqual(client.greeting, GREETING)
        self.assertFalse(client.closed)

    def test_denysoft_rule(self):
        client = self.client("198.51.100.20")
        self.assertEqual(client.greeting, "451 come back later, please\r\n")
        self.assertTrue(client.closed)

    def test_deny_disconnect_without_message_gets_the_default_text(self):
        client = self.client("203.0.113.7")
        self.assertEqual(client.greeting, "550 Sorry, service not available for you\r\n")
        self.assertTrue(client.closed)

    def test_denysoft_disconnect_without_message_gets_the_default_text(self):
        client = self.client("203.0.113.8")
        self.assertEqual(client.greeting, "451 Sorry, try again later\r\n")
        self.assertTrue(client.closed)

    def test_ok_rule_skips_later_pre_connection_plugins(self):
        extra = ["scripted pre-connection DENY later plugin"]
        self.assertEqual(self.client("203.0.113.9", extra=extra).greeting, GREETING)
        self.assertEqual(self.client("203.0.113.10", extra=extra).greeting, "550 later plugin\r\n")

    def test_unlisted_client_is_greeted(self):
        client = self.client("192.0.2.1")
        self.assertEqual(client.greeting, GREETING)

    def test_ipv6_rule(self):
        self.assertEqual(self.client("2001:db8:bad::25").greeting, "550 no IPv6 spam\r\n")
        self.assertEqual(self.client("2001:db8:900d::25").greeting, GREETING)

    def test_ipv4_rule_does_not_match_ipv6_client(self):
        client = self.client("2001:db8::1", rules="0.0.0.0/0 DENY all IPv4\n")
        self.assertEqual(client.greeting, GREETING)
        client = self.client("192.0.2.1", rules="0.0.0.0/0 DENY all IPv4\n")
        self.assertEqual(client.greeting, "550 all IPv4\r\n")

    def test_numeric_constant(self):
        client = self.client("192.0.2.1", rules="192.0.2.0/24 901 by number\n")
        self.assertEqual(client.greeting, "550 by number\r\n")

    # -- the per-IP limit --------------------------------------------------------------------

    def test_connection_limit(self):
        server = make_server(self, ["hosts_allow"], max_conn_ip=2)
        first = MemoryClient(server, remote_ip="192.0.2.1")
        second = MemoryClient(server, remote_ip="192.0.2.1")
        third = MemoryClient(server, remote_ip="192.0.2.1")
        self.assertEqual([first.greeting, second.greeting], [GREETING, GREETING])
        self.assertEqual(third.greeting, "451 too many connections from 192.0.2.1, try again later\r\n")
        self.assertTrue(third.closed)
        hang_up(third)
        # Other addresses are counted separately.
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.2").greeting, GREETING)
        # A closed connection frees its place.
        hang_up(first)
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.1").greeting, GREETING)

    def test_limit_is_checked_before_the_rules(self):
        server = make_server(self, ["hosts_allow"], {"hosts_allow": "192.0.2.1 OK\n"}, max_conn_ip=1)
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.1").greeting, GREETING)
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.1").greeting,
                         "451 too many connections from 192.0.2.1, try again later\r\n")

    def test_limit_counting_directly(self):
        plugin = plugin_of(make_server(self, ["hosts_allow"]), "hosts_allow")
        txn = fake_transaction("192.0.2.1")
        hook = plugin.hook_pre_connection
        refused = (DENYSOFT, "too many connections from 192.0.2.1, try again later")
        others = ["192.0.2.9", "192.0.2.10"]
        # child_addrs are the OTHER live sessions: this one counts as 1 plus its namesakes
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, 2,
                              ["192.0.2.1"] + others), DECLINED)
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, 2,
                              ["192.0.2.1"] * 2 + others), refused)
        # 0 (or no limit) turns the check off
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, 0, ["192.0.2.1"] * 9), DECLINED)
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, None, ["192.0.2.1"] * 9),
                         DECLINED)
        # a limit of 1 allows this connection alone, not a second one
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, 1, []), DECLINED)
        self.assertEqual(hook(txn, "192.0.2.1", 4000, "192.0.2.25", 25, 1, ["192.0.2.1"]), refused)

    def test_karma_history_changes_the_limit(self):
        plugin = plugin_of(make_server(self, ["hosts_allow"]), "hosts_allow")

        def decide(karma, count, limit=2):
            txn = fake_transaction("192.0.2.1")
            txn.connection.notes["karma_history"] = karma
            return plugin.hook_pre_connection(txn, "192.0.2.1", 1, "192.0.2.25", 25, limit,
                                              ["192.0.2.1"] * count)

        # ``count`` other sessions from the same address, plus this one
        self.assertEqual(decide(6, 4), DECLINED)      # good karma: limit 2 + 3
        self.assertEqual(decide(6, 5)[0], DENYSOFT)
        self.assertEqual(decide(3, 1), DECLINED)      # neutral: limit unchanged
        self.assertEqual(decide(3, 2)[0], DENYSOFT)
        self.assertEqual(decide(0, 0), DECLINED)      # bad karma: one connection only
        self.assertEqual(decide(-2, 1)[0], DENYSOFT)

    def test_not_an_ip(self):
        plugin = plugin_of(make_server(self, ["hosts_allow"]), "hosts_allow")
        self.assertEqual(plugin.hook_pre_connection(fake_transaction("x"), "unix-socket", 0, "", 0,
                                                    5, []), DECLINED)

    # -- start-up errors ---------------------------------------------------------------------

    def test_bad_lines(self):
        for text, lineno, expected in (
            ("192.0.2.0/24 DENY x\nDENY\n", 2, "expected 'NETWORK CONSTANT [MESSAGE]', got 'DENY'"),
            ("# comment\n192.0.2.300 DENY\n", 2, "bad network '192.0.2.300'"),
            ("192.168.3.5/24 DENY\n", 1, "bad network '192.168.3.5/24': 192.168.3.5/24 has host bits set"),
            ("192.0.2.0/24 REFUSE go away\n", 1, "unknown constant 'REFUSE'"),
            ("192.0.2.0/24 YIELD\n", 1, "unknown constant 'YIELD'"),
        ):
            self.assertStartupError(
                ["hosts_allow"],
                [":1: plugin hosts_allow: ", "hosts_allow:%d: %s" % (lineno, expected)],
                {"hosts_allow": text})

    def test_arguments(self):
        self.assertStartupError(["rcpt_ok", "hosts_allow 5"],
                                ":2: plugin hosts_allow: arguments must be key/value pairs")
        self.assertStartupError(["hosts_allow max 5"], ":1: plugin hosts_allow: unknown argument 'max'")
        self.assertEqual(plugin_of(make_server(self, ["hosts_allow loglevel 6"]), "hosts_allow").loglevel,
                         ("abs", 6))

    # -- over a socket -----------------------------------------------------------------------

    async def test_connection_limit_over_tcp(self):
        server, port = start_server(self, ["hosts_allow", "rcpt_ok"], max_conn_ip=1)
        first = await connect(self, port)
        self.assertEqual(first.greeting[0], 220)
        second = await connect(self, port)
        self.assertEqual(second.greeting, (451, ["too many connections from 127.0.0.1, try again later"]))
        await second.wait_closed()
        self.assertEqual(await first.command("HELO x"),
                         (250, ["mx.example.org Hi Unknown [127.0.0.1]; I am so happy to meet you."]))

    async def test_rule_over_tcp(self):
        server, port = start_server(self, ["hosts_allow"],
                                    {"hosts_allow": "127.0.0.0/8 DENY Sorry, known spam only source"})
        client = await connect(self, port)
        self.assertEqual(client.greeting, (550, ["Sorry, known spam only source"]))
        await client.wait_closed()


# -- earlytalker --------------------------------------------------------------------------------

class EarlytalkerTests(StartupErrorMixin, unittest.TestCase):
    def client(self, plugins, files=None, ip="192.0.2.1"):
        """A MemoryClient on a server whose earlytalker waits on a Clock (``self.clock``)."""
        server = make_server(self, plugins, files)
        self.clock = Clock()
        for plugin in server.plugins:
            if "earlytalker" in plugin.name:
                plugin.clock = self.clock
        return MemoryClient(server, remote_ip=ip)

    def test_silent_client_is_greeted_after_the_wait(self):
        client = self.client(["earlytalker"])
        self.assertEqual(client.greeting, "")
        self.clock.advance(0.999)
        self.assertEqual(client.take(), "")
        self.clock.advance(0.001)
        self.assertEqual(client.take(), GREETING)
        self.assertNotIn("earlytalker", client.session.connection.notes)
        self.assertEqual(client.command("HELO x"), HELO_OK % "192.0.2.1")

    def test_talker_is_refused(self):
        client = self.client(["earlytalker"])
        self.assertEqual(client.send("EHLO spam.example\r\n"), "550 %s\r\n" % EARLY)
        self.assertTrue(client.closed)
        notes = client.session.connection.notes
        self.assertEqual((notes["earlytalker"], notes["karma"]), (1, -1))

    def test_wait_argument(self):
        client = self.client(["earlytalker wait 3.5"])
        self.clock.advance(3.4)
        self.assertEqual(client.take(), "")
        self.clock.advance(0.1)
        self.assertEqual(client.take(), GREETING)

    def test_reject_type_temp(self):
        client = self.client(["earlytalker reject_type temp"])
        self.assertEqual(client.send("HELO x\r\n"), "450 %s\r\n" % EARLY)
        self.assertTrue(client.closed)

    def test_action_deny(self):
        client = self.client(["earlytalker action deny"])
        self.assertEqual(client.send("HELO x\r\n"), "550 %s\r\n" % EARLY)

    def test_action_denysoft_is_temporary(self):
        # 0.94 answered 550 here (it ignored the action's type): an intended difference.
        client = self.client(["earlytalker action denysoft"])
        self.assertEqual(client.send("HELO x\r\n"), "450 %s\r\n" % EARLY)

    def test_action_log_only_notes_the_talker(self):
        client = self.client(["check_earlytalker action log"])
        self.assertEqual(client.send("HELO x\r\n"), GREETING + HELO_OK % "192.0.2.1")
        self.assertFalse(client.closed)
        self.assertEqual(client.session.connection.notes["earlytalker"], 1)

    def test_reject_0_wins_over_action(self):
        client = self.client(["earlytalker action deny reject 0"])
        self.assertEqual(client.send("HELO x\r\n"), GREETING + HELO_OK % "192.0.2.1")

    def test_defer_reject_rejects_each_mail(self):
        client = self.client(["earlytalker defer-reject 1", "rcpt_ok"])
        self.assertEqual(client.send("HELO x\r\n"), GREETING + HELO_OK % "192.0.2.1")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "450 %s\r\n" % EARLY)
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "450 %s\r\n" % EARLY)
        self.assertFalse(client.closed)
        self.assertEqual(client.session.connection.notes["karma"], -3)

    def test_defer_reject_lets_a_silent_client_send(self):
        client = self.client(["earlytalker defer-reject 1", "rcpt_ok"])
        self.clock.advance(1)
        self.assertEqual(client.take(), GREETING)
        self.assertEqual(run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>"])[1],
                         "250 <a@b.example>, sender OK - how exciting to get mail from you!\r\n")

    def test_defer_reject_with_action_deny_is_permanent(self):
        # 0.94 made every defer-reject temporary: an intended difference.
        client = self.client(["earlytalker action deny defer-reject 1"])
        client.send("HELO x\r\n")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "550 %s\r\n" % EARLY)

    def test_defer_reject_with_disconnect_type(self):
        client = self.client(["earlytalker defer-reject 1 reject_type temp_disconnect"])
        client.send("HELO x\r\n")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "421 %s\r\n" % EARLY)
        self.assertTrue(client.closed)

    def test_reject_naughty_defers_to_naughty(self):
        client = self.client(["earlytalker reject naughty", "naughty reject mail"])
        self.assertEqual(client.send("HELO x\r\n"), GREETING + HELO_OK % "192.0.2.1")
        self.assertEqual(client.session.connection.notes["naughty"], EARLY)
        # earlytalker's reject_type (perm) travels with the note: no disconnect.
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "550 %s\r\n" % EARLY)
        self.assertFalse(client.closed)

    def test_check_at_data(self):
        client = self.client(["earlytalker check-at DATA", "rcpt_ok"])
        self.assertEqual(client.greeting, GREETING)     # no wait at connect
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"])
        self.assertEqual(client.command("DATA"), "")
        self.assertEqual(client.send("QUIT\r\n"), "554 %s\r\n%s" % (EARLY, QUIT_REPLY))

    def test_check_at_data_silent_client(self):
        client = self.client(["earlytalker check-at data wait 2", "rcpt_ok"])
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"])
        self.assertEqual(client.command("DATA"), "")
        self.clock.advance(2)
        self.assertEqual(client.take(), "354 go ahead\r\n")

    def test_check_at_data_temp(self):
        client = self.client(["earlytalker check-at DATA reject_type temp", "rcpt_ok"])
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"])
        self.assertEqual(client.send("DATA\r\nSubject: x\r\n"), "451 %s\r\n500 Unrecognized command\r\n" % EARLY)

    def test_check_at_both(self):
        server = make_server(self, ["earlytalker check-at CONNECT check-at DATA"])
        hooks = {hook for hook in ("connect", "data", "mail")
                 if any(p.name == "earlytalker" for p, _ in server.hooks.handlers(hook))}
        self.assertEqual(hooks, {"connect", "data"})
        server = make_server(self, ["earlytalker defer-reject 1"])
        hooks = {hook for hook in ("connect", "data", "mail")
                 if any(p.name == "earlytalker" for p, _ in server.hooks.handlers(hook))}
        self.assertEqual(hooks, {"connect", "mail"})

    def test_wait_0(self):
        client = self.client(["earlytalker wait 0"])
        self.clock.advance(0)
        self.assertEqual(client.take(), GREETING)

    def test_relay_client_is_not_delayed(self):
        client = self.client(["relay", "earlytalker"], {"relayclients": "192.0.2.1"})
        self.assertEqual(client.greeting, GREETING)
        client = self.client(["relay", "earlytalker"], {"relayclients": "192.0.2.1"}, ip="192.0.2.2")
        self.assertEqual(client.greeting, "")

    def test_good_karma_is_not_delayed(self):
        plugin = plugin_of(make_server(self, ["earlytalker"]), "earlytalker")
        session = FakeSession()
        txn = fake_transaction(session=session)
        txn.connection.notes["karma_history"] = 6
        self.assertEqual(plugin.check_connect(txn), DECLINED)
        self.assertEqual(session.waits, [])
        txn.connection.notes["karma_history"] = 5
        d = plugin.check_connect(txn)
        self.assertEqual([s for s, _ in session.waits], [1.0])
        session.waits[0][1].callback(True)
        self.assertEqual(self.successResultOf(d), (DENY, EARLY))

    def test_alias_loads_and_works(self):
        client = self.client(["check_earlytalker"])
        self.assertEqual([p.name for p in client.session.server.plugins], ["check_earlytalker"])
        self.assertEqual(client.send("HELO x\r\n"), "550 %s\r\n" % EARLY)

    def test_bad_arguments(self):
        for args, expected in (
            ("wait", "arguments must be key/value pairs"),
            ("wait 1 action", "arguments must be key/value pairs"),
            ("delay 1", "unknown argument 'delay'"),
            ("wait soon", "wait must be a number of seconds, got 'soon'"),
            ("wait -1", "wait must be a number of seconds, got '-1'"),
            ("wait nan", "wait must be a number of seconds, got 'nan'"),
            ("check-at HELO", "check-at must be CONNECT or DATA, got 'HELO'"),
            ("action reject", "action must be deny, denysoft or log, got 'reject'"),
            ("reject 2", "reject must be 0, 1 or naughty, got '2'"),
            ("reject_type later", "reject_type must be one of"),
            ("loglevel NOISY", "bad loglevel 'NOISY'"),
        ):
            self.assertStartupError(["earlytalker " + args], ":1: plugin earlytalker: " + expected)
        self.assertStartupError(["check_earlytalker wait x"],
                                ":1: plugin check_earlytalker: wait must be a number")

    async def test_talker_over_tcp(self):
        server, port = start_server(self, ["earlytalker wait 30"])
        client = SMTPClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(client.close)
        client.send("EHLO early.example")
        self.assertEqual(await client.reply(), (550, [EARLY]))
        await client.wait_closed()

    async def test_silent_client_over_tcp(self):
        server, port = start_server(self, ["check_earlytalker wait 0.05", "rcpt_ok"])
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(await client.command("MAIL FROM:<a@b.example>"),
                         (503, ["please say hello first ..."]))


# -- connection_time ----------------------------------------------------------------------------

class ConnectionTimeTests(StartupErrorMixin, unittest.TestCase):
    def session(self, line="connection_time", seconds=2.5):
        server = make_server(self, [line])
        plugin = plugin_of(server, "connection_time")
        plugin.clock = clock = Clock()
        clock.advance(1000)
        log = capture_log(self, server)
        client = MemoryClient(server)
        clock.advance(seconds)
        self.assertEqual(client.command("QUIT"), QUIT_REPLY)
        hang_up(client)
        return [(level, message) for level, name, message in log if name == "connection_time"]

    def test_logs_duration_at_info(self):
        self.assertEqual(self.session(),
                         [(LOGDEBUG, "started at 1000.000"), (LOGINFO, "2.500 s.")])

    def test_three_decimals(self):
        self.assertEqual(self.session(seconds=0.0004)[-1], (LOGINFO, "0.000 s."))
        self.assertEqual(self.session(seconds=61.23456)[-1], (LOGINFO, "61.235 s."))

    def test_absolute_level(self):
        for line in ("connection_time LOGNOTICE", "connection_time 5", "connection_time loglevel NOTICE"):
            self.assertEqual(self.session(line), [(LOGNOTICE, "started at 1000.000"),
                                                  (LOGNOTICE, "2.500 s.")], line)

    def test_relative_level(self):
        self.assertEqual(self.session("connection_time loglevel +1")[-1], (LOGDEBUG, "2.500 s."))
        self.assertEqual(self.session("connection_time loglevel -2")[-1], (LOGWARN, "2.500 s."))
        self.assertEqual(self.session("connection_time loglevel -9")[-1], (0, "2.500 s."))

    def test_connect_starts_the_clock_only_without_pre_connection(self):
        plugin = plugin_of(make_server(self, ["connection_time"]), "connection_time")
        plugin.clock = clock = Clock()
        txn = fake_transaction()
        clock.advance(5)
        plugin.hook_connect(txn)
        self.assertEqual(txn.connection.notes["connection_time_start"], 5)
        clock.advance(5)
        plugin.hook_connect(txn)
        self.assertEqual(txn.connection.notes["connection_time_start"], 5)
        plugin.hook_pre_connection(txn, "192.0.2.1", 1, "192.0.2.2", 25, 5, [])
        self.assertEqual(txn.connection.notes["connection_time_start"], 10)

    def test_missing_start(self):
        server = make_server(self, ["connection_time"])
        log = capture_log(self, server)
        self.assertEqual(plugin_of(server, "connection_time").hook_post_connection(fake_transaction()),
                         DECLINED)
        self.assertEqual(log, [(LOGERROR, "connection_time", "Start time not set?!")])

    def test_bad_arguments(self):
        for args, expected in (
            ("+1", "a single argument must be a log level, got '+1'"),
            ("LOGNOISE", "bad log level 'LOGNOISE'"),
            ("loglevel 9", "bad log level '9'"),
            ("level 6", "usage: connection_time [LEVEL | loglevel L]"),
            ("loglevel 6 x", "usage: connection_time [LEVEL | loglevel L]"),
        ):
            self.assertStartupError(["connection_time " + args], ":1: plugin connection_time: " + expected)

    async def test_over_tcp(self):
        server, port = start_server(self, ["connection_time"])
        log = capture_log(self, server)
        client = await connect(self, port)
        self.assertEqual((await client.command("QUIT"))[0], 221)
        await client.wait_closed()
        await wait_sessions_closed(server)
        lines = [(level, message) for level, name, message in log if name == "connection_time"]
        self.assertEqual(len(lines), 2, lines)
        self.assertEqual(lines[1][0], LOGINFO)
        self.assertRegex(lines[1][1], r"^[0-9]+\.[0-9]{3} s\.$")


# -- noop_counter -------------------------------------------------------------------------------

STOP = "500 Stop wasting my time, too many consecutive NOOPs\r\n"


class NoopCounterTests(StartupErrorMixin, unittest.TestCase):
    def client(self, line="noop_counter", ip="192.0.2.1"):
        return MemoryClient(make_server(self, [line, "rcpt_ok"]), remote_ip=ip)

    def test_third_noop_disconnects(self):
        client = self.client()
        self.assertEqual(run_lines(client, ["NOOP", "NOOP"]), ["250 OK\r\n", "250 OK\r\n"])
        self.assertFalse(client.closed)
        self.assertEqual(client.command("NOOP"), STOP)
        self.assertTrue(client.closed)

    def test_other_commands_reset_the_count(self):
        for setup, command in (
            ([], "HELO x"), ([], "EHLO x"), (["HELO x"], "MAIL FROM:<a@b.example>"),
            (["HELO x", "MAIL FROM:<a@b.example>"], "RCPT TO:<u@example.com>"),
            (["HELO x"], "DATA"), ([], "RSET"), ([], "VRFY u"), ([], "HELP"),
        ):
            client = self.client()
            run_lines(client, setup)
            replies = run_lines(client, ["NOOP", "NOOP", command, "NOOP", "NOOP"])
            self.assertNotIn(STOP, replies, command)
            self.assertEqual(client.command("NOOP"), STOP, command)

    def test_unrecognized_commands_do_not_reset(self):
        client = self.client()
        self.assertEqual(run_lines(client, ["NOOP", "NOOP", "FOO"]),
                         ["250 OK\r\n", "250 OK\r\n", "500 Unrecognized command\r\n"])
        self.assertEqual(client.command("NOOP"), STOP)

    def test_argument(self):
        client = self.client("noop_counter 5")
        self.assertEqual(run_lines(client, ["NOOP"] * 4), ["250 OK\r\n"] * 4)
        self.assertEqual(client.command("NOOP"), STOP)
        client = self.client("noop_counter 1")
        self.assertEqual(client.command("NOOP"), STOP)

    def test_zero_means_default(self):
        client = self.client("noop_counter 0")
        self.assertEqual(run_lines(client, ["NOOP", "NOOP", "NOOP"]), ["250 OK\r\n", "250 OK\r\n", STOP])

    def test_count_is_per_connection(self):
        server = make_server(self, ["noop_counter"])
        first, second = MemoryClient(server), MemoryClient(server)
        self.assertEqual(run_lines(first, ["NOOP", "NOOP"]), ["250 OK\r\n"] * 2)
        self.assertEqual(run_lines(second, ["NOOP", "NOOP"]), ["250 OK\r\n"] * 2)
        self.assertEqual(first.session.connection.notes["noop_count"], 2)
        self.assertEqual(first.command("NOOP"), STOP)
        self.assertFalse(second.closed)

    def test_bad_arguments(self):
        self.assertStartupError(["noop_counter x"], ":1: plugin noop_counter: N must be a whole number, got 'x'")
        self.assertStartupError(["noop_counter -1"], ":1: plugin noop_counter: N must be a whole number")
        self.assertStartupError(["noop_counter 3 4"], ":1: plugin noop_counter: usage: noop_counter [N]")

    async def test_over_tcp(self):
        server, port = start_server(self, ["noop_counter 2"])
        client = await connect(self, port)
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))
        self.assertEqual(await client.command("NOOP"),
                         (500, ["Stop wasting my time, too many consecutive NOOPs"]))
        await client.wait_closed()


# -- random_error -------------------------------------------------------------------------------

FAIL = 0.999999    # a draw above every pass threshold below 100 %
HARD = 0.0         # second draw: < 2/5 → DENYSOFT_DISCONNECT
SOFT = 0.9         # second draw: ≥ 2/5 → DENYSOFT


class RandomErrorTests(StartupErrorMixin, unittest.TestCase):
    module = plugin_module("random_error")

    def client(self, *draws, line="random_error 10"):
        server = make_server(self, [line, "rcpt_ok", "scripted queue OK Queued"])
        plugin_of(server, "random_error").random = Draws(*draws)
        return MemoryClient(server)

    def test_threshold(self):
        threshold = self.module.pass_threshold
        self.assertAlmostEqual(threshold(1), 0.99 ** (1 / 6.0))
        self.assertAlmostEqual(threshold(10) ** 6, 0.9)
        self.assertEqual(threshold(100), 0.0)
        self.assertEqual(threshold(250), 0.0)
        self.assertGreater(threshold(-1), 1.0)

    def test_hook_directly(self):
        plugin = plugin_of(make_server(self, ["random_error 10"]), "random_error")
        txn = fake_transaction()
        threshold = self.module.pass_threshold(10)
        plugin.random = Draws(threshold - 1e-9, threshold, HARD, threshold, 0.4)
        self.assertEqual(plugin.hook_connect(txn), DECLINED)
        self.assertEqual(txn.connection.notes["random_fail_%"], 10.0)
        self.assertEqual(plugin.hook_mail(txn, None, {}), (DENYSOFT_DISCONNECT, "random failure"))
        self.assertEqual(plugin.hook_rcpt(txn, None, {}), (DENYSOFT, "random failure"))

    def test_pass_everywhere(self):
        client = self.client(*[0.0] * 6)
        self.assertEqual(client.greeting, GREETING)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"])
        self.assertEqual(client.send(MESSAGE), "250 Queued\r\n")

    def test_connect(self):
        self.assertEqual(self.client(FAIL, SOFT).greeting, "450 random failure\r\n")
        client = self.client(FAIL, HARD)
        self.assertEqual(client.greeting, "450 random failure\r\n")
        self.assertTrue(client.closed)

    def test_helo(self):
        client = self.client(0.0, FAIL, SOFT, FAIL, HARD)
        self.assertEqual(client.command("HELO x"), "450 random failure\r\n")
        self.assertFalse(client.closed)
        self.assertEqual(client.command("EHLO x"), "450 random failure\r\n")
        self.assertTrue(client.closed)

    def test_mail(self):
        client = self.client(0.0, 0.0, FAIL, SOFT, FAIL, HARD)
        client.command("HELO x")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "450 random failure\r\n")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "421 random failure\r\n")
        self.assertTrue(client.closed)

    def test_rcpt(self):
        client = self.client(0.0, 0.0, 0.0, FAIL, SOFT, FAIL, HARD)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>"])
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "450 random failure\r\n")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "421 random failure\r\n")
        self.assertTrue(client.closed)

    def test_data(self):
        client = self.client(0.0, 0.0, 0.0, 0.0, FAIL, SOFT, FAIL, HARD)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"])
        self.assertEqual(client.command("DATA"), "451 random failure\r\n")
        self.assertEqual(client.command("DATA"), "421 random failure\r\n")
        self.assertTrue(client.closed)

    def test_data_post(self):
        client = self.client(0.0, 0.0, 0.0, 0.0, 0.0, FAIL, SOFT)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"])
        self.assertEqual(client.send(MESSAGE), "452 random failure\r\n")
        self.assertFalse(client.closed)
        client = self.client(0.0, 0.0, 0.0, 0.0, 0.0, FAIL, HARD)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"])
        self.assertEqual(client.send(MESSAGE), "452 random failure\r\n")
        self.assertTrue(client.closed)

    def test_negative_percent_disables(self):
        client = self.client(FAIL, FAIL, line="random_error -1")
        self.assertEqual(client.greeting, GREETING)
        self.assertEqual(client.command("HELO x"), HELO_OK % "192.0.2.1")

    def test_zero_means_one_percent(self):
        plugin = plugin_of(make_server(self, ["random_error 0"]), "random_error")
        self.assertEqual(plugin.percent, 1.0)
        self.assertEqual(plugin_of(make_server(self, ["random_error"]), "random_error").percent, 1.0)
        self.assertEqual(plugin_of(make_server(self, ["random_error 0.5"]), "random_error").percent, 0.5)
        self.assertEqual(plugin_of(make_server(self, ["random_error 0.0"]), "random_error").percent, 0.0)

    def test_note_changes_the_rate(self):
        plugin = plugin_of(make_server(self, ["random_error 100"]), "random_error")
        txn = fake_transaction()
        plugin.random = Draws(FAIL)
        txn.connection.notes["random_fail_%"] = -1
        self.assertEqual(plugin.hook_rcpt(txn, None, {}), DECLINED)
        plugin.random = Draws(0.0, SOFT)
        txn.connection.notes["random_fail_%"] = 100
        self.assertEqual(plugin.hook_rcpt(txn, None, {}), (DENYSOFT, "random failure"))
        txn.connection.notes["random_fail_%"] = "lots"
        self.assertEqual(plugin.hook_rcpt(txn, None, {}), DECLINED)

    def test_bad_arguments(self):
        self.assertStartupError(["random_error often"], ":1: plugin random_error: PERCENT must be a number, got 'often'")
        self.assertStartupError(["random_error nan"], ":1: plugin random_error: PERCENT must be a number")
        self.assertStartupError(["random_error 1 2"], ":1: plugin random_error: usage: random_error [PERCENT]")

    async def test_over_tcp(self):
        server, port = start_server(self, ["random_error 100"])
        client = await connect(self, port)
        self.assertEqual(client.greeting, (450, ["random failure"]))
        await client.wait_closed()


# -- content_log --------------------------------------------------------------------------------

class ContentLogTests(StartupErrorMixin, unittest.TestCase):
    WHEN = 1700000000.0

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def server(self, files=None, pattern="archive/%Y%m%d.log"):
        files = dict(files or {})
        files.setdefault("content_log_file", os.path.join(self.dir, pattern))
        server = make_server(self, ["content_log", "rcpt_ok", "scripted queue OK Queued"], files)
        plugin = plugin_of(server, "content_log")
        plugin.now = lambda: self.WHEN
        return server

    def expected_path(self, pattern="archive/%Y%m%d.log"):
        return os.path.join(self.dir, time.strftime(pattern, time.localtime(self.WHEN)))

    async def deliver(self, server, body="body line"):
        """One message; the reply comes once the archive is written (in a thread)."""
        client = MemoryClient(server)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"])
        out = [client.send("Subject: hi\r\n\r\n%s\r\n.\r\n" % body)]
        await eventually(lambda: out.append(client.take()) or "".join(out).endswith("\r\n"))
        self.assertEqual("".join(out), "250 Queued\r\n")
        return client.session.connection.notes["scripted_message"]

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    async def test_appends_each_message(self):
        server = self.server()
        first = await self.deliver(server, "first")
        second = await self.deliver(server, "second")
        content = self.read(self.expected_path())
        self.assertEqual(content, first + second)
        self.assertTrue(first.startswith(b"Received: from Unknown (HELO x) (192.0.2.1)\n"), first)
        self.assertTrue(first.endswith(b"\nSubject: hi\n\nfirst\n"), first)

    async def test_pattern_creates_directories(self):
        server = self.server(pattern="%Y/%m/%d/mail")
        message = await self.deliver(server)
        self.assertEqual(self.read(self.expected_path("%Y/%m/%d/mail")), message)

    async def test_default_pattern_is_relative_to_the_working_directory(self):
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.dir)
        server = make_server(self, ["content_log", "rcpt_ok", "scripted queue OK Queued"])
        plugin = plugin_of(server, "content_log")
        self.assertEqual(plugin.pattern, "mail/%Y%m%d")
        plugin.now = lambda: self.WHEN
        message = await self.deliver(server)
        self.assertEqual(self.read(self.expected_path("mail/%Y%m%d")), message)

    def test_enabled_values(self):
        for value in ("true", "1", "Yes", "on", "enabled"):
            server = self.server({"content_log_enabled": value})
            self.assertTrue(server.hooks.has("data_post"), value)
        for value in ("false", "0", "no", "OFF", "disabled"):
            server = self.server({"content_log_enabled": "# off\n" + value})
            self.assertFalse(server.hooks.has("data_post"), value)

    async def test_disabled_writes_nothing(self):
        server = self.server({"content_log_enabled": "false"})
        await self.deliver(server)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "archive")))

    async def test_write_failure_is_logged_and_the_message_goes_on(self):
        blocker = os.path.join(self.dir, "file")
        with open(blocker, "w") as f:
            f.write("not a directory\n")
        server = self.server(pattern="file/%Y")
        log = capture_log(self, server)
        await self.deliver(server)
        errors = [m for level, name, m in log if name == "content_log" and level == LOGERROR]
        self.assertEqual(len(errors), 1, log)
        self.assertTrue(errors[0].startswith("cannot write %s/file/" % self.dir), errors)

    async def test_hook_results(self):
        server = self.server()
        plugin = plugin_of(server, "content_log")
        txn = fake_transaction()
        txn.body.write(b"x\n")
        txn.body.finish()
        self.assertEqual(await plugin.save(txn), (DECLINED, "successfully saved message.. continuing"))
        self.assertEqual(self.read(self.expected_path()), b"\nx\n")
        plugin.pattern = os.path.join(self.dir, "archive/%Y%m%d.log", "below-a-file")
        capture_log(self, server)
        self.assertEqual(await plugin.save(txn),
                         (DECLINED, "Could not open log file.. continuing anyway"))

    def test_bad_config(self):
        self.assertStartupError(
            ["content_log"],
            [":1: plugin content_log: ", "content_log_enabled:2: content_log_enabled must be true or false, got 'maybe'"],
            {"content_log_enabled": "# on or off?\nmaybe\n"})
        self.assertStartupError(["content_log mail"], ":1: plugin content_log: arguments must be key/value pairs")

    async def test_a_blocked_archive_does_not_stop_the_server(self):
        # The archive is a FIFO nobody reads yet: opening it blocks. Written in the reactor
        # thread, that would stop every connection; from the I/O pool, a second client is
        # served meanwhile. A reader thread opens the FIFO once the second client has been
        # greeted (or after 30 s, so a failing run ends), then the first client gets its 250.
        path = os.path.join(self.dir, "fifo")
        os.mkfifo(path)
        server, port = start_server(self, ["scripted data_post DECLINED", "content_log", "rcpt_ok",
                                           "scripted queue OK Queued"], {"content_log_file": path})
        greeted, released, archived = threading.Event(), threading.Event(), []

        def reader():
            greeted.wait(30)
            released.set()
            with open(path, "rb") as f:
                archived.append(f.read())

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 30)
        first = await connect(self, port)
        for line in ("HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"):
            await first.command(line)
        first.send("Subject: blocked\r\n\r\nbody\r\n.")
        # data_post has begun (the plugin before content_log saw it)
        await eventually(lambda: any(
            hook == "data_post" for session in server.sessions
            for hook, _ in session.connection.notes.get("scripted_calls", ())), timeout=60)
        second = await connect(self, port)
        self.assertEqual(second.greeting[0], 220)
        self.assertFalse(released.is_set(), "the second client waited for the blocked archive")
        self.assertEqual((await second.command("NOOP"))[0], 250)
        greeted.set()
        self.assertEqual(await first.reply(), (250, ["Queued"]))
        await eventually(lambda: archived)
        self.assertTrue(archived[0].endswith(b"\nSubject: blocked\n\nbody\n"), archived)

    async def test_concurrent_messages_stay_whole(self):
        # Messages larger than the writing chunk (1 MiB) from several clients at once: each is
        # appended whole, none interleaved with another.
        path = os.path.join(self.dir, "concurrent.log")
        server, port = start_server(self, ["content_log", "rcpt_ok", "scripted queue OK Queued"],
                                    {"content_log_file": path, "databytes": "0"})
        bodies = [(b"%d" % n) * (1300000 // len(b"%d" % n)) for n in range(1, 6)]
        clients = [await connect(self, port) for _ in bodies]
        for client in clients:
            for line in ("HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"):
                await client.command(line)
        for client, body in zip(clients, bodies):
            client.transport.write(b"Subject: whole\r\n\r\n" + body + b"\r\n.\r\n")
        for client in clients:
            self.assertEqual(await client.reply(), (250, ["Queued"]))
        content = self.read(path)
        found = sorted(re.findall(rb"\nSubject: whole\n\n([0-9]+)\n", content))
        self.assertEqual(found, sorted(bodies))
        self.assertEqual(content.count(b"Received: from"), len(bodies))

    async def test_over_tcp(self):
        path = os.path.join(self.dir, "tcp.log")
        server, port = start_server(self, ["content_log", "rcpt_ok", "scripted queue OK Queued"],
                                    {"content_log_file": path})
        client = await connect(self, port)
        for line in ("HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"):
            self.assertEqual((await client.command(line))[0], 250)
        self.assertEqual(await client.command("DATA"), (354, ["go ahead"]))
        client.send("Subject: over tcp\r\n\r\n..dotted\r\n.")
        self.assertEqual(await client.reply(), (250, ["Queued"]))
        content = self.read(path)
        self.assertTrue(content.startswith(b"Received: from Unknown (HELO x) (127.0.0.1)\n"), content)
        self.assertTrue(content.endswith(b"\nSubject: over tcp\n\n.dotted\n"), content)


# -- whitelist ----------------------------------------------------------------------------------

class WhitelistTests(StartupErrorMixin, unittest.TestCase):
    FILES = {
        "whitelisthosts": "192.0.2.1\n198.51.100.\n10.1\n203.0.113.0/28\n2001:db8:0:0::25\n",
        "whitelisthelo": "Friend.Example\n",
        "whitelistsenders": "boss@example.org\npartner.example\n",
        "whitelistrcpt": "example.net\nvip@example.org\n",
    }

    def client(self, plugins, ip="192.0.2.1", files=None, environ=None):
        server = make_server(self, plugins, files or self.FILES)
        for plugin in server.plugins:
            if plugin.name == "whitelist":
                plugin.environ = environ or {}
        return MemoryClient(server, remote_ip=ip)

    # connect

    def test_whitelisted_hosts_skip_later_connect_plugins(self):
        plugins = ["whitelist", "scripted connect DENY go away"]
        for ip in ("192.0.2.1", "198.51.100.77", "10.1.2.3", "10.10.0.1", "203.0.113.15",
                   "2001:db8::25"):
            client = self.client(plugins, ip)
            self.assertEqual(client.greeting, GREETING, ip)
            notes = client.session.connection.notes
            self.assertEqual((notes.get("whitelisthost"), notes.get("karma")), (1, 5), ip)

    def test_other_hosts_are_not_whitelisted(self):
        plugins = ["whitelist", "scripted connect DENY go away"]
        # 192.0.2.10 starts with the text 192.0.2.1, but that entry is one full address.
        for ip in ("192.0.2.10", "198.51.101.1", "10.2.0.1", "203.0.113.16", "2001:db8::26"):
            client = self.client(plugins, ip)
            self.assertEqual(client.greeting, "550 go away\r\n", ip)
            self.assertNotIn("whitelisthost", client.session.connection.notes)

    def test_whitelistclient_environment(self):
        client = self.client(["whitelist", "scripted connect DENY go away"], "192.0.2.99",
                             environ={"WHITELISTCLIENT": ""})
        self.assertEqual(client.greeting, GREETING)
        notes = client.session.connection.notes
        self.assertEqual((notes.get("whitelistclient"), notes.get("whitelisthost")), (1, None))

    def test_whitelisthost_makes_other_plugins_immune(self):
        server = make_server(self, ["whitelist", "earlytalker"], self.FILES)
        plugin_of(server, "whitelist").environ = {}
        plugin_of(server, "earlytalker").clock = Clock()
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.1").greeting, GREETING)
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.99").greeting, "")

    # helo

    def test_helo(self):
        plugins = ["whitelist", "scripted helo DENY no helo", "scripted:1 ehlo DENY no ehlo"]
        client = self.client(plugins, "192.0.2.99")
        self.assertEqual(client.command("HELO friend.example"), HELO_OK % "192.0.2.99")
        self.assertEqual(client.session.connection.notes["whitelisthelo"], 1)
        client = self.client(plugins, "192.0.2.99")
        self.assertTrue(client.command("EHLO FRIEND.example").startswith("250-mx.example.org Hi Unknown"))
        client = self.client(plugins, "192.0.2.99")
        self.assertEqual(client.command("HELO stranger.example"), "550 no helo\r\n")
        self.assertEqual(client.command("EHLO stranger.example"), "550 no ehlo\r\n")
        self.assertNotIn("whitelisthelo", client.session.connection.notes)

    # mail

    def test_senders(self):
        plugins = ["whitelist", "scripted mail DENY no sender"]
        client = self.client(plugins, "192.0.2.99")
        client.command("HELO x")
        self.assertEqual(client.command("MAIL FROM:<Boss@Example.ORG>"),
                         "250 <Boss@Example.ORG>, sender OK - how exciting to get mail from you!\r\n")
        self.assertEqual(client.session.transaction.notes["whitelistsender"], 1)
        self.assertEqual(client.command("MAIL FROM:<anyone@partner.example>"),
                         "250 <anyone@partner.example>, sender OK - how exciting to get mail from you!\r\n")
        for sender in ("<other@example.org>", "<boss@sub.partner.example>", "<>"):
            self.assertEqual(client.command("MAIL FROM:%s" % sender), "550 no sender\r\n", sender)
            self.assertNotIn("whitelistsender", client.session.transaction.notes)

    # rcpt

    def test_recipients_are_accepted_and_counted(self):
        client = self.client(["whitelist", "rcpt_ok"], "192.0.2.99")
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>"])
        self.assertEqual(client.command("RCPT TO:<a@Example.NET>"), "250 <a@Example.NET>, recipient ok\r\n")
        self.assertEqual(client.command("RCPT TO:<vip@example.org>"), "250 <vip@example.org>, recipient ok\r\n")
        self.assertEqual(client.command("RCPT TO:<x@example.org>"), "550 Relaying denied (#5.7.1)\r\n")
        self.assertEqual(client.command("RCPT TO:<postmaster>"), "250 <postmaster>, recipient ok\r\n")
        self.assertEqual(client.session.transaction.notes["whitelistrcpt"], 2)

    # per_recipient

    def test_per_recipient_checks_at_rcpt_only(self):
        plugins = ["whitelist per_recipient 1 merge 0", "rcpt_ok"]
        client = self.client(plugins, "192.0.2.1")
        self.assertNotIn("whitelisthost", client.session.connection.notes)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>"])
        self.assertEqual(client.command("RCPT TO:<x@elsewhere.example>"),
                         "250 <x@elsewhere.example>, recipient ok\r\n")
        self.assertEqual(client.session.connection.notes["whitelisthost"], 1)
        server = client.session.server
        for hook in ("connect", "helo", "ehlo", "mail"):
            self.assertFalse(any(p.name == "whitelist" for p, _ in server.hooks.handlers(hook)), hook)

    def test_per_recipient_helo_sender_and_recipient(self):
        plugins = ["whitelist per_recipient 1", "rcpt_ok"]
        for helo, sender, rcpt, note in (
            ("friend.example", "a@b.example", "x@elsewhere.example", "whitelisthelo"),
            ("x", "boss@example.org", "x@elsewhere.example", "whitelistsender"),
            ("x", "a@b.example", "y@example.net", "whitelistrcpt"),
        ):
            client = self.client(plugins, "192.0.2.99")
            run_lines(client, ["HELO " + helo, "MAIL FROM:<%s>" % sender])
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt), "250 <%s>, recipient ok\r\n" % rcpt)
            notes = dict(client.session.connection.notes, **client.session.transaction.notes)
            self.assertEqual(notes.get(note), 1, note)
        client = self.client(plugins, "192.0.2.99")
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>"])
        self.assertEqual(client.command("RCPT TO:<x@elsewhere.example>"), "550 Relaying denied (#5.7.1)\r\n")

    def test_per_recipient_first_match_wins(self):
        server = make_server(self, ["whitelist per_recipient 1"], self.FILES)
        plugin = plugin_of(server, "whitelist")
        plugin.environ = {}
        txn = fake_transaction("192.0.2.1")
        txn.connection.hello_host = "friend.example"
        txn.sender = Address("boss", "example.org")
        self.assertEqual(plugin.check_all_for_recipient(txn, Address("u", "example.net"), {}), OK)
        self.assertEqual(txn.connection.notes.get("whitelisthost"), 1)
        self.assertNotIn("whitelisthelo", txn.connection.notes)
        self.assertEqual(txn.notes, {})

    def test_bad_config_lines(self):
        for name, text, lineno, expected in (
            ("whitelisthosts", "192.0.2.1\nmail.example.com\n", 2,
             "not an IP address, network or address prefix: 'mail.example.com'"),
            ("whitelisthosts", "10.0.0.0/33\n", 1, "bad network '10.0.0.0/33'"),
            ("whitelisthosts", "10.0.0.1/8\n", 1, "bad network '10.0.0.1/8'"),
            ("whitelisthelo", "a.example b.example\n", 1, "one entry per line, got 'a.example b.example'"),
            ("whitelistsenders", "# bosses\nboss@example.org\nboss @example.org\n", 3, "one entry per line"),
            ("whitelistrcpt", "x@example.org # vip\n", 1, "one entry per line"),
        ):
            self.assertStartupError(["whitelist"], [":1: plugin whitelist: ", "%s:%d: %s" % (name, lineno, expected)],
                                    {name: text})

    def test_bad_arguments(self):
        self.assertStartupError(["whitelist per_recipient"], ":1: plugin whitelist: arguments must be key/value pairs")
        self.assertStartupError(["whitelist strict 1"], ":1: plugin whitelist: unknown argument 'strict'")

    async def test_over_tcp(self):
        server, port = start_server(self, ["whitelist", "scripted connect DENY go away", "rcpt_ok"],
                                    {"whitelisthosts": "127.0.0.1"})
        plugin_of(server, "whitelist").environ = {}
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        await client.command("HELO x")
        await client.command("MAIL FROM:<a@b.example>")
        # rcpt_ok accepts any recipient of a whitelisted (immune) host, as in qpsmtpd
        self.assertEqual(await client.command("RCPT TO:<u@elsewhere.example>"),
                         (250, ["<u@elsewhere.example>, recipient ok"]))

    async def test_recipient_over_tcp(self):
        server, port = start_server(self, ["whitelist", "rcpt_ok"], {"whitelistrcpt": "example.net"})
        plugin_of(server, "whitelist").environ = {}
        client = await connect(self, port)
        await client.command("HELO x")
        await client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(await client.command("RCPT TO:<u@example.net>"), (250, ["<u@example.net>, recipient ok"]))
        self.assertEqual(await client.command("RCPT TO:<u@example.org>"), (550, ["Relaying denied (#5.7.1)"]))


# -- naughty ------------------------------------------------------------------------------------

MARK_PLUGIN = '''"""mark — test helper: store deferred rejections at connect.

Arguments: ``[type=T] TEXT`` — texts separated by ``|``; ``ONE`` stores the number 1.
"""
from qpsmtpd_tx.codes import DECLINED
from qpsmtpd_tx.plugin import Plugin


class Mark(Plugin):
    def init(self, args):
        if args and args[0].startswith("type="):
            self.reject_type = args[0][5:]
            args = args[1:]
        self.texts = " ".join(args).split("|") if args else []

    def hook_connect(self, transaction):
        for text in self.texts:
            if text == "ONE":
                transaction.connection.notes["naughty"] = 1
            else:
                self.store_deferred_reject(transaction, text)
        return DECLINED
'''


class NaughtyTests(StartupErrorMixin, unittest.TestCase):
    def plugin_dirs(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "mark"), "w") as f:
            f.write(MARK_PLUGIN)
        return "%s\n%s\n" % (directory, TEST_PLUGINS)

    def client(self, plugins, mark="You are naughty"):
        plugins = (["mark " + mark] if mark else []) + plugins
        return MemoryClient(make_server(self, plugins, {"plugin_dirs": self.plugin_dirs()}))

    def session(self, client, upto):
        """Run the usual dialogue up to (not including) ``upto``; return its replies."""
        steps = ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA", MESSAGE]
        replies = []
        for step in steps[:steps.index(upto)]:
            replies.append(client.send(step if step == MESSAGE else step + "\r\n"))
        return replies

    def test_default_rejects_at_rcpt_and_disconnects(self):
        client = self.client(["naughty", "rcpt_ok"])
        self.assertEqual(client.greeting, GREETING)
        self.assertEqual(self.session(client, "RCPT TO:<u@example.com>")[1],
                         "250 <a@b.example>, sender OK - how exciting to get mail from you!\r\n")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "550 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_clean_connection_passes(self):
        client = self.client(["naughty", "rcpt_ok"], mark=None)
        self.session(client, "RCPT TO:<u@example.com>")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "250 <u@example.com>, recipient ok\r\n")

    def test_reject_connect(self):
        client = self.client(["naughty reject connect"])
        self.assertEqual(client.greeting, "550 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_reject_mail(self):
        client = self.client(["naughty reject mail", "rcpt_ok"])
        client.command("HELO x")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "550 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_reject_data(self):
        client = self.client(["naughty reject data", "rcpt_ok"])
        self.session(client, "DATA")
        self.assertEqual(client.command("DATA"), "554 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_reject_data_post(self):
        client = self.client(["naughty reject data_post", "rcpt_ok"])
        self.assertEqual(self.session(client, MESSAGE)[-1], "354 go ahead\r\n")
        self.assertEqual(client.send(MESSAGE), "552 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_data_post_catches_what_an_earlier_plugin_let_through(self):
        client = self.client(["rcpt_ok", "naughty"])
        replies = self.session(client, MESSAGE)
        self.assertEqual(replies[2:], ["250 <u@example.com>, recipient ok\r\n", "354 go ahead\r\n"])
        self.assertEqual(client.send(MESSAGE), "552 You are naughty\r\n")

    def test_reject_type_argument(self):
        client = self.client(["naughty reject_type temp", "rcpt_ok"])
        self.session(client, "RCPT TO:<u@example.com>")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "450 You are naughty\r\n")
        self.assertFalse(client.closed)
        client = self.client(["naughty reject mail reject_type temp_disconnect", "rcpt_ok"])
        client.command("HELO x")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "421 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_marking_plugins_type_wins(self):
        client = self.client(["naughty reject_type perm", "rcpt_ok"], mark="type=temp_disconnect go away")
        self.session(client, "RCPT TO:<u@example.com>")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "421 go away\r\n")
        self.assertTrue(client.closed)

    def test_several_texts_make_a_multiline_reply(self):
        client = self.client(["naughty", "rcpt_ok"], mark="listed in one|listed in two")
        self.assertEqual(client.session.connection.notes["naughty"], "listed in one\r\nlisted in two")
        self.session(client, "RCPT TO:<u@example.com>")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "550-listed in one\r\n550 listed in two\r\n")

    def test_note_without_text(self):
        client = self.client(["naughty", "rcpt_ok"], mark="ONE")
        self.session(client, "RCPT TO:<u@example.com>")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "550 delivery denied\r\n")

    def test_hook_directly(self):
        server = make_server(self, ["naughty reject_type soft"])
        plugin = plugin_of(server, "naughty")
        txn = fake_transaction()
        self.assertEqual(plugin.naughty(txn), DECLINED)
        txn.connection.notes["naughty"] = "bad"
        self.assertEqual(plugin.naughty(txn), (DENYSOFT, "bad"))
        txn.connection.notes["naughty_reject_type"] = "disconnect"
        self.assertEqual(plugin.naughty(txn), (DENY_DISCONNECT, "bad"))
        txn.connection.notes["naughty_reject_type"] = "perm"
        self.assertEqual(plugin.naughty(txn), (DENY, "bad"))

    def test_registers_the_chosen_hook_and_data_post(self):
        for line, expected in (("naughty", {"rcpt", "data_post"}),
                               ("naughty reject CONNECT", {"connect", "data_post"}),
                               ("naughty reject data_post", {"data_post"})):
            server = make_server(self, [line])
            hooks = {h for h in ("connect", "mail", "rcpt", "data", "data_post")
                     if any(p.name == "naughty" for p, _ in server.hooks.handlers(h))}
            self.assertEqual(hooks, expected, line)
            self.assertEqual(len(server.hooks.handlers("data_post")), 1)

    def test_bad_arguments(self):
        self.assertStartupError(["naughty reject helo"],
                                ":1: plugin naughty: reject must be one of connect, mail, rcpt, data, data_post, got 'helo'")
        self.assertStartupError(["naughty reject_type maybe"], ":1: plugin naughty: reject_type must be one of")
        self.assertStartupError(["naughty when rcpt"], ":1: plugin naughty: unknown argument 'when'")
        self.assertStartupError(["naughty reject"], ":1: plugin naughty: arguments must be key/value pairs")

    async def test_over_tcp_with_earlytalker(self):
        server, port = start_server(self, ["earlytalker wait 30 reject naughty", "naughty reject mail"])
        client = SMTPClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(client.close)
        client.send("HELO early.example")
        self.assertEqual((await client.reply())[0], 220)
        self.assertEqual((await client.reply())[0], 250)
        self.assertEqual(await client.command("MAIL FROM:<a@b.example>"), (550, [EARLY]))
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))

    async def test_over_tcp(self):
        server, port = start_server(self, ["mark go away|and stay away", "naughty reject mail"],
                                    {"plugin_dirs": self.plugin_dirs()})
        client = await connect(self, port)
        await client.command("HELO x")
        self.assertEqual(await client.command("MAIL FROM:<a@b.example>"), (550, ["go away", "and stay away"]))
        await client.wait_closed()
