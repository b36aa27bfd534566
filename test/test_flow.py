"""Flow control and limits on a real socket: what a client sends cannot make the server hold
unbounded memory (replies it does not read), nor a connection slot for ever."""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial import unittest

from qpsmtpd_tx.session import FLUSH_ABOVE, PAUSE_ABOVE
from test.support.harness import eventually
from test.support.server import start_server

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
