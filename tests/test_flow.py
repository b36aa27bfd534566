"""Flow control and limits: what a client sends cannot make the server hold unbounded memory
(replies it does not read), nor a connection slot for ever.

Real sockets (in-process server and a real ``twistd``) where the behaviour depends on the
kernel and Twisted's transport; the in-memory transport with a Clock for exact deadlines."""

import os
import socket
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial import unittest

from qpsmtpd_tx.session import FLUSH_ABOVE, PAUSE_ABOVE
from tests.support.harness import (
    TEST_PLUGINS, MemoryClient, codes_of, eventually, make_server, write_config)
from tests.support.processes import start_twistd
from tests.support.server import REPLY_TIMEOUT, connect, start_server

ENVELOPE = ["EHLO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"]
MESSAGE = b"Subject: hi\r\n\r\nbody\r\n.\r\n"
#: Twisted's transport pauses its producer above this much unsent output (FileDescriptor.bufferSize)
TRANSPORT_BUFFER = 64 * 1024
#: one read from the socket (Twisted reads at most this much per dataReceived)
READ_SIZE = 64 * 1024


def queued_output(transport):
    """Bytes a Twisted TCP transport holds unsent (its private buffers: no public API has it)."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


class DeafClient(Protocol):
    """Sends its payload at once, reads nothing until ``listen()``; then counts reply lines."""

    def __init__(self, payload):
        self.payload = payload
        self.received = bytearray()
        self.lines = 0
        self.closed = Deferred()

    def connectionMade(self):
        self.transport.pauseProducing()           # never read: replies pile up on the server
        self.transport.write(self.payload)

    def listen(self):
        """Start reading the replies."""
        self.transport.resumeProducing()

    def dataReceived(self, data):
        self.lines += data.count(b"\n")

    def connectionLost(self, reason):
        self.closed.callback(None)


class UnreadRepliesTests(unittest.TestCase):
    """A client pipelining cheap commands without reading stops being read itself."""

    async def test_server_stops_reading_while_replies_wait(self):
        server, port = start_server(self, [])
        commands = 200000                           # 1.2 MB of HELP: ~25 MB of replies
        client = DeafClient(b"HELP\r\n" * commands)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(lambda: client.transport.abortConnection())
        await eventually(lambda: server.sessions)
        session = next(iter(server.sessions))

        await eventually(lambda: session.output_blocked)
        # The output the server holds for this client is bounded by the transport's buffer plus
        # one mid-pass write, and its reading is paused with bounded input waiting.
        for _ in range(5):
            self.assertLessEqual(queued_output(session.transport),
                                 TRANSPORT_BUFFER + FLUSH_ABOVE + 1024)
            self.assertLessEqual(session.core.buffered, PAUSE_ABOVE + READ_SIZE)
            self.assertNotIn(session.transport, reactor.getReaders())
            await deferLater(reactor, 0.05, lambda: None)

        # Once the client reads, every command is answered, in order, and nothing is lost.
        client.listen()
        greeting_and_help = 1 + 3 * commands         # the greeting, then 3 lines per HELP
        await eventually(lambda: client.lines >= greeting_and_help, timeout=60)
        self.assertEqual(client.lines, greeting_and_help)
        self.assertFalse(session.output_blocked)

    def test_mechanics_in_memory(self):
        # The in-memory transport records the producer; the test plays the full write buffer.
        client = MemoryClient(make_server(self, [], {"timeout": "30"}))
        client.transport.producer.pauseProducing()
        self.assertEqual(client.transport.producerState, "paused")      # reading paused
        self.assertEqual(client.send("NOOP\r\nNOOP\r\n"), "")         # nothing handled
        client.transport.producer.resumeProducing()
        self.assertEqual(client.take(), "250 OK\r\n250 OK\r\n")
        self.assertEqual(client.transport.producerState, "producing")
        client.transport.producer.pauseProducing()
        client.clock.advance(30)                 # idle while it does not read: aborted, no 421
        self.assertEqual(client.take(), "")
        self.assertTrue(client.transport.disconnected)

    def test_closing_unregisters_so_that_the_close_is_not_held_back(self):
        client = MemoryClient(make_server(self, []))
        self.assertIsNotNone(client.transport.producer)
        self.assertEqual(codes_of(client.command("QUIT")), [221])
        self.assertIsNone(client.transport.producer)
        self.assertTrue(client.closed)



class PerIPLimitTests(unittest.TestCase):
    """--max-from-ip works without a plugin; hosts_allow, when loaded, keeps doing it itself."""

    REFUSED = "451 too many connections from 192.0.2.1, try again later\r\n"

    def test_core_limit_with_hosts_allow_text(self):
        server = make_server(self, ["rcpt_ok"], max_conn_ip=2)
        self.assertTrue(server.core_limits_ip)
        first, second = MemoryClient(server), MemoryClient(server)
        self.assertEqual(codes_of(first.greeting + second.greeting), [220, 220])
        third = MemoryClient(server)
        self.assertEqual(third.greeting, self.REFUSED)
        self.assertTrue(third.closed)
        third.protocol.connectionLost(None)
        self.assertEqual(codes_of(MemoryClient(server, remote_ip="192.0.2.2").greeting), [220])
        first.command("QUIT")
        first.protocol.connectionLost(None)
        self.assertEqual(codes_of(MemoryClient(server).greeting), [220])

    def test_zero_means_no_limit(self):
        server = make_server(self, [], max_conn_ip=0)
        self.assertEqual(codes_of("".join(MemoryClient(server).greeting for _ in range(8))), [220] * 8)

    def test_hosts_allow_keeps_the_check(self):
        server = make_server(self, ["hosts_allow"], max_conn_ip=1)
        self.assertFalse(server.core_limits_ip)
        MemoryClient(server)
        self.assertEqual(MemoryClient(server).greeting, self.REFUSED)

    async def test_default_limit_over_sockets(self):
        server, port = start_server(self, [])             # max_conn_ip: 5, as twistd's -m
        clients = [await connect(self, port) for _ in range(5)]
        self.assertEqual([c.greeting[0] for c in clients], [220] * 5)
        sixth = await connect(self, port)
        self.assertEqual(sixth.greeting, (451, ["too many connections from 127.0.0.1, try again later"]))
        await sixth.wait_closed()
        await clients[0].close()
        await eventually(lambda: len(server.sessions) == 4)
        self.assertEqual((await connect(self, port)).greeting[0], 220)


class DeadlineTests(unittest.TestCase):
    """A command line and the DATA phase have a time limit from their start, which bytes
    trickling in do not reset (the idle timeout only sees that the client is not silent)."""

    def test_command_line_deadline(self):
        client = MemoryClient(make_server(self, [], {"command_deadline": "30"}))
        self.assertEqual(client.send("NO"), "")
        for _ in range(29):
            client.clock.advance(1)
            self.assertEqual(client.send("O"), "")     # one byte a second: never idle
        client.clock.advance(1)
        self.assertEqual(client.take(), "421 Timeout: command line not complete within 30 seconds\r\n")
        self.assertTrue(client.closed)

    def test_idle_timeout_first_then_no_second_421(self):
        client = MemoryClient(make_server(self, [], {"command_deadline": "30", "timeout": "10"}))
        client.send("NO")
        client.clock.advance(10)
        self.assertEqual(client.take(), "421 Connection Timed Out\r\n")
        client.clock.advance(30)
        self.assertEqual(client.take(), "")

    def test_each_line_has_its_own_time(self):
        client = MemoryClient(make_server(self, [], {"command_deadline": "30"}))
        client.send("NO")
        client.clock.advance(20)
        self.assertEqual(client.send("OP\r\nNO"), "250 OK\r\n")
        client.clock.advance(20)
        self.assertEqual(client.send("OP\r\n"), "250 OK\r\n")
        client.clock.advance(1000)                        # complete lines only: no deadline
        self.assertFalse(client.closed)

    def data_client(self, plugins):
        client = MemoryClient(make_server(self, ["rcpt_ok"] + plugins, {"data_deadline": "100"}))
        for line in ENVELOPE:
            client.command(line)
        self.assertEqual(codes_of(client.command("DATA")), [354])
        return client

    def test_data_deadline(self):
        client = self.data_client(["scripted queue OK"])
        for _ in range(99):
            client.clock.advance(1)
            self.assertEqual(client.send("x"), "")
        client.clock.advance(1)
        self.assertEqual(client.take(), "421 Timeout: message not complete within 100 seconds\r\n")
        self.assertTrue(client.closed)
        self.assertNotIn("scripted_calls", client.session.connection.notes)

    def test_not_while_our_hook_runs_after_the_message(self):
        client = self.data_client(["gate data_post DECLINED", "scripted queue OK"])
        gates = sys.modules[type(client.session.server.plugins[1]).__module__].GATES
        client.clock.advance(50)
        self.assertEqual(client.send(MESSAGE), "")
        client.clock.advance(500)                          # the scan is slow, not the client
        self.assertEqual(client.take(), "")
        gates.pop(0).callback(None)
        self.assertEqual(client.take(), "250 Queued\r\n")
        self.assertEqual(codes_of(client.command("NOOP")), [250])

    def test_expiry_during_a_hook_amid_data_acts_after_it(self):
        client = self.data_client(["gate data_headers_end DECLINED", "scripted queue OK"])
        gates = sys.modules[type(client.session.server.plugins[1]).__module__].GATES
        client.send(b"Subject: x\r\n\r\nbody")
        client.clock.advance(150)
        self.assertEqual(client.take(), "")                # not while the hook runs
        gates.pop(0).callback(None)
        self.assertEqual(client.take(), "421 Timeout: message not complete within 100 seconds\r\n")
        self.assertNotIn("scripted_calls", client.session.connection.notes)

    def test_config_defaults(self):
        server = make_server(self, [])
        self.assertEqual((server.command_deadline, server.data_deadline), (300, 3600))


class EndToEndTests(unittest.TestCase):
    """The same limits in a real ``twistd qpsmtpd-tx`` process, over plain sockets."""

    def setUp(self):
        config = write_config(os.path.abspath(self.mktemp()), ["timeout=1 never_answer rcpt", "rcpt_ok"],
                              {"plugin_dirs": TEST_PLUGINS, "command_deadline": "2"})
        _, self.port, _ = start_twistd(self, config, extra=["--max-from-ip", "2", "--no-rdns"],
                                       probe=False)

    def open(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=REPLY_TIMEOUT)
        self.addCleanup(sock.close)
        return sock, sock.makefile("rb")

    @staticmethod
    def reply(lines):
        """The next complete reply's last line (bytes, without CRLF); b'' at end of stream."""
        while True:
            line = lines.readline()
            if line[3:4] != b"-":
                return line.rstrip(b"\r\n")

    def test_limits(self):
        first, first_lines = self.open()
        self.assertEqual(self.reply(first_lines)[:4], b"220 ")
        slow, slow_lines = self.open()
        self.assertEqual(self.reply(slow_lines)[:4], b"220 ")
        third, third_lines = self.open()
        self.assertEqual(self.reply(third_lines), b"451 too many connections from 127.0.0.1, try again later")
        self.assertEqual(third_lines.readline(), b"")

        # The hook that never answers: 451 after its timeout=1, then the session goes on.
        first.sendall(b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nNOOP\r\n")
        self.assertEqual([self.reply(first_lines)[:3] for _ in range(4)], [b"250", b"250", b"451", b"250"])

        # One byte every 0.2 s: never idle, but the line is not complete within 2 s.
        slow.settimeout(0.2)
        slow.sendall(b"NO")
        for _ in range(int(REPLY_TIMEOUT / 0.2)):
            try:
                answer = slow.recv(200)
                break
            except socket.timeout:
                slow.sendall(b"O")
        self.assertEqual(answer, b"421 Timeout: command line not complete within 2 seconds\r\n")
        slow.settimeout(REPLY_TIMEOUT)
        self.assertEqual(slow.recv(200), b"")
