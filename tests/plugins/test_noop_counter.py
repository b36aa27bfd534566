"""Tests of the noop_counter plugin (a connection-level policy plugin that disconnects after too
many consecutive NOOPs).

Protocol-level cases use MemoryClient (a real SMTPProtocol on an in-memory transport); one case
runs over a real loopback socket (tests.support.server). Reply texts are qpsmtpd 0.94's, read
from its plugins in /usr/share/qpsmtpd/plugins and checked against the Perl server where they
differ from the documentation.
"""

from twisted.trial import unittest

from tests.support.connection_cases import run_lines
from tests.support.harness import MemoryClient, StartupErrorMixin, make_server
from tests.support.server import connect, start_server

STOP = "500 Stop wasting my time, too many consecutive NOOPs\r\n"


class NoopCounterTests(StartupErrorMixin, unittest.TestCase):
    def client(self, line="noop_counter", ip="192.0.2.1"):
        return MemoryClient(make_server(self, [line, "rcpt_ok"]), remote_ip=ip)

    def test_third_noop_disconnects(self):
        client = self.client()
        self.assertEqual(run_lines(client, ["NOOP", "NOOP"]), ["250 OK\r\n", "250 OK\r\n"])
        self.assertFalse(client.closed)
        self.assertEqual(client.command("NOOP"), STOP)
        self.assertTrue(client.closed)

    def test_other_commands_reset_the_count(self):
        for setup, command in (
            ([], "HELO x"), ([], "EHLO x"), (["HELO x"], "MAIL FROM:<a@b.example>"),
            (["HELO x", "MAIL FROM:<a@b.example>"], "RCPT TO:<u@example.com>"),
            (["HELO x"], "DATA"), ([], "RSET"), ([], "VRFY u"), ([], "HELP"),
        ):
            client = self.client()
            run_lines(client, setup)
            replies = run_lines(client, ["NOOP", "NOOP", command, "NOOP", "NOOP"])
            self.assertNotIn(STOP, replies, command)
            self.assertEqual(client.command("NOOP"), STOP, command)

    def test_unrecognized_commands_do_not_reset(self):
        client = self.client()
        self.assertEqual(run_lines(client, ["NOOP", "NOOP", "FOO"]),
                         ["250 OK\r\n", "250 OK\r\n", "500 Unrecognized command\r\n"])
        self.assertEqual(client.command("NOOP"), STOP)

    def test_argument(self):
        client = self.client("noop_counter 5")
        self.assertEqual(run_lines(client, ["NOOP"] * 4), ["250 OK\r\n"] * 4)
        self.assertEqual(client.command("NOOP"), STOP)
        client = self.client("noop_counter 1")
        self.assertEqual(client.command("NOOP"), STOP)

    def test_zero_means_default(self):
        client = self.client("noop_counter 0")
        self.assertEqual(run_lines(client, ["NOOP", "NOOP", "NOOP"]), ["250 OK\r\n", "250 OK\r\n", STOP])

    def test_count_is_per_connection(self):
        server = make_server(self, ["noop_counter"])
        first, second = MemoryClient(server), MemoryClient(server)
        self.assertEqual(run_lines(first, ["NOOP", "NOOP"]), ["250 OK\r\n"] * 2)
        self.assertEqual(run_lines(second, ["NOOP", "NOOP"]), ["250 OK\r\n"] * 2)
        self.assertEqual(first.session.connection.notes["noop_count"], 2)
        self.assertEqual(first.command("NOOP"), STOP)
        self.assertFalse(second.closed)

    def test_bad_arguments(self):
        self.assertStartupError(["noop_counter x"], ":1: plugin noop_counter: N must be a whole number, got 'x'")
        self.assertStartupError(["noop_counter -1"], ":1: plugin noop_counter: N must be a whole number")
        self.assertStartupError(["noop_counter 3 4"], ":1: plugin noop_counter: usage: noop_counter [N]")

    async def test_over_tcp(self):
        server, port = start_server(self, ["noop_counter 2"])
        client = await connect(self, port)
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))
        self.assertEqual(await client.command("NOOP"),
                         (500, ["Stop wasting my time, too many consecutive NOOPs"]))
        await client.wait_closed()
