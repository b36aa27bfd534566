"""Tests of the content plugin loop and its old name check_loop: the hop count (Received and
Delivered-To header fields) against max_hops.

Each rule is tested on its accepting and its refusing side, end to end over a real loopback
socket (tests.support.server). Reply texts are qpsmtpd 0.94's (read from
/usr/share/qpsmtpd/plugins).
"""

import re

from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED, DENY
from tests.support.content_logging_cases import QUEUE_OK, assertStartupError, fake_transaction, send_message, server_with
from tests.support.server import connect, start_server


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
