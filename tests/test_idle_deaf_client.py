"""The idle timeout over a real socket for a client that pipelines commands and never reads
the replies: once the server's output to it is blocked, the one idle-timeout sweeper
(qpsmtpd_tx.idle) cuts it after ``timeout``; it is not left open for ever."""

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from qpsmtpd_tx.testing import eventually
from tests.support.server import start_server
from tests.test_flow import DeafClient


class DeafClientTests(unittest.TestCase):
    async def test_a_client_that_never_reads_is_cut_after_the_timeout(self):
        server, port = start_server(self, [], {"timeout": "2"})
        client = DeafClient(b"HELP\r\n" * 200000)    # ~25 MB of replies it will not read
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(lambda: client.transport.abortConnection())
        await eventually(lambda: server.sessions)
        session = next(iter(server.sessions))
        await eventually(lambda: session.output_blocked)
        # (the client itself, not reading, may never notice the close)
        await eventually(lambda: not server.sessions, timeout=30)
        self.assertTrue(session.lost)
