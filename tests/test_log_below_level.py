"""Lines below the log level are not even built, yet the test kit still captures every line.

A connection at the usual ``loglevel`` 4 logs several INFO and NOTICE lines (the core's, and
plugins' such as ``relay``'s): each used to be formatted (a plugin's also escaped) and then
dropped by the server's log. Now the level is checked first. ``capture_log`` does not depend on
that: it captures lines at every level whatever the server's ``loglevel``.
"""

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.testing import MemoryClient, capture_log, codes_of, loaded_plugin, make_server


class BelowTheLevelTests(unittest.TestCase):
    """At ``loglevel`` 4 nothing below reaches the server's log; with capture_log all does."""

    def server(self, loglevel="4"):
        return make_server(self, ["relay", "rcpt_ok"], {"loglevel": loglevel})

    def reaching_the_log(self, server):
        """The levels of the lines that reach ``server.log`` (the real one runs too)."""
        levels = []
        real = server.log

        def log(level, message, **kwargs):
            levels.append(level)
            return real(level, message, **kwargs)

        self.patch(server, "log", log)
        return levels

    def test_a_whole_connection_sends_no_line_below_the_level(self):
        server = self.server()
        levels = self.reaching_the_log(server)
        client = MemoryClient(server)
        self.assertEqual(codes_of(client.greeting), [220])
        self.assertEqual(codes_of(client.command("EHLO client.example")), [250])
        self.assertEqual(codes_of(client.command("QUIT")), [221])
        _lose(client)
        self.assertEqual([level for level in levels if level > codes.LOGWARN], [])

    def test_a_plugin_line_below_the_level_is_not_sent(self):
        server = self.server()
        levels = self.reaching_the_log(server)
        relay = loaded_plugin(server, "relay")
        relay.log(codes.LOGINFO, "below")
        relay.log(codes.LOGWARN, "at the level")
        self.assertEqual(levels, [codes.LOGWARN])

    def test_capture_log_still_gets_every_level(self):
        server = self.server()
        lines = capture_log(self, server, plugin_names=True)
        client = MemoryClient(server)
        client.command("QUIT")
        _lose(client)
        self.assertIn((codes.LOGINFO, "relay", "skip, no match"), lines)
        self.assertIn((codes.LOGINFO, None, "click, disconnecting"), lines)
        self.assertTrue(any(level == codes.LOGNOTICE and text.startswith("Connection from ")
                            for level, _, text in lines), lines)
        self.assertTrue(any(text.startswith("cleaning up after ") for _, _, text in lines), lines)

    def test_a_line_at_the_level_is_still_logged(self):
        server = self.server(loglevel="LOGINFO")
        levels = self.reaching_the_log(server)
        client = MemoryClient(server)
        client.command("QUIT")
        _lose(client)
        self.assertIn(codes.LOGNOTICE, levels)
        self.assertIn(codes.LOGINFO, levels)


def _lose(client):
    """The client closed the connection (after QUIT's 221)."""
    client.protocol.connectionLost(Failure(ConnectionDone()))
