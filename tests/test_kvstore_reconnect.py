"""The Redis store reconnects after an outage, also when a reconnection attempt meets a server
that does not answer (tests/support/redis.py's private redis-server, real sockets).

``test_kvstore``'s reconnect test sometimes waited 30 s in vain under ``trial -j2``: txredisapi
sends SELECT on each new connection, and when that answer is late (its reply timeout is the
store's ``timeout``, 0.5 s in that test) or the connection drops first, txredisapi stops
reconnecting the whole pool for good. Here the first attempts after the outage meet a listener
that accepts and never answers (a Redis that is not answering yet, as under load), which made
that certain; then a real redis-server comes back on the port.
"""

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from qpsmtpd_tx.kvstore.redis import POOL_SIZE, RedisStore
from qpsmtpd_tx.testing import eventually
from tests.support.redis import start_redis


class Silent(protocol.Protocol):
    """Accepts and never answers; counts its connections in the factory."""

    def connectionMade(self):
        self.factory.made += 1

    def connectionLost(self, reason):
        self.factory.lost += 1


class ReconnectTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_reconnects_after_attempts_that_got_no_answer(self):
        redis = start_redis()
        self.addCleanup(redis.stop)
        store = RedisStore(redis.url, timeout=0.5)
        self.addCleanup(store.close)
        yield store.check_and_set("k", None, "a", 30)
        redis.stop()
        silent = protocol.Factory.forProtocol(Silent)
        silent.made = silent.lost = 0
        port = reactor.listenTCP(redis.port, silent, interface="127.0.0.1")
        # every pooled connection comes back, gets no answer to SELECT and is dropped
        yield eventually(lambda: silent.made >= POOL_SIZE and silent.lost >= POOL_SIZE,
                         timeout=60)
        yield port.stopListening()
        again = start_redis(port=redis.port)
        self.addCleanup(again.stop)
        pool = store._pool
        yield eventually(pool.connected, timeout=60, step=0.05)
        self.assertIsNone((yield store.get("k")))      # the new redis-server is empty
