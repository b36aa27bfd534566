"""The content plugins headers (alias check_basicheaders) and loop (alias check_loop), the
logging plugins logging/syslog, logging/adaptive, logging/connection_id and
logging/transaction_id, and http_config.

Each rule is tested on its accepting and its refusing side, most of them end to end over a
real loopback socket (tests.support.server); the syslog tests read the datagrams from sockets
they bind themselves, the http_config tests run a real twisted.web server on 127.0.0.1.
Reply texts are qpsmtpd 0.94's (read from /usr/share/qpsmtpd/plugins).
"""

import email.utils
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
from twisted.protocols.policies import WrappingFactory
from twisted.trial import unittest
from twisted.web import resource, server as web_server

from qpsmtpd_tx import codes
from qpsmtpd_tx.codes import DECLINED, DENY, DENYSOFT, OK
from qpsmtpd_tx.message import Header
from tests.support import harness
from tests.support.harness import make_server, plugin_module, startup_error
from tests.support.server import connect, keep_signal_handlers, start_server

DAY = 24 * 3600
QUEUE_OK = "scripted queue OK Queued"


def server_with(testcase, plugins, files=None):
    """A loaded server that does not listen (for calling plugin hooks directly)."""
    keep_signal_handlers(testcase)
    return make_server(testcase, plugins, files)


def fake_transaction(header_text=None, data_size=100, remote_ip="192.0.2.1"):
    txn = harness.fake_transaction(remote_ip)
    txn.id = "c1.1"
    if header_text is not None:
        txn.header = Header.parse(header_text.encode())
    txn.data_size = data_size
    return txn


def rfc_date(offset_days=0.0):
    return email.utils.formatdate(time.time() + offset_days * DAY)


async def send_message(testcase, client, header_lines, body_lines=("body",),
                       rcpt="u@example.com", helo=True):
    """Run one transaction; return the reply to the final dot."""
    if helo:
        testcase.assertEqual((await client.command("HELO client.example"))[0], 250)
    testcase.assertEqual((await client.command("MAIL FROM:<s@sender.example>"))[0], 250)
    testcase.assertEqual((await client.command("RCPT TO:<%s>" % rcpt))[0], 250)
    testcase.assertEqual(await client.command("DATA"), (354, ["go ahead"]))
    for line in list(header_lines) + [""] + list(body_lines):
        client.send(line)
    return await client.command(".")


def assertStartupError(testcase, plugins, pattern, files=None):
    """Loading fails with a StartupError whose text matches ``pattern`` (a regex)."""
    message = startup_error(testcase, plugins, files)
    testcase.assertRegex(message, pattern)
    return message


# -- headers / check_basicheaders ------------------------------------------------------------------

headers_module = plugin_module("headers")

GOOD_HEADER = ["From: a@sender.example", "To: u@example.com", "Subject: hi"]


class HeadersEndToEndTests(unittest.TestCase):
    async def deliver(self, args, header_lines, files=None, body_lines=("body",), name="headers"):
        server, port = start_server(self, ["%s %s" % (name, args), "rcpt_ok", QUEUE_OK], files)
        client = await connect(self, port)
        return await send_message(self, client, header_lines, body_lines)

    async def test_accepts_a_good_message(self):
        reply = await self.deliver("require From,Date future 2 past 15",
                                   GOOD_HEADER + ["Date: " + rfc_date()])
        self.assertEqual(reply, (250, ["Queued"]))

    async def test_missing_from(self):
        reply = await self.deliver("reject 1", ["To: u@example.com", "Subject: hi"])
        self.assertEqual(reply, (552, ["We require a valid From header"]))

    async def test_empty_from_counts_as_missing(self):
        reply = await self.deliver("reject 1", ["From: ", "Subject: hi"])
        self.assertEqual(reply, (552, ["We require a valid From header"]))

    async def test_date_not_required_by_default(self):
        self.assertEqual(await self.deliver("reject 1", GOOD_HEADER), (250, ["Queued"]))

    async def test_every_missing_required_header_is_listed(self):
        reply = await self.deliver("require From,Date,Message-ID", ["Subject: hi"])
        self.assertEqual(reply, (552, ["We require a valid From header",
                                       "We require a valid Date header",
                                       "We require a valid Message-ID header"]))

    async def test_duplicated_singular_headers(self):
        reply = await self.deliver("reject 1", GOOD_HEADER + ["Subject: again", "cc: x@y.example",
                                                              "Cc: z@y.example"])
        self.assertEqual(reply, (552, [
            "Only one Cc header allowed. See RFC 5322, Section 3.6",
            "Only one Subject header allowed. See RFC 5322, Section 3.6"]))

    async def test_repeated_non_singular_headers_pass(self):
        reply = await self.deliver("reject 1", GOOD_HEADER + [
            "Received: from a", "Received: from b", "X-Tag: 1", "X-Tag: 2", "Comments: c1",
            "Comments: c2"])
        self.assertEqual(reply, (250, ["Queued"]))

    async def test_missing_and_duplicated_together(self):
        reply = await self.deliver("reject 1", ["To: a@b.example", "To: c@d.example"])
        self.assertEqual(reply, (552, ["We require a valid From header",
                                       "Only one To header allowed. See RFC 5322, Section 3.6"]))

    async def test_future_date(self):
        reply = await self.deliver("future 2", GOOD_HEADER + ["Date: " + rfc_date(3)])
        self.assertEqual(reply, (552, ["The Date header is too far in the future"]))

    async def test_future_date_within_limit(self):
        reply = await self.deliver("future 2", GOOD_HEADER + ["Date: " + rfc_date(1.9)])
        self.assertEqual(reply, (250, ["Queued"]))

    async def test_past_date(self):
        reply = await self.deliver("past 15", GOOD_HEADER + ["Date: " + rfc_date(-16)])
        self.assertEqual(reply, (552, ["The Date header is too far in the past"]))

    async def test_past_date_within_limit(self):
        reply = await self.deliver("past 15", GOOD_HEADER + ["Date: " + rfc_date(-14)])
        self.assertEqual(reply, (250, ["Queued"]))

    async def test_dates_not_tested_without_future_and_past(self):
        reply = await self.deliver("require From,Date",
                                   GOOD_HEADER + ["Date: " + rfc_date(-4000)])
        self.assertEqual(reply, (250, ["Queued"]))

    async def test_unparseable_date_is_skipped(self):
        reply = await self.deliver("future 1 past 1", GOOD_HEADER + ["Date: the day before"])
        self.assertEqual(reply, (250, ["Queued"]))

    async def test_date_range_is_answered_first(self):
        reply = await self.deliver("past 2", ["Subject: a", "Subject: b",
                                              "Date: " + rfc_date(-10)])
        self.assertEqual(reply, (552, ["The Date header is too far in the past"]))

    async def test_reject_0_only_logs(self):
        reply = await self.deliver("reject 0 past 1", ["Date: " + rfc_date(-10)])
        self.assertEqual(reply, (250, ["Queued"]))

    async def test_reject_type_temp(self):
        reply = await self.deliver("reject_type temp", ["Subject: hi"])
        self.assertEqual(reply, (452, ["We require a valid From header"]))

    async def test_reject_type_disconnect(self):
        server, port = start_server(self, ["headers reject_type disconnect", "rcpt_ok", QUEUE_OK])
        client = await connect(self, port)
        reply = await send_message(self, client, ["Subject: hi"])
        self.assertEqual(reply, (552, ["We require a valid From header"]))
        await client.wait_closed()

    async def test_empty_message(self):
        server, port = start_server(self, ["headers", "rcpt_ok", QUEUE_OK])
        client = await connect(self, port)
        await client.command("HELO client.example")
        await client.command("MAIL FROM:<s@sender.example>")
        await client.command("RCPT TO:<u@example.com>")
        self.assertEqual((await client.command("DATA"))[0], 354)
        self.assertEqual(await client.command("."), (552, ["You must send some data first"]))

    async def test_relay_client_is_immune(self):
        reply = await self.deliver("require From,Date", ["Subject: hi", "Subject: hi"],
                                   files={"relayclients": "127.0.0.1"})
        self.assertEqual(reply[0], 552)  # relayclients alone does nothing without relay
        server, port = start_server(self, ["relay", "headers require From,Date", "rcpt_ok",
                                           QUEUE_OK], {"relayclients": "127.0.0.1"})
        client = await connect(self, port)
        reply = await send_message(self, client, ["Subject: hi", "Subject: hi"])
        self.assertEqual(reply, (250, ["Queued"]))

    async def test_reject_naughty_defers_to_the_naughty_plugin(self):
        server, port = start_server(self, ["headers reject naughty reject_type temp", "rcpt_ok",
                                           QUEUE_OK])
        client = await connect(self, port)
        session = next(iter(server.sessions))
        reply = await send_message(self, client, ["Subject: hi"])
        self.assertEqual(reply, (250, ["Queued"]))
        notes = session.connection.notes
        self.assertEqual(notes["naughty"], "We require a valid From header")
        self.assertEqual(notes["naughty_reject_type"], "temp")
        self.assertEqual(notes["karma"], -1)

    async def test_naughty_note_untouched_when_rejecting(self):
        server, port = start_server(self, ["headers", "rcpt_ok", QUEUE_OK])
        client = await connect(self, port)
        session = next(iter(server.sessions))
        self.assertEqual((await send_message(self, client, ["Subject: hi"]))[0], 552)
        self.assertNotIn("naughty", session.connection.notes)
        self.assertEqual(session.connection.notes["karma"], -1)

    async def test_check_basicheaders_alias_requires_date(self):
        reply = await self.deliver("", ["From: a@b.example"], name="check_basicheaders")
        self.assertEqual(reply, (552, ["We require a valid Date header"]))
        reply = await self.deliver("", ["From: a@b.example", "Date: " + rfc_date()],
                                   name="check_basicheaders")
        self.assertEqual(reply, (250, ["Queued"]))

    async def test_check_basicheaders_old_days_argument(self):
        for args in ("5", "days 5"):
            reply = await self.deliver(args, ["From: a@b.example", "Date: " + rfc_date(-6)],
                                       name="check_basicheaders")
            self.assertEqual(reply, (552, ["The Date header is too far in the past"]), args)
            reply = await self.deliver(args, ["From: a@b.example", "Date: " + rfc_date(6)],
                                       name="check_basicheaders")
            self.assertEqual(reply, (552, ["The Date header is too far in the future"]), args)
            reply = await self.deliver(args, ["From: a@b.example", "Date: " + rfc_date(-4)],
                                       name="check_basicheaders")
            self.assertEqual(reply, (250, ["Queued"]), args)

    async def test_check_basicheaders_require_overrides(self):
        reply = await self.deliver("require From", ["From: a@b.example"],
                                   name="check_basicheaders")
        self.assertEqual(reply, (250, ["Queued"]))


class HeadersUnitTests(unittest.TestCase):
    def plugin(self, args="", name="headers"):
        server = server_with(self, [("%s %s" % (name, args)).strip()])
        return server.plugins[0]

    def test_defaults(self):
        plugin = self.plugin()
        self.assertEqual(plugin.required, ("From",))
        self.assertEqual((plugin.future, plugin.past, plugin.reject, plugin.reject_type),
                         (None, None, "1", "perm"))
        self.assertEqual(self.plugin(name="check_basicheaders").required, ("From", "Date"))
        self.assertEqual(self.plugin(name="check_basicheaders:1").required, ("From", "Date"))

    def test_days_sets_only_the_missing_limits(self):
        plugin = self.plugin("days 3 past 10")
        self.assertEqual((plugin.future, plugin.past), (3.0, 10.0))
        plugin = self.plugin("future 0.5")
        self.assertEqual((plugin.future, plugin.past), (0.5, None))

    def test_karma_per_failure(self):
        plugin = self.plugin("require From,Date past 1")
        txn = fake_transaction("Subject: a\nSubject: b\nDate: %s\n" % rfc_date(-3))
        self.assertEqual(plugin.hook_data_post(txn),
                         (DENY, "The Date header is too far in the past"))
        self.assertEqual(txn.connection.notes["karma"], -3)

    def test_whitelisted_host_and_sender_are_immune(self):
        plugin = self.plugin()
        txn = fake_transaction("Subject: a\n")
        txn.connection.notes["whitelisthost"] = True
        self.assertEqual(plugin.hook_data_post(txn), DECLINED)
        txn = fake_transaction("Subject: a\n")
        txn.notes["whitelistsender"] = True
        self.assertEqual(plugin.hook_data_post(txn), DECLINED)
        txn = fake_transaction("Subject: a\n")
        self.assertEqual(plugin.hook_data_post(txn), (DENY, "We require a valid From header"))

    def test_empty_message_is_refused_even_when_immune(self):
        txn = fake_transaction("", data_size=0)
        txn.connection.relay_client = True
        self.assertEqual(self.plugin().hook_data_post(txn),
                         (DENY, "You must send some data first"))

    def test_missing_header(self):
        txn = fake_transaction(None)
        self.assertEqual(self.plugin("reject_type soft").hook_data_post(txn),
                         (DENYSOFT, "Headers are missing"))

    def test_dates_with_zones_and_without(self):
        plugin = self.plugin("future 1 past 1")
        now = time.mktime((2026, 3, 5, 12, 0, 0, 0, 0, -1))
        header = Header.parse(b"Date: Thu, 05 Mar 2026 12:00:00\n")  # no zone: local time
        self.assertIsNone(plugin.invalid_date_range(fake_transaction(), header, now))
        header = Header.parse(b"Date: Fri, 06 Mar 2026 13:00:00\n")
        self.assertEqual(plugin.invalid_date_range(fake_transaction(), header, now),
                         "The Date header is too far in the future")
        stamp = headers_module.date_timestamp("Thu, 05 Mar 2026 12:00:00 +0100")
        self.assertEqual(stamp, headers_module.date_timestamp("Thu, 05 Mar 2026 11:00:00 +0000"))
        self.assertIsNone(headers_module.date_timestamp("2026-03-05T12:00:00Z"))
        self.assertIsNone(headers_module.date_timestamp(""))

    def test_bad_arguments(self):
        for line, message in (
                ("headers future", "arguments must be key/value pairs, got 'future'"),
                ("headers future 1 past", "arguments must be key/value pairs"),
                ("headers colour red", "unknown argument 'colour'"),
                ("headers future soon", "future must be a number of days, got 'soon'"),
                ("headers past -1", "past must be a number of days, got '-1'"),
                ("headers days x", "days must be a number of days"),
                ("check_basicheaders x", "arguments must be key/value pairs, got 'x'"),
                ("check_basicheaders -5", "arguments must be key/value pairs, got '-5'"),
                ("headers reject yes", "reject must be 0, 1 or naughty, got 'yes'"),
                ("headers reject_type never", "reject_type must be one of"),
                ("headers require From,Da:te", "require: 'Da:te' is not a header field name"),
                ("headers loglevel LOUD", "bad loglevel 'LOUD'")):
            name = line.split()[0]
            assertStartupError(self, ["rcpt_ok", line],
                               r"^/\S+/plugins:2: plugin %s: .*%s" % (name, re.escape(message)))


# -- loop / check_loop ------------------------------------------------------------------------------

class LoopTests(unittest.TestCase):
    async def deliver(self, plugin_line, received, delivered_to=0):
        server, port = start_server(self, [plugin_line, "rcpt_ok", QUEUE_OK])
        client = await connect(self, port)
        header = (["Received: from hop%d" % n for n in range(received)]
                  + ["Delivered-To: box%d@example.com" % n for n in range(delivered_to)]
                  + ["From: a@b.example"])
        return await send_message(self, client, header)

    async def test_default_limit_is_100_counting_our_received(self):
        # 98 + the Received header this server adds = 99: accepted
        self.assertEqual(await self.deliver("loop", 98), (250, ["Queued"]))
        # 99 + ours = 100: refused
        self.assertEqual(await self.deliver("loop", 99), (552, ["Too many hops (#5.4.6)"]))

    async def test_delivered_to_counts(self):
        self.assertEqual(await self.deliver("loop 5", 2, 2), (552, ["Too many hops (#5.4.6)"]))
        self.assertEqual(await self.deliver("loop 5", 1, 2), (250, ["Queued"]))
        self.assertEqual(await self.deliver("loop 5", 0, 3), (250, ["Queued"]))

    async def test_max_hops_keyword(self):
        self.assertEqual(await self.deliver("loop max_hops 3", 2), (552, ["Too many hops (#5.4.6)"]))
        self.assertEqual(await self.deliver("loop max_hops 3", 1), (250, ["Queued"]))

    async def test_check_loop_alias(self):
        self.assertEqual(await self.deliver("check_loop 4", 3), (552, ["Too many hops (#5.4.6)"]))
        self.assertEqual(await self.deliver("check_loop 4", 2), (250, ["Queued"]))

    def test_zero_means_default(self):
        server = server_with(self, ["loop 0", "check_loop", "loop:1 7"])
        self.assertEqual([p.max_hops for p in server.plugins], [100, 100, 7])
        self.assertEqual([p.name for p in server.plugins], ["loop", "check_loop", "loop_3a1"])

    def test_hook_directly(self):
        plugin = server_with(self, ["loop 2"]).plugins[0]
        self.assertEqual(plugin.hook_data_post(fake_transaction("Received: x\nFrom: y\n")),
                         DECLINED)
        self.assertEqual(plugin.hook_data_post(fake_transaction("received: x\nDELIVERED-TO: y\n")),
                         (DENY, "Too many hops (#5.4.6)"))
        self.assertEqual(plugin.hook_data_post(fake_transaction(None)), DECLINED)

    def test_bad_arguments(self):
        for line, message in (("loop x", "max_hops must be a whole number, got 'x'"),
                              ("loop -3", "max_hops must be a whole number, got '-3'"),
                              ("loop 1 2", "too many arguments '1 2'"),
                              ("loop max_hops", "max_hops needs a value"),
                              ("check_loop 10 extra", "too many arguments '10 extra'")):
            name = line.split()[0]
            assertStartupError(self, ["rcpt_ok", line],
                               r"^/\S+/plugins:2: plugin %s: %s" % (name, re.escape(message)))


# -- logging/syslog --------------------------------------------------------------------------------

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


# -- logging/adaptive -------------------------------------------------------------------------------

class AdaptiveTests(unittest.TestCase):
    def plugin(self, args=""):
        server = server_with(self, [], {"logging": ("logging/adaptive " + args).strip()})
        plugin = server.logging_plugins[0]
        plugin.stream = io.StringIO()
        return server, plugin

    def test_levels(self):
        server, plugin = self.plugin()
        self.assertEqual((plugin.accept, plugin.reject, plugin.prefix, plugin.log_threshold),
                         (codes.LOGERROR, codes.LOGWARN, "`", codes.LOGWARN))
        server, plugin = self.plugin("accept 6 reject LOGDEBUG prefix +")
        self.assertEqual((plugin.accept, plugin.reject, plugin.prefix, plugin.log_threshold),
                         (6, 7, "+", 7))

    def test_writes_at_once_and_replays_accepted_transactions(self):
        server, plugin = self.plugin()
        txn = fake_transaction()
        cid = txn.connection.id
        plugin.hook_logging(txn, codes.LOGWARN, "rcpt", "rcpt_ok", "warn line")
        plugin.hook_logging(txn, codes.LOGERROR, "connect", None, "core line in a hook")
        plugin.hook_logging(txn, codes.LOGCRIT, None, None, "core line")
        plugin.hook_logging(txn, codes.LOGNOTICE, None, None, "too verbose")
        plugin.hook_logging(None, codes.LOGERROR, None, "relay", "no connection")
        plugin.hook_logging(txn, codes.LOGERROR, None, plugin.name, "its own line")
        self.assertEqual(plugin.stream.getvalue(),
                         "%s rcpt_ok plugin: warn line\n"
                         "%s running plugin (connect): core line in a hook\n"
                         "%s core line\n"
                         "relay plugin: no connection\n" % (cid, cid, cid))
        plugin.stream = io.StringIO()
        plugin.hook_reset_transaction(txn)
        self.assertEqual(plugin.stream.getvalue(),
                         "%s ` running plugin (connect): core line in a hook\n"
                         "%s ` core line\n" % (cid, cid))

    def test_denied_transaction_is_not_replayed(self):
        server, plugin = self.plugin("accept LOGWARN")
        txn = fake_transaction()
        plugin.hook_logging(txn, codes.LOGWARN, "rcpt", "rcpt_ok", "fail")
        plugin.hook_deny(txn, "rcpt_ok", DENY, "Relaying denied (#5.7.1)")
        plugin.stream = io.StringIO()
        plugin.hook_reset_transaction(txn)
        self.assertEqual(plugin.stream.getvalue(), "")
        # the refusal was the old transaction's only (qpsmtpd kept refusing replays forever)
        txn2 = fake_transaction()
        plugin.hook_logging(txn2, codes.LOGWARN, "rcpt", "rcpt_ok", "fine")
        plugin.stream = io.StringIO()
        plugin.hook_reset_transaction(txn2)
        self.assertEqual(plugin.stream.getvalue(),
                         "%s ` rcpt_ok plugin: fine\n" % txn2.connection.id)

    def test_accept_above_reject_keeps_unwritten_lines(self):
        server, plugin = self.plugin("accept LOGINFO reject LOGERROR prefix ACC")
        txn = fake_transaction()
        plugin.hook_logging(txn, codes.LOGINFO, "mail", "badmailfrom", "pass")
        self.assertEqual(plugin.stream.getvalue(), "")
        plugin.hook_reset_transaction(txn)
        self.assertEqual(plugin.stream.getvalue(),
                         "%s ACC badmailfrom plugin: pass\n" % txn.connection.id)

    def test_kept_lines_are_bounded(self):
        server, plugin = self.plugin("accept 7 reject 0")
        txn = fake_transaction()
        for n in range(1005):
            plugin.hook_logging(txn, codes.LOGINFO, None, None, "l%d" % n)
        plugin.hook_reset_transaction(txn)
        lines = plugin.stream.getvalue().splitlines()
        self.assertEqual(len(lines), 1001)
        self.assertEqual(lines[0], "%s ` l0" % txn.connection.id)
        self.assertEqual(lines[-1], "%s ` 5 more lines not kept" % txn.connection.id)

    async def run_session(self, logging_line):
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        server, port = start_server(self, ["rcpt_ok", QUEUE_OK], {"logging": logging_line})
        client = await connect(self, port)
        session = next(iter(server.sessions))
        cid = session.connection.id
        # an accepted message, then a transaction with a refused recipient
        self.assertEqual(await send_message(self, client, ["From: a@b.example"]),
                         (250, ["Queued"]))
        accepted_txn = "%s.3" % cid  # .1 before HELO, .2 after it, .3 from MAIL on
        self.assertEqual((await client.command("MAIL FROM:<s@sender.example>"))[0], 250)
        self.assertEqual(await client.command("RCPT TO:<x@elsewhere.example>"),
                         (550, ["Relaying denied (#5.7.1)"]))
        self.assertEqual(await client.command("RSET"), (250, ["OK"]))
        self.assertEqual((await client.command("QUIT"))[0], 221)
        await client.wait_closed()
        return stderr.getvalue().splitlines(), cid, accepted_txn

    async def test_session_end_to_end(self):
        lines, cid, accepted_txn = await self.run_session(
            "logging/adaptive accept LOGNOTICE reject LOGINFO")
        outcome = ("message %s from <s@sender.example> to <u@example.com>, 24 bytes: "
                   "250 Queued" % accepted_txn)
        # written at once: everything at LOGINFO
        self.assertIn("%s dispatching RCPT TO:<x@elsewhere.example>" % cid, lines)
        self.assertIn("%s 550 Relaying denied (#5.7.1)" % cid, lines)
        self.assertIn("%s rcpt_ok plugin: fail: elsewhere.example not in rcpthosts" % cid, lines)
        self.assertIn("%s %s" % (cid, outcome), lines)
        # replayed: the LOGNOTICE lines of the transactions nothing refused (the one before
        # HELO, with qpsmtpd's "Connection from", and the accepted message), after them
        replayed = [line for line in lines if line.startswith(cid + " ` ")]
        self.assertEqual(replayed, ["%s ` Connection from Unknown [127.0.0.1]" % cid,
                                    "%s ` %s" % (cid, outcome)])
        self.assertGreater(lines.index(replayed[1]), lines.index("%s %s" % (cid, outcome)))

    def test_bad_arguments(self):
        for args, message in (("accept", "arguments must be key/value pairs"),
                              ("accept LOUD", "unknown log level 'LOUD'"),
                              ("reject NOISY", "unknown log level 'NOISY'"),
                              ("level 3", "unknown argument 'level'")):
            assertStartupError(self, [], r"^/\S+/logging:1: plugin logging/adaptive: %s"
                               % re.escape(message), {"logging": "logging/adaptive " + args})


# -- logging/connection_id, logging/transaction_id ---------------------------------------------------

class IdLoggingTests(unittest.TestCase):
    def plugin(self, line):
        server = server_with(self, [], {"logging": line})
        plugin = server.logging_plugins[0]
        plugin.stream = io.StringIO()
        return server, plugin

    def test_connection_id_format_and_threshold(self):
        server, plugin = self.plugin("logging/connection_id LOGNOTICE")
        txn = fake_transaction()
        cid = txn.connection.id
        plugin.hook_logging(txn, codes.LOGNOTICE, "rcpt", "rcpt_ok", "fail: x")
        plugin.hook_logging(txn, codes.LOGINFO, "rcpt", "rcpt_ok", "not written")
        plugin.hook_logging(txn, codes.LOGERROR, "connect", None, "core in a hook")
        plugin.hook_logging(txn, codes.LOGERROR, None, None, "core")
        plugin.hook_logging(None, codes.LOGERROR, None, None, "no connection")
        plugin.hook_logging(txn, codes.LOGERROR, None, plugin.name, "its own")
        self.assertEqual(plugin.stream.getvalue(),
                         "%s rcpt_ok plugin: fail: x\n"
                         "%s running plugin (connect): core in a hook\n"
                         "%s core\n"
                         "??? no connection\n" % (cid, cid, cid))
        self.assertTrue(server.log_enabled(codes.LOGNOTICE))
        self.assertFalse(server.log_enabled(codes.LOGINFO))

    def test_transaction_id_format_and_default_level(self):
        server, plugin = self.plugin("logging/transaction_id")
        self.assertEqual(plugin.log_threshold, codes.LOGWARN)
        txn = fake_transaction()
        txn.id = "7f.3"
        plugin.hook_logging(txn, codes.LOGWARN, "data_post", "loop", "fail")
        plugin.hook_logging(txn, codes.LOGNOTICE, None, None, "not written")
        plugin.hook_logging(None, codes.LOGWARN, None, None, "outside")
        self.assertEqual(plugin.stream.getvalue(), "7f.3 loop plugin: fail\n??? outside\n")

    async def run_session(self, logging_line):
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        server, port = start_server(self, ["rcpt_ok", QUEUE_OK], {"logging": logging_line})
        client = await connect(self, port)
        cid = next(iter(server.sessions)).connection.id
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))
        self.assertEqual(await send_message(self, client, ["From: a@b.example"]),
                         (250, ["Queued"]))
        self.assertEqual(await client.command("RCPT TO:<x@elsewhere.example>"),
                         (503, ["Use MAIL before RCPT"]))
        return stderr.getvalue().splitlines(), cid

    async def test_connection_id_end_to_end(self):
        lines, cid = await self.run_session("logging/connection_id LOGINFO")
        self.assertIn("%s dispatching NOOP" % cid, lines)
        self.assertIn("%s 250 OK" % cid, lines)
        self.assertIn("%s rcpt_ok plugin: pass: example.com in rcpthosts" % cid, lines)
        self.assertIn("%s 503 Use MAIL before RCPT" % cid, lines)
        for line in lines:
            self.assertTrue(line.startswith(cid + " ") or line.startswith("??? "), line)

    async def test_transaction_id_end_to_end(self):
        lines, cid = await self.run_session("logging/transaction_id LOGINFO")
        # .1 before HELO, .2 after HELO, .3 after MAIL, .4 after the message
        self.assertIn("%s.1 dispatching NOOP" % cid, lines)
        self.assertIn("%s.1 dispatching HELO client.example" % cid, lines)
        self.assertIn("%s.2 dispatching MAIL FROM:<s@sender.example>" % cid, lines)
        self.assertIn("%s.3 rcpt_ok plugin: pass: example.com in rcpthosts" % cid, lines)
        self.assertIn("%s.3 message %s.3 from <s@sender.example> to <u@example.com>, "
                      "24 bytes: 250 Queued" % (cid, cid), lines)
        self.assertIn("%s.4 503 Use MAIL before RCPT" % cid, lines)

    def test_bad_arguments(self):
        for line, message in (("logging/connection_id LOUD", "unknown log level 'LOUD'"),
                              ("logging/connection_id 1 2", "usage: logging/connection_id [LEVEL]"),
                              ("logging/transaction_id LOUD", "unknown log level 'LOUD'"),
                              ("logging/transaction_id:1 1 2",
                               "usage: logging/transaction_id:1 [LEVEL]")):
            name = line.split()[0]
            assertStartupError(self, [], r"^/\S+/logging:1: plugin %s: %s"
                               % (re.escape(name), re.escape(message)), {"logging": line})


# -- http_config -----------------------------------------------------------------------------------

class ConfigResource(resource.Resource):
    """Serves ``/<prefix>/<name>`` from dicts of items per prefix; 404 for the rest."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.items = {}      # prefix -> {name: text}
        self.status = {}     # (prefix, name) -> status code to answer instead
        self.hanging = set()  # prefixes that never answer
        self.hits = []

    def render_GET(self, request):
        path = request.path.decode()
        self.hits.append(path)
        _, prefix, name = path.split("/", 2)
        if prefix in self.hanging:
            return web_server.NOT_DONE_YET
        if (prefix, name) in self.status:
            request.setResponseCode(self.status[(prefix, name)])
            return b"server error"
        text = self.items.get(prefix, {}).get(name)
        if text is None:
            request.setResponseCode(404)
            return b"no such item"
        return text.encode("utf-8")


class HttpConfigTests(unittest.TestCase):
    def setUp(self):
        self.resource = ConfigResource()
        self.site = WrappingFactory(web_server.Site(self.resource))
        self.listening = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        self.addCleanup(self.stop_http)

    async def stop_http(self):
        if self.listening is not None:
            await self.listening.stopListening()
            self.listening = None
        for _ in range(200):
            if not self.site.protocols:
                return
            for protocol in list(self.site.protocols):
                protocol.transport.loseConnection()
            await deferLater(reactor, 0.01, lambda: None)
        for protocol in list(self.site.protocols):
            protocol.transport.abortConnection()

    def url(self, prefix="config"):
        return "http://127.0.0.1:%d/%s/" % (self.port, prefix)

    @staticmethod
    def closed_port():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        return port

    def start(self, args, files=None, listen=False, after=("rcpt_ok",)):
        """A server whose first plugin is ``http_config ARGS``, then ``after`` (rcpt_ok reads
        ``rcpthosts`` in its init, through http_config); its log lines go to self.log."""
        files = dict(files or {})
        files.setdefault("logging", "logging/warn LOGDEBUG")
        keep_signal_handlers(self)
        self.log = io.StringIO()
        self.patch(sys, "stderr", self.log)  # logging/warn writes there
        lines = ["http_config " + args] + list(after)
        if listen:
            server, port = start_server(self, lines, files)
        else:
            server, port = make_server(self, lines, files), None
        plugin = server.plugins[0]
        self.addCleanup(plugin.stop)
        return server, plugin, port

    def log_lines(self):
        return self.log.getvalue().splitlines()

    async def greeting(self, port):
        client = await connect(self, port)
        await client.close()
        return client.greeting

    async def test_preload_end_to_end(self):
        self.resource.items["config"] = {"smtpgreeting": "greetings from http"}
        server, plugin, port = self.start("preload smtpgreeting " + self.url(),
                                          {"smtpgreeting": "greetings from the file"}, listen=True)
        await plugin.wait_idle()
        self.assertEqual(await self.greeting(port), (220, ["greetings from http ESMTP"]))
        self.assertEqual(sorted(self.resource.hits), ["/config/rcpthosts", "/config/smtpgreeting"])
        self.assertIn("http_config: config smtpgreeting: 1 line from %ssmtpgreeting"
                      % self.url(), self.log_lines())

    async def test_first_lookup_uses_the_file_then_http(self):
        self.resource.items["config"] = {"smtpgreeting": "greetings from http"}
        server, plugin, port = self.start(self.url(), {"smtpgreeting": "greetings from the file"},
                                          listen=True)
        self.assertEqual(await self.greeting(port), (220, ["greetings from the file ESMTP"]))
        await plugin.wait_idle()
        self.assertEqual(await self.greeting(port), (220, ["greetings from http ESMTP"]))
        self.assertEqual(self.resource.hits.count("/config/smtpgreeting"), 1)

    async def test_lines_are_parsed_like_a_config_file(self):
        self.resource.items["config"] = {"rcpthosts": "# comment\n\n  a.example  \r\n"
                                                      "b.example\r\n  # indented comment\n0\n"}
        server, plugin, _ = self.start("preload rcpthosts " + self.url())
        # rcpt_ok first has the file (read in init), then what came over HTTP
        self.assertEqual(server.plugins[1].local_domains()[0], {"mx.example.org", "example.com"})
        await plugin.wait_idle()
        self.assertEqual(server.config.get("rcpthosts"), ["a.example", "b.example", "0"])
        self.assertEqual(server.plugins[1].local_domains()[0],
                         {"mx.example.org", "a.example", "b.example", "0"})
        self.assertEqual(plugin.hook_config(None, "rcpthosts"),
                         (OK, ["a.example", "b.example", "0"]))

    async def test_refresh_follows_changes_and_removal(self):
        items = self.resource.items["config"] = {"smtpgreeting": "first"}
        server, plugin, port = self.start("preload smtpgreeting " + self.url(),
                                          {"smtpgreeting": "from the file"}, listen=True)
        await plugin.wait_idle()
        self.assertEqual(await self.greeting(port), (220, ["first ESMTP"]))
        items["smtpgreeting"] = "second"
        await plugin.refresh()
        self.assertEqual(await self.greeting(port), (220, ["second ESMTP"]))
        del items["smtpgreeting"]
        await plugin.refresh()
        self.assertEqual(await self.greeting(port), (220, ["from the file ESMTP"]))
        self.assertEqual(plugin.hook_config(None, "smtpgreeting"), DECLINED)
        self.assertIn("http_config: config smtpgreeting is no longer served; the config file "
                      "is used", self.log_lines())

    async def test_refresh_loop(self):
        items = self.resource.items["config"] = {"me": "one.example"}
        server, plugin, _ = self.start("refresh 0.05 preload me " + self.url())
        await plugin.wait_idle()
        self.assertEqual(plugin.hook_config(None, "me"), (OK, ["one.example"]))
        items["me"] = "two.example"
        for _ in range(200):
            if plugin.cache["me"] == ["two.example"]:
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(server.config.get("me"), ["two.example"])
        self.assertGreaterEqual(self.resource.hits.count("/config/me"), 2)

    async def test_404_passes_to_the_next_url(self):
        self.resource.items["second"] = {"databytes": "1000"}
        server, plugin, _ = self.start("preload databytes %s %s"
                                       % (self.url("first"), self.url("second")))
        await plugin.wait_idle()
        self.assertEqual(plugin.hook_config(None, "databytes"), (OK, ["1000"]))
        self.assertIn("http_config: config databytes: not found at %sdatabytes (HTTP 404)"
                      % self.url("first"), self.log_lines())
        hits = self.resource.hits
        self.assertLess(hits.index("/first/databytes"), hits.index("/second/databytes"))

    async def test_empty_item_passes_to_the_next_url(self):
        self.resource.items["first"] = {"me": "# nothing here\n\n"}
        self.resource.items["second"] = {"me": "mx2.example"}
        server, plugin, _ = self.start("preload me %s %s" % (self.url("first"), self.url("second")))
        await plugin.wait_idle()
        self.assertEqual(plugin.hook_config(None, "me"), (OK, ["mx2.example"]))

    async def test_404_everywhere_declines_without_error(self):
        server, plugin, port = self.start("preload smtpgreeting " + self.url(),
                                          {"smtpgreeting": "from the file"}, listen=True)
        self.assertEqual(await plugin.fetch("smtpgreeting"), "absent")
        self.assertEqual(plugin.hook_config(None, "smtpgreeting"), DECLINED)
        self.assertEqual(await self.greeting(port), (220, ["from the file ESMTP"]))
        self.assertEqual([line for line in self.log_lines()
                          if "cannot" in line or "no URL" in line], [])

    async def test_server_down(self):
        url = "http://127.0.0.1:%d/config/" % self.closed_port()
        server, plugin, port = self.start("preload smtpgreeting " + url,
                                          {"smtpgreeting": "from the file"}, listen=True)
        self.assertEqual(await plugin.fetch("smtpgreeting"), "failed")
        self.assertEqual(plugin.hook_config(None, "smtpgreeting"), DECLINED)
        self.assertEqual(await self.greeting(port), (220, ["from the file ESMTP"]))
        lines = self.log_lines()
        errors = [line for line in lines
                  if line.startswith("http_config: cannot fetch config smtpgreeting from %s"
                                     "smtpgreeting: " % url)]
        self.assertTrue(errors, lines)
        self.assertIn("refused", errors[0].lower())
        self.assertIn("http_config: config smtpgreeting: no URL answered; the config file is "
                      "used", lines)

    async def test_server_down_then_next_url(self):
        self.resource.items["config"] = {"me": "mx3.example"}
        down = "http://127.0.0.1:%d/config/" % self.closed_port()
        server, plugin, _ = self.start("preload me %s %s" % (down, self.url()))
        self.assertEqual(await plugin.fetch("me"), "found")
        self.assertEqual(plugin.hook_config(None, "me"), (OK, ["mx3.example"]))

    async def test_outage_keeps_the_last_values(self):
        self.resource.items["config"] = {"me": "mx4.example"}
        server, plugin, _ = self.start("preload me " + self.url())
        await plugin.wait_idle()
        await self.stop_http()
        self.assertEqual(await plugin.fetch("me"), "failed")
        self.assertEqual(plugin.hook_config(None, "me"), (OK, ["mx4.example"]))
        self.assertIn("http_config: config me: keeping the values fetched before",
                      self.log_lines())

    async def test_http_error_status(self):
        self.resource.status[("config", "me")] = 500
        server, plugin, _ = self.start("preload me " + self.url())
        self.assertEqual(await plugin.fetch("me"), "failed")
        self.assertIn("http_config: cannot fetch config me from %sme: HTTP status 500"
                      % self.url(), self.log_lines())
        self.assertEqual(plugin.hook_config(None, "me"), DECLINED)

    async def test_timeout(self):
        self.resource.hanging.add("slow")
        server, plugin, _ = self.start("timeout 0.2 preload me " + self.url("slow"))
        self.assertEqual(await plugin.fetch("me"), "failed")
        self.assertIn("http_config: cannot fetch config me from %sme: no answer (timed out)"
                      % self.url("slow"), self.log_lines())

    async def test_fetches_are_not_duplicated(self):
        self.resource.items["config"] = {"me": "mx5.example"}
        server, plugin, _ = self.start(self.url())
        self.assertEqual(plugin.hook_config(None, "me"), DECLINED)
        self.assertEqual(plugin.hook_config(None, "me"), DECLINED)
        self.assertEqual(len(plugin.pending), 2)  # me and rcpthosts (read by rcpt_ok)
        await plugin.wait_idle()
        self.assertEqual(self.resource.hits.count("/config/me"), 1)
        self.assertEqual(plugin.hook_config(None, "me"), (OK, ["mx5.example"]))

    async def test_stop(self):
        self.resource.hanging.add("slow")
        server, plugin, _ = self.start("preload me " + self.url("slow"))
        self.assertEqual(len(plugin.pending), 2)
        await plugin.stop()
        self.assertEqual(plugin.pending, {})
        self.assertFalse(plugin._loop.running)
        self.assertEqual(plugin.hook_config(None, "other"), DECLINED)
        self.assertEqual(plugin.pending, {})
        self.assertNotIn("cannot fetch", self.log.getvalue())

    def test_defaults(self):
        server, plugin, _ = self.start("http://a.example/ https://b.example/cgi?config=",
                                       after=())
        self.assertEqual((plugin.urls, plugin.refresh_interval, plugin.timeout, plugin.preload),
                         (["http://a.example/", "https://b.example/cgi?config="], 300.0, 10.0, []))
        self.assertEqual(self.http_config_module.parse_body(b"a\r\n\r\nb\rc\n"), ["a", "b", "c"])

    http_config_module = plugin_module("http_config")

    def test_refresh_0_never_refreshes(self):
        server, plugin, _ = self.start("refresh 0 http://127.0.0.1:9/", after=())
        self.assertIsNone(plugin._loop)

    def test_bad_arguments(self):
        for args, message in (
                ("", "no URL given"),
                ("refresh 5", "no URL given"),
                ("ftp://a.example/", "'ftp://a.example/' is neither an option nor an http"),
                ("http://a.example/ refresh", "refresh needs a value"),
                ("refresh soon http://a.example/", "refresh must be a number of seconds, got 'soon'"),
                ("timeout 0 http://a.example/", "timeout must be a number of seconds above 0"),
                ("timeout -1 http://a.example/", "timeout must be a number of seconds above 0"),
                ("loglevel LOUD http://a.example/", "bad loglevel 'LOUD'")):
            assertStartupError(self, ["rcpt_ok", ("http_config " + args).strip()],
                               r"^/\S+/plugins:2: plugin http_config: .*%s" % re.escape(message))
