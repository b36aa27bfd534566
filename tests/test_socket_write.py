"""qpsmtpd_tx.socket_write.write_now on real TCP connections (127.0.0.1): bytes go into the
socket at once when nothing is queued, what the socket does not take is queued by Twisted, and
the order of bytes is kept whatever is pending. lose_now: a connection with nothing queued
closes without a write pass, one with bytes queued after them."""

import socket

from twisted.internet import defer, protocol, reactor, threads
from twisted.trial import unittest

from twisted.internet.error import ConnectionAborted, ConnectionDone

from qpsmtpd_tx.socket_write import lose_now, write_now
from qpsmtpd_tx.testing import eventually
from tests.support.server import connect, start_server


class _Keep(protocol.Protocol):
    lost = None

    def connectionMade(self):
        self.factory.connected.callback(self)

    def connectionLost(self, reason):
        self.lost = reason


class _TCPPair:
    """A server-side transport and a client socket on 127.0.0.1, for the tests below."""

    async def connect(self):
        """(server-side transport, client socket) of a fresh connection."""
        factory = protocol.Factory.forProtocol(_Keep)
        factory.connected = defer.Deferred()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(client.close)
        server = await factory.connected
        self.addCleanup(server.transport.abortConnection)
        self.protocol = server
        return server.transport, client

    def read(self, client, n):
        """Read ``n`` bytes (fewer at EOF) in a thread, while the reactor writes; a Deferred."""
        return threads.deferToThread(self._read, client, n)

    @staticmethod
    def _read(client, n):
        client.settimeout(10)
        data = bytearray()
        while len(data) < n:
            chunk = client.recv(min(65536, n - len(data)))
            if not chunk:
                break
            data += chunk
        return bytes(data)


class WriteNowTests(_TCPPair, unittest.TestCase):
    async def test_a_reply_goes_out_without_waiting_for_the_reactor(self):
        transport, client = await self.connect()
        write_now(transport, b"250 OK\r\n")
        # already in the socket: nothing queued, the socket not in the reactor's write set
        self.assertEqual((transport.dataBuffer, transport._tempDataLen), (b"", 0))
        self.assertNotIn(transport, reactor.getWriters())
        self.assertEqual(await self.read(client, 8), b"250 OK\r\n")

    async def test_what_the_socket_does_not_take_is_queued_in_order(self):
        transport, client = await self.connect()
        big = bytes(range(256)) * 131072          # 32 MiB: far more than the socket buffers
        write_now(transport, big)
        self.assertGreater(transport._tempDataLen + len(transport.dataBuffer), 0)
        write_now(transport, b"tail")                      # queued behind, never before
        self.assertEqual(await self.read(client, len(big) + 4), big + b"tail")

    async def test_a_wrapper_or_closing_transport_gets_a_plain_write(self):
        transport, client = await self.connect()
        written = []

        class Wrapper:
            def write(self, data):
                written.append(data)

        write_now(Wrapper(), b"x")
        self.assertEqual(written, [b"x"])
        transport.loseConnection()
        write_now(transport, b"after close")     # Twisted's to handle: it still sends, then closes
        self.assertEqual(await self.read(client, 100), b"after close")
        await eventually(lambda: not transport.connected)


class LoseNowTests(_TCPPair, unittest.TestCase):
    def setUp(self):
        #: the transports the reactor was asked to watch for writability
        self.writers = []
        add = reactor.addWriter
        self.patch(reactor, "addWriter", lambda w: (self.writers.append(w), add(w))[1])

    async def test_nothing_queued_closes_without_a_write_pass(self):
        transport, client = await self.connect()
        write_now(transport, b"221 bye\r\n")
        self.assertIs(lose_now(transport), True)
        self.assertEqual(await self.read(client, 100), b"221 bye\r\n")    # then EOF
        await eventually(lambda: self.protocol.lost is not None)
        self.protocol.lost.trap(ConnectionDone)
        self.assertNotIn(transport, self.writers)
        self.assertFalse(transport.connected)

    async def test_bytes_queued_go_out_first(self):
        transport, client = await self.connect()
        big = bytes(range(256)) * 131072          # 32 MiB: far more than the socket buffers
        write_now(transport, big)
        self.assertIs(lose_now(transport), False)      # Twisted's close, after the bytes
        self.assertEqual(await self.read(client, len(big) + 1), big)
        await eventually(lambda: self.protocol.lost is not None)
        self.protocol.lost.trap(ConnectionDone)

    async def test_an_abort_before_the_close_turn_wins(self):
        transport, client = await self.connect()
        lose_now(transport)
        transport.abortConnection()
        await eventually(lambda: self.protocol.lost is not None)
        self.protocol.lost.trap(ConnectionAborted)       # as after loseConnection
        self.assertFalse(transport.connected)

    async def test_the_session_closes_after_quit_without_a_write_pass(self):
        server, port = start_server(self, ["rcpt_ok"])
        client = await connect(self, port)
        [session] = server.sessions
        self.assertEqual((await client.command("QUIT"))[0], 221)
        await client.wait_closed()
        await eventually(lambda: not server.sessions)
        self.assertEqual([w for w in self.writers if type(w).__name__ == "Server"], [])
        # nor a time limit for a close that cannot wait on the client
        self.assertIsNone(session._close_call)
