"""Tests of the random_error plugin (a connection-level plugin that fails a given percentage of
connections at random, at each stage): the random draws are scripted (Draws).

Protocol-level cases use MemoryClient (a real SMTPProtocol on an in-memory transport); one case
runs over a real loopback socket (tests.support.server). Reply texts are qpsmtpd 0.94's, read
from its plugins in /usr/share/qpsmtpd/plugins and checked against the Perl server where they
differ from the documentation.
"""

from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED, DENYSOFT, DENYSOFT_DISCONNECT
from tests.support.connection_cases import GREETING, HELO_OK, MESSAGE, fake_transaction, run_lines
from tests.support.harness import MemoryClient, StartupErrorMixin, make_server, plugin_module
from tests.support.harness import loaded_plugin as plugin_of
from tests.support.server import connect, start_server


class Draws:
    """A stand-in for random.Random whose ``random()`` returns the given values in order."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        if not self.values:
            raise AssertionError("no more random draws scripted")
        return self.values.pop(0)


FAIL = 0.999999    # a draw above every pass threshold below 100 %
HARD = 0.0         # second draw: < 2/5 → DENYSOFT_DISCONNECT
SOFT = 0.9         # second draw: ≥ 2/5 → DENYSOFT


class RandomErrorTests(StartupErrorMixin, unittest.TestCase):
    module = plugin_module("random_error")

    def client(self, *draws, line="random_error 10"):
        server = make_server(self, [line, "rcpt_ok", "scripted queue OK Queued"])
        plugin_of(server, "random_error").random = Draws(*draws)
        return MemoryClient(server)

    def test_threshold(self):
        threshold = self.module.pass_threshold
        self.assertAlmostEqual(threshold(1), 0.99 ** (1 / 6.0))
        self.assertAlmostEqual(threshold(10) ** 6, 0.9)
        self.assertEqual(threshold(100), 0.0)
        self.assertEqual(threshold(250), 0.0)
        self.assertGreater(threshold(-1), 1.0)

    def test_hook_directly(self):
        plugin = plugin_of(make_server(self, ["random_error 10"]), "random_error")
        txn = fake_transaction()
        threshold = self.module.pass_threshold(10)
        plugin.random = Draws(threshold - 1e-9, threshold, HARD, threshold, 0.4)
        self.assertEqual(plugin.hook_connect(txn), DECLINED)
        self.assertEqual(txn.connection.notes["random_fail_%"], 10.0)
        self.assertEqual(plugin.hook_mail(txn, None, {}), (DENYSOFT_DISCONNECT, "random failure"))
        self.assertEqual(plugin.hook_rcpt(txn, None, {}), (DENYSOFT, "random failure"))

    def test_pass_everywhere(self):
        client = self.client(*[0.0] * 6)
        self.assertEqual(client.greeting, GREETING)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"])
        self.assertEqual(client.send(MESSAGE), "250 Queued\r\n")

    def test_connect(self):
        self.assertEqual(self.client(FAIL, SOFT).greeting, "450 random failure\r\n")
        client = self.client(FAIL, HARD)
        self.assertEqual(client.greeting, "450 random failure\r\n")
        self.assertTrue(client.closed)

    def test_helo(self):
        client = self.client(0.0, FAIL, SOFT, FAIL, HARD)
        self.assertEqual(client.command("HELO x"), "450 random failure\r\n")
        self.assertFalse(client.closed)
        self.assertEqual(client.command("EHLO x"), "450 random failure\r\n")
        self.assertTrue(client.closed)

    def test_mail(self):
        client = self.client(0.0, 0.0, FAIL, SOFT, FAIL, HARD)
        client.command("HELO x")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "450 random failure\r\n")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "421 random failure\r\n")
        self.assertTrue(client.closed)

    def test_rcpt(self):
        client = self.client(0.0, 0.0, 0.0, FAIL, SOFT, FAIL, HARD)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>"])
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "450 random failure\r\n")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "421 random failure\r\n")
        self.assertTrue(client.closed)

    def test_data(self):
        client = self.client(0.0, 0.0, 0.0, 0.0, FAIL, SOFT, FAIL, HARD)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"])
        self.assertEqual(client.command("DATA"), "451 random failure\r\n")
        self.assertEqual(client.command("DATA"), "421 random failure\r\n")
        self.assertTrue(client.closed)

    def test_data_post(self):
        client = self.client(0.0, 0.0, 0.0, 0.0, 0.0, FAIL, SOFT)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"])
        self.assertEqual(client.send(MESSAGE), "452 random failure\r\n")
        self.assertFalse(client.closed)
        client = self.client(0.0, 0.0, 0.0, 0.0, 0.0, FAIL, HARD)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"])
        self.assertEqual(client.send(MESSAGE), "452 random failure\r\n")
        self.assertTrue(client.closed)

    def test_negative_percent_disables(self):
        client = self.client(FAIL, FAIL, line="random_error -1")
        self.assertEqual(client.greeting, GREETING)
        self.assertEqual(client.command("HELO x"), HELO_OK % "192.0.2.1")

    def test_zero_means_one_percent(self):
        plugin = plugin_of(make_server(self, ["random_error 0"]), "random_error")
        self.assertEqual(plugin.percent, 1.0)
        self.assertEqual(plugin_of(make_server(self, ["random_error"]), "random_error").percent, 1.0)
        self.assertEqual(plugin_of(make_server(self, ["random_error 0.5"]), "random_error").percent, 0.5)
        self.assertEqual(plugin_of(make_server(self, ["random_error 0.0"]), "random_error").percent, 0.0)

    def test_note_changes_the_rate(self):
        plugin = plugin_of(make_server(self, ["random_error 100"]), "random_error")
        txn = fake_transaction()
        plugin.random = Draws(FAIL)
        txn.connection.notes["random_fail_%"] = -1
        self.assertEqual(plugin.hook_rcpt(txn, None, {}), DECLINED)
        plugin.random = Draws(0.0, SOFT)
        txn.connection.notes["random_fail_%"] = 100
        self.assertEqual(plugin.hook_rcpt(txn, None, {}), (DENYSOFT, "random failure"))
        txn.connection.notes["random_fail_%"] = "lots"
        self.assertEqual(plugin.hook_rcpt(txn, None, {}), DECLINED)

    def test_bad_arguments(self):
        self.assertStartupError(["random_error often"], ":1: plugin random_error: PERCENT must be a number, got 'often'")
        self.assertStartupError(["random_error nan"], ":1: plugin random_error: PERCENT must be a number")
        self.assertStartupError(["random_error 1 2"], ":1: plugin random_error: usage: random_error [PERCENT]")

    async def test_over_tcp(self):
        server, port = start_server(self, ["random_error 100"])
        client = await connect(self, port)
        self.assertEqual(client.greeting, (450, ["random failure"]))
        await client.wait_closed()
