"""Tests of the connection_time plugin (a connection-level plugin that logs how long each
connection lasted): its log lines, levels and start-up errors.

Protocol-level cases use MemoryClient (a real SMTPProtocol on an in-memory transport, with
Twisted's Clock as the plugin's clock); one case runs over a real loopback socket
(tests.support.server). Reply texts are qpsmtpd 0.94's, read from its plugins in
/usr/share/qpsmtpd/plugins and checked against the Perl server where they differ from the
documentation.
"""

from twisted.internet.task import Clock
from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGERROR, LOGINFO, LOGNOTICE, LOGWARN
from tests.support.connection_cases import QUIT_REPLY, fake_transaction, hang_up
from tests.support.harness import MemoryClient, StartupErrorMixin, capture_log, make_server
from tests.support.harness import loaded_plugin as plugin_of
from tests.support.server import connect, start_server, wait_sessions_closed


class ConnectionTimeTests(StartupErrorMixin, unittest.TestCase):
    def session(self, line="connection_time", seconds=2.5):
        server = make_server(self, [line])
        plugin = plugin_of(server, "connection_time")
        plugin.clock = clock = Clock()
        clock.advance(1000)
        log = capture_log(self, server, plugin_names=True)
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
        log = capture_log(self, server, plugin_names=True)
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
        log = capture_log(self, server, plugin_names=True)
        client = await connect(self, port)
        self.assertEqual((await client.command("QUIT"))[0], 221)
        await client.wait_closed()
        await wait_sessions_closed(server)
        lines = [(level, message) for level, name, message in log if name == "connection_time"]
        self.assertEqual(len(lines), 2, lines)
        self.assertEqual(lines[1][0], LOGINFO)
        self.assertRegex(lines[1][1], r"^[0-9]+\.[0-9]{3} s\.$")
