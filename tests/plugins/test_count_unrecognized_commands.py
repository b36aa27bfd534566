"""Tests of the count_unrecognized_commands plugin: sessions with a real server over a
loopback socket (tests.support.server), and its hook called directly. Reply texts are
qpsmtpd 0.94's (read from /usr/share/qpsmtpd/plugins).
"""

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.server import StartupError
from tests.support.harness import fake_transaction, make_server
from tests.support.plugin_server import server_with
from tests.support.server import connect, start_server


class CountUnrecognizedCommandsTests(unittest.TestCase):
    async def test_default_limit_is_4(self):
        server, port = start_server(self, ["count_unrecognized_commands"])
        client = await connect(self, port)
        for n, verb in enumerate(["FOO", "BAR bar", "NOOP", "GET / HTTP/1.0"], 1):
            reply = await client.command(verb)
            if verb == "NOOP":
                self.assertEqual(reply, (250, ["OK"]))  # recognised: not counted
            else:
                self.assertEqual(reply, (500, ["Unrecognized command"]), verb)
        session = next(iter(server.sessions))
        self.assertEqual(session.connection.notes["unrec_cmd_count"], 3)
        self.assertEqual(await client.command("HOST: x"), (521, [
            "Closing connection, 4 unrecognized commands. Perhaps you should read RFC 2821?"]))
        await client.wait_closed()
        self.assertTrue(client.closed)

    async def test_argument(self):
        server, port = start_server(self, ["count_unrecognized_commands 2"])
        client = await connect(self, port)
        self.assertEqual(await client.command("XYZZY"), (500, ["Unrecognized command"]))
        self.assertEqual(await client.command("PLUGH"), (521, [
            "Closing connection, 2 unrecognized commands. Perhaps you should read RFC 2821?"]))
        await client.wait_closed()

    async def test_count_is_per_connection(self):
        server, port = start_server(self, ["count_unrecognized_commands 2"])
        first = await connect(self, port)
        self.assertEqual((await first.command("XYZZY"))[0], 500)
        second = await connect(self, port)
        self.assertEqual((await second.command("XYZZY"))[0], 500)
        self.assertEqual((await first.command("XYZZY"))[0], 521)
        self.assertEqual((await second.command("QUIT"))[0], 221)

    def test_zero_means_default(self):
        server = server_with(self, ["count_unrecognized_commands 0"])
        self.assertEqual(server.plugins[0].max, 4)

    def test_hook_directly(self):
        plugin = server_with(self, ["count_unrecognized_commands 3"]).plugins[0]
        txn = fake_transaction()
        self.assertEqual(plugin.hook_unrecognized_command(txn, "foo", ""), codes.DECLINED)
        self.assertEqual(plugin.hook_unrecognized_command(txn, "foo", ""), codes.DECLINED)
        self.assertEqual(plugin.hook_unrecognized_command(txn, "foo", ""), (
            codes.DENY_DISCONNECT,
            "Closing connection, 3 unrecognized commands. Perhaps you should read RFC 2821?"))
        self.assertEqual(txn.connection.notes["unrec_cmd_count"], 3)

    def test_bad_argument(self):
        e = self.assertRaises(StartupError, make_server, self, ["count_unrecognized_commands x"])
        self.assertIn("count_unrecognized_commands", str(e))
