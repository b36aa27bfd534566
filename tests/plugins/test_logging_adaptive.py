"""Tests of the logging plugin logging/adaptive: lines written at once or kept and replayed when
the transaction was accepted. Most cases call its hooks on a fake transaction; one runs a
session end to end over a real loopback socket (tests.support.server).
"""

import io
import re
import sys

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.codes import DENY
from tests.support.content_logging_cases import QUEUE_OK, assertStartupError, fake_transaction, send_message, server_with
from tests.support.server import connect, start_server


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
