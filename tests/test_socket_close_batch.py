"""lose_now closes every transport of one reactor turn with one timer: all of them close
(ConnectionDone), one timer is scheduled for the turn, and a close that fails does not keep
the others open."""

from twisted.internet import reactor
from twisted.internet.error import ConnectionDone
from twisted.trial import unittest

from qpsmtpd_tx import socket_write
from qpsmtpd_tx.socket_write import lose_now
from qpsmtpd_tx.testing import eventually
from tests.test_socket_write import _TCPPair


class BatchTests(_TCPPair, unittest.TestCase):
    """Three connections closed in one turn."""

    async def pairs(self, n):
        pairs = []
        for _ in range(n):
            transport, client = await self.connect()
            pairs.append((transport, self.protocol))
        return pairs

    async def test_one_timer_for_the_closes_of_a_turn(self):
        pairs = await self.pairs(3)
        before = len(reactor.getDelayedCalls())
        for transport, _ in pairs:
            self.assertIs(lose_now(transport), True)
        self.assertEqual(len(reactor.getDelayedCalls()), before + 1)
        for transport, proto in pairs:
            await eventually(lambda: proto.lost is not None)
            proto.lost.trap(ConnectionDone)
            self.assertFalse(transport.connected)

    async def test_a_failing_close_does_not_keep_the_others_open(self):
        pairs = await self.pairs(3)
        broken = pairs[1][0]
        real = socket_write._close
        self.patch(socket_write, "_close", lambda t: (_ for _ in ()).throw(RuntimeError("boom"))
                   if t is broken else real(t))
        for transport, _ in pairs:
            lose_now(transport)
        for transport, proto in (pairs[0], pairs[2]):
            await eventually(lambda: proto.lost is not None)
            self.assertFalse(transport.connected)
        await eventually(lambda: not socket_write._to_close)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
