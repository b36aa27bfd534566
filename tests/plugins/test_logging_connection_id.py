"""Tests of the logging plugin logging/connection_id: lines tagged with the connection id, its
level argument (the argument errors of logging/transaction_id, which is logging/connection_id
with another tag, are checked here too). One case calls its hook with fake transactions, one
runs a session end to end over a real loopback socket (tests.support.server).
"""

import re

from twisted.trial import unittest

from qpsmtpd_tx import codes
from tests.support.content_logging_cases import IdLoggingCase, assertStartupError, fake_transaction


class ConnectionIdTests(IdLoggingCase, unittest.TestCase):
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

    async def test_connection_id_end_to_end(self):
        lines, cid = await self.run_session("logging/connection_id LOGINFO")
        self.assertIn("%s dispatching NOOP" % cid, lines)
        self.assertIn("%s 250 OK" % cid, lines)
        self.assertIn("%s rcpt_ok plugin: pass: example.com in rcpthosts" % cid, lines)
        self.assertIn("%s 503 Use MAIL before RCPT" % cid, lines)
        for line in lines:
            self.assertTrue(line.startswith(cid + " ") or line.startswith("??? "), line)

    def test_bad_arguments(self):
        for line, message in (("logging/connection_id LOUD", "unknown log level 'LOUD'"),
                              ("logging/connection_id 1 2", "usage: logging/connection_id [LEVEL]"),
                              ("logging/transaction_id LOUD", "unknown log level 'LOUD'"),
                              ("logging/transaction_id:1 1 2",
                               "usage: logging/transaction_id:1 [LEVEL]")):
            name = line.split()[0]
            assertStartupError(self, [], r"^/\S+/logging:1: plugin %s: %s"
                               % (re.escape(name), re.escape(message)), {"logging": line})
