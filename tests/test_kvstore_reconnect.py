"""The Redis store reconnects after an outage, also when a reconnection attempt meets a server
that does not answer (tests/support/redis.py's private redis-server, real sockets).

``test_kvstore``'s reconnect test sometimes waited 30 s in vain under ``trial -j2``: txredisapi
sends SELECT on each new connection, and when that answer is late (its reply timeout is the
store's ``timeout``, 0.5 s in that test) or the connection drops first, txredisapi stops
reconnecting the whole pool for good. Here the first attempts after the outage meet a listener
that accepts and never answers (a Redis that is not answering yet, as under load), which made
that certain; then a real redis-server comes back on the port.
"""

import gc

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from qpsmtpd_tx.kvstore import StoreError
from qpsmtpd_tx.kvstore.redis import POOL_SIZE, RedisStore
from qpsmtpd_tx.testing import eventually
from tests.support.redis import start_redis


class Silent(protocol.Protocol):
    """Accepts and never answers; counts its connections in the factory."""

    def connectionMade(self):
        self.factory.made += 1

    def connectionLost(self, reason):
        self.factory.lost += 1


def silent_listener(testcase, port=0):
    """A :class:`Silent` listener on 127.0.0.1 (``port``, else any); its factory has
    ``made``, ``lost`` and ``port`` (the listening port object)."""
    factory = protocol.Factory.forProtocol(Silent)
    factory.made = factory.lost = 0
    factory.port = reactor.listenTCP(port, factory, interface="127.0.0.1")
    testcase.addCleanup(factory.port.stopListening)
    return factory


class ReconnectTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_reconnects_after_attempts_that_got_no_answer(self):
        redis = start_redis()
        self.addCleanup(redis.stop)
        store = RedisStore(redis.url, timeout=0.5)
        self.addCleanup(store.close)
        yield store.check_and_set("k", None, "a", 30)
        redis.stop()
        silent = silent_listener(self, redis.port)
        # every pooled connection comes back, gets no answer to SELECT and is dropped
        yield eventually(lambda: silent.made >= POOL_SIZE and silent.lost >= POOL_SIZE,
                         timeout=60)
        yield silent.port.stopListening()
        again = start_redis(port=redis.port)
        self.addCleanup(again.stop)
        pool = store._pool
        yield eventually(pool.connected, timeout=60, step=0.05)
        self.assertIsNone((yield store.get("k")))      # the new redis-server is empty

    @defer.inlineCallbacks
    def test_a_pool_never_complete_leaves_no_unhandled_error(self):
        """txredisapi fails a Deferred of its own when a connection's set-up fails before
        the pool was full: the store consumes it (else a traceback in the log)."""
        silent = silent_listener(self)
        store = RedisStore("redis://127.0.0.1:%d/0" % silent.port.getHost().port, timeout=0.5)
        with self.assertRaises(StoreError):
            yield store.get("k")
        yield eventually(lambda: silent.lost >= POOL_SIZE, timeout=60)
        yield store.close()
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(ValueError), [])
