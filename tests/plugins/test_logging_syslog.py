"""Tests of the logging plugin logging/syslog: priorities, facility, ident, unix and UDP sockets,
dropped lines and reconnection. The tests read the datagrams from sockets they bind themselves
(a fake /dev/log, a UDP port on the loopback); the session cases run a real server over a
loopback socket (tests.support.server).
"""

import io
import os
import re
import shutil
import socket
import sys
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from qpsmtpd_tx import codes
from tests.support.content_logging_cases import assertStartupError, fake_transaction, server_with
from tests.support.harness import plugin_module
from tests.support.server import connect, start_server

syslog_module = plugin_module("logging/syslog")


#: 2026-03-05 07:08:09 local time, so the time stamp is "Mar  5 07:08:09" in any zone
FIXED_TIME = time.mktime((2026, 3, 5, 7, 8, 9, 0, 0, -1))
STAMP = b"Mar  5 07:08:09"
PID = os.getpid()


def receive_all(sock):
    """Every datagram waiting on the non-blocking ``sock``."""
    out = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


class SyslogTests(unittest.TestCase):
    def unix_listener(self, name="log"):
        """A bound unix datagram socket (a fake /dev/log); returns (socket, path)."""
        directory = tempfile.mkdtemp(prefix="qptx-syslog-", dir="/tmp")  # short: sun_path limit
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, name)
        return self.bind_unix(path), path

    def bind_unix(self, path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setblocking(False)
        self.addCleanup(sock.close)
        return sock

    def udp_listener(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        self.addCleanup(sock.close)
        return sock, sock.getsockname()[1]

    def plugin(self, args):
        server = server_with(self, [], {"logging": "logging/syslog " + args})
        plugin = server.logging_plugins[0]
        plugin.clock = lambda: FIXED_TIME
        self.addCleanup(plugin.close)
        return server, plugin

    async def test_session_lines_over_the_unix_socket(self):
        sock, path = self.unix_listener()
        server, port = start_server(self, [], {"logging": "logging/syslog loglevel LOGINFO "
                                                          "logsock " + path})
        plugin = server.logging_plugins[0]
        plugin.clock = lambda: FIXED_TIME
        self.addCleanup(plugin.close)
        client = await connect(self, port)
        receive_all(sock)
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))
        self.assertEqual(receive_all(sock), [
            b"<22>" + STAMP + b" qpsmtpd[%d]: dispatching NOOP" % PID,
            b"<22>" + STAMP + b" qpsmtpd[%d]: 250 OK" % PID,
        ])

    def test_levels_map_to_priorities_and_threshold(self):
        sock, path = self.unix_listener()
        server, plugin = self.plugin("logsock " + path)
        txn = fake_transaction()
        for level in range(8):
            plugin.hook_logging(txn, level, "rcpt", "rcpt_ok", "level %d" % level)
        # default loglevel LOGWARN: 0..4, mail facility (2 * 8)
        self.assertEqual(receive_all(sock), [
            b"<%d>%s qpsmtpd[%d]: level %d" % (16 + level, STAMP, PID, level)
            for level in range(5)])
        self.assertEqual(plugin.log_threshold, codes.LOGWARN)
        self.assertFalse(server.log_enabled(codes.LOGNOTICE))

    def test_priority_facility_ident(self):
        sock, path = self.unix_listener()
        server, plugin = self.plugin("loglevel 7 priority LOG_NOTICE facility local3 "
                                     "ident qp-tx.1 logsock " + path)
        plugin.hook_logging(None, codes.LOGDEBUG, None, None, "debug line")
        plugin.hook_logging(None, codes.LOGCRIT, None, None, "crit line")
        self.assertEqual(receive_all(sock), [
            b"<157>" + STAMP + b" qp-tx.1[%d]: debug line" % PID,
            b"<157>" + STAMP + b" qp-tx.1[%d]: crit line" % PID])

    def test_names_without_log_prefix(self):
        sock, path = self.unix_listener()
        server, plugin = self.plugin("loglevel info priority err facility LOG_DAEMON logsock "
                                     + path)
        self.assertEqual((plugin.log_threshold, plugin.priority, plugin.facility), (6, 3, 3))
        plugin.hook_logging(None, codes.LOGINFO, None, None, "x")
        self.assertEqual(receive_all(sock), [b"<27>" + STAMP + b" qpsmtpd[%d]: x" % PID])

    def test_ids(self):
        sock, path = self.unix_listener()
        server, plugin = self.plugin("ids 1 logsock " + path)
        txn = fake_transaction()
        plugin.hook_logging(txn, codes.LOGWARN, "rcpt", "rcpt_ok", "fail: x")
        plugin.hook_logging(None, codes.LOGWARN, None, None, "no connection")
        self.assertEqual(receive_all(sock), [
            b"<20>%s qpsmtpd[%d]: %s (rcpt) rcpt_ok: fail: x"
            % (STAMP, PID, txn.connection.id.encode()),
            b"<20>%s qpsmtpd[%d]: no connection" % (STAMP, PID)])

    def test_own_lines_and_undecodable_bytes(self):
        sock, path = self.unix_listener()
        server, plugin = self.plugin("logsock " + path)
        plugin.hook_logging(None, codes.LOGERROR, None, plugin.name, "mine")
        plugin.hook_logging(None, codes.LOGERROR, None, None, "caf\u00e9 \udcff")
        self.assertEqual(receive_all(sock),
                         [b"<19>" + STAMP + b" qpsmtpd[%d]: caf\xc3\xa9 \xff" % PID])

    async def test_udp_with_host_name(self):
        sock, port = self.udp_listener()
        server, port_smtp = start_server(self, [], {
            "logging": "logging/syslog loglevel LOGINFO logsock udp:127.0.0.1:%d" % port})
        plugin = server.logging_plugins[0]
        plugin.clock = lambda: FIXED_TIME
        plugin.hostname = "mx1"
        self.addCleanup(plugin.close)
        client = await connect(self, port_smtp)
        await deferLater(reactor, 0.05, lambda: None)
        receive_all(sock)
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))
        await deferLater(reactor, 0.05, lambda: None)  # UDP over loopback: give it a moment
        self.assertEqual(receive_all(sock), [
            b"<22>" + STAMP + b" mx1 qpsmtpd[%d]: dispatching NOOP" % PID,
            b"<22>" + STAMP + b" mx1 qpsmtpd[%d]: 250 OK" % PID,
        ])

    def test_full_socket_drops_and_counts_then_reports(self):
        sock, path = self.unix_listener()
        server, plugin = self.plugin("logsock " + path)
        # Nobody reads the socket: a blocking send would hang here; dropping is the proof.
        for n in range(3000):
            plugin.hook_logging(None, codes.LOGERROR, None, None, "line %d" % n)
        self.assertGreater(plugin.dropped, 0)
        self.assertEqual(plugin.sent + plugin.dropped, 3000)
        received = receive_all(sock)
        self.assertEqual(len(received), plugin.sent)
        self.assertEqual(received[0], b"<19>" + STAMP + b" qpsmtpd[%d]: line 0" % PID)
        dropped = plugin.dropped
        plugin.hook_logging(None, codes.LOGERROR, None, None, "after")
        self.assertEqual(receive_all(sock), [
            b"<20>%s qpsmtpd[%d]: logging/syslog: %d log lines dropped" % (STAMP, PID, dropped),
            b"<19>%s qpsmtpd[%d]: after" % (STAMP, PID)])
        self.assertEqual((plugin.dropped, plugin.unreported), (dropped, 0))

    def test_reconnects_when_the_daemon_restarts(self):
        sock, path = self.unix_listener()
        server, plugin = self.plugin("logsock " + path)
        plugin.hook_logging(None, codes.LOGERROR, None, None, "one")
        self.assertEqual(len(receive_all(sock)), 1)
        sock.close()
        os.unlink(path)
        restarted = self.bind_unix(path)
        plugin.hook_logging(None, codes.LOGERROR, None, None, "two")
        self.assertEqual(receive_all(restarted), [b"<19>" + STAMP + b" qpsmtpd[%d]: two" % PID])
        self.assertEqual(plugin.dropped, 0)

    def test_socket_missing_at_start(self):
        directory = tempfile.mkdtemp(prefix="qptx-syslog-", dir="/tmp")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "log")
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        now = [FIXED_TIME]
        self.patch(syslog_module.Syslog, "clock", lambda self: now[0])
        server, plugin = self.plugin("logsock tcp,%s" % path)
        self.assertEqual(stderr.getvalue(),
                         "logging/syslog: logsock tcp is not supported, skipped\n"
                         "logging/syslog: cannot open %s yet; lines are dropped until it can "
                         "be opened\n" % path)
        plugin.clock = lambda: now[0]
        plugin.hook_logging(None, codes.LOGERROR, None, None, "lost")
        self.assertEqual(plugin.dropped, 1)
        sock = self.bind_unix(path)
        plugin.hook_logging(None, codes.LOGERROR, None, None, "lost too (retry waits 1 s)")
        self.assertEqual(plugin.dropped, 2)
        now[0] += 1.5
        plugin.hook_logging(None, codes.LOGERROR, None, None, "found")
        self.assertEqual(receive_all(sock), [
            b"<20>Mar  5 07:08:10 qpsmtpd[%d]: logging/syslog: 2 log lines dropped" % PID,
            b"<19>Mar  5 07:08:10 qpsmtpd[%d]: found" % PID])

    def test_parse_logsock(self):
        parse = syslog_module.parse_logsock
        self.assertEqual(parse("/dev/log"), [("unix", "/dev/log")])
        self.assertEqual(parse("unix"), [("unix", "/dev/log")])
        self.assertEqual(parse("native,udp"), [("unix", "/dev/log"), ("udp", "127.0.0.1", 514)])
        self.assertEqual(parse("udp:log.example"), [("udp", "log.example", 514)])
        self.assertEqual(parse("udp:192.0.2.1:5514"), [("udp", "192.0.2.1", 5514)])
        self.assertEqual(parse("udp:[2001:db8::1]:5514"), [("udp", "2001:db8::1", 5514)])
        self.assertEqual(parse("udp:[::1]"), [("udp", "::1", 514)])
        self.assertEqual(parse("tcp,udp"), [("unsupported", "tcp"), ("udp", "127.0.0.1", 514)])

    def test_udp_ipv6(self):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.bind(("::1", 0))
        except OSError:
            sock.close()
            raise unittest.SkipTest("no IPv6 loopback")
        self.addCleanup(sock.close)
        sock.settimeout(5)
        server, plugin = self.plugin("logsock udp:[::1]:%d" % sock.getsockname()[1])
        plugin.hostname = "mx1"
        plugin.hook_logging(None, codes.LOGERROR, None, None, "v6")
        self.assertEqual(sock.recv(65536), b"<19>" + STAMP + b" mx1 qpsmtpd[%d]: v6" % PID)

    def test_bad_arguments(self):
        for args, message in (
                ("loglevel", "arguments must be key/value pairs"),
                ("colour red", "unknown argument 'colour'"),
                ("loglevel LOUD", "unknown log level 'LOUD'"),
                ("priority LOG_LOUD", "unknown priority 'LOG_LOUD'"),
                ("priority 8", "priority must be 0-7, got '8'"),
                ("facility LOG_SPOOL", "unknown facility 'LOG_SPOOL'"),
                ("ident qp/tx", "ident may hold letters, digits, _, - and . only, got 'qp/tx'"),
                ("ids yes", "ids must be 0 or 1, got 'yes'"),
                ("logsock tcp", "logsock 'tcp': no supported socket"),
                ("logsock stream,console", "logsock 'stream,console': no supported socket"),
                ("logsock udp:host:port", "logsock: bad port in 'udp:host:port'"),
                ("logsock udp:[::1", "logsock: bad address in 'udp:[::1'"),
                ("logsock log", "logsock: 'log' is not a socket path")):
            assertStartupError(self, [], r"^/\S+/logging:2: plugin logging/syslog: %s"
                               % re.escape(message),
                               {"logging": "logging/devnull\nlogging/syslog " + args})
