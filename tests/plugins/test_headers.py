"""Tests of the content plugin headers and its old name check_basicheaders: required and singular
header fields, the Date range, reject types and immunity.

Each rule is tested on its accepting and its refusing side, most of them end to end over a real
loopback socket (tests.support.server), the rest by calling the hook on a fake transaction.
Reply texts are qpsmtpd 0.94's (read from /usr/share/qpsmtpd/plugins).
"""

import email.utils
import re
import time

from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED, DENY, DENYSOFT
from qpsmtpd_tx.message import Header
from tests.support.content_logging_cases import QUEUE_OK, assertStartupError, fake_transaction, send_message, server_with
from tests.support.harness import plugin_module
from tests.support.server import connect, start_server

DAY = 24 * 3600


def rfc_date(offset_days=0.0):
    return email.utils.formatdate(time.time() + offset_days * DAY)


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
