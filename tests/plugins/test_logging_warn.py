"""Tests of the logging/warn plugin: its levels and line format, the hook called directly on a
loaded server, and the lines of a real session over a loopback socket (tests.support.server)
on sys.stderr.
"""

import io
import re
import sys

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.server import StartupError
from tests.support.harness import fake_transaction, make_server
from tests.support.plugin_server import server_with
from tests.support.server import connect, start_server


class WarnTests(unittest.TestCase):
    def test_levels(self):
        for arg, level in (("", 4), ("LOGINFO", 6), ("7", 7), ("debug", 7), ("0", 0),
                           ("LOGCRIT", 2)):
            server = server_with(self, [], {"logging": ("logging/warn " + arg).strip()})
            self.assertEqual(server.logging_plugins[0].log_threshold, level, arg)
        self.assertRaises(StartupError, make_server, self, [], {"logging": "logging/warn LOGNOISE"})
        self.assertRaises(StartupError, make_server, self, [], {"logging": "logging/warn 1 2"})

    def test_format_and_threshold(self):
        server = server_with(self, [], {"logging": "logging/warn LOGNOTICE"})
        plugin = server.logging_plugins[0]
        plugin.stream = io.StringIO()
        txn = fake_transaction()
        plugin.hook_logging(txn, codes.LOGNOTICE, "rcpt", "rcpt_ok", "fail: x not in rcpthosts")
        plugin.hook_logging(txn, codes.LOGINFO, "rcpt", "rcpt_ok", "not written")
        plugin.hook_logging(None, codes.LOGERROR, None, None, "no connection")
        plugin.hook_logging(txn, codes.LOGERROR, "connect", None, "core line in a hook")
        plugin.hook_logging(txn, codes.LOGERROR, None, "logging::warn", "its own line")
        self.assertEqual(plugin.stream.getvalue(),
                         "%s (rcpt) rcpt_ok: fail: x not in rcpthosts\n"
                         "no connection\n"
                         "%s (connect) core line in a hook\n"
                         % (txn.connection.id, txn.connection.id))
        self.assertTrue(server.log_enabled(codes.LOGNOTICE))
        self.assertFalse(server.log_enabled(codes.LOGINFO))

    async def test_session_to_stderr(self):
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        server, port = start_server(self, ["count_unrecognized_commands"],
                                    {"logging": "logging/warn LOGINFO"})
        client = await connect(self, port)
        conn_id = next(iter(server.sessions)).connection.id
        await client.command("NOOP")
        await client.command("FOO")
        lines = stderr.getvalue().splitlines()
        self.assertIn("%s dispatching NOOP" % conn_id, lines)
        self.assertIn("%s 250 OK" % conn_id, lines)
        matching = [l for l in lines if re.fullmatch(
            re.escape(conn_id) + r"( \(unrecognized_command\))? count_unrecognized_commands: "
            r"'foo', \(1\)", l)]
        self.assertEqual(len(matching), 1, lines)

    async def test_default_level_is_warn(self):
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        server, port = start_server(self, [], {"logging": "logging/warn"})
        client = await connect(self, port)
        await client.command("NOOP")
        self.assertNotIn("dispatching", stderr.getvalue())
        self.assertFalse(server.log_enabled(codes.LOGNOTICE))
