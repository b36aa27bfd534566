"""qpsmtpd_tx.daemon_client.RequestExchange against the real clamd: a daemon that stops
reading a request it finds too long, answers and closes (clamd past its ``StreamMaxLength``)
resets the connection while we still send; its answer must reach us all the same.

The reset reaches us either on a read (the answer comes first: fine) or on a write. A write
that meets it loses the connection at once, and Twisted closes the socket without reading
what had arrived. Which comes first depends on when the reactor gets to the socket: under load
the write sometimes does (virus/clamdscan then logged "closed the connection without an
answer" instead of clamd's "size limit exceeded", about once in 300 runs). That order cannot
be chosen from outside, so these tests stop the reactor reading the socket once connected:
the reset can then only be met by a write, every time.
"""

import struct

from twisted.internet import reactor
from twisted.internet.endpoints import connectProtocol
from twisted.trial import unittest

from qpsmtpd_tx.daemon_client import RequestExchange
from qpsmtpd_tx.endpoints import ServerAddress
from tests.support.clamd import shared_clamd

ANSWER = b"INSTREAM size limit exceeded. ERROR\0"


def endless_instream():
    """An INSTREAM request that never ends: clamd has to cut it."""
    yield b"zINSTREAM\0"
    chunk = struct.pack("!L", 65536) + b"y" * 65536
    while True:
        yield chunk


class AnswerAfterResetTests(unittest.TestCase):
    """clamd's answer to a too long stream, when the reset meets a write first."""

    async def exchange(self, address):
        exchange = RequestExchange(endless_instream(), 65536)
        await connectProtocol(address.endpoint(30), exchange)
        exchange.transport.stopReading()
        exchange.done.addTimeout(60, reactor)
        return await exchange.done

    async def test_tcp(self):
        clamd = shared_clamd()
        self.assertEqual(await self.exchange(ServerAddress(host="127.0.0.1", port=clamd.port)),
                         ANSWER)

    async def test_unix_socket(self):
        clamd = shared_clamd()
        self.assertEqual(await self.exchange(ServerAddress(path=clamd.socket)), ANSWER)
