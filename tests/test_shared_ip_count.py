"""Connections per IP counted across servers (:mod:`qpsmtpd_tx.shared_ip_count`), against a
real private redis-server (tests/support/redis.py). Each :class:`SharedIPCount` here stands
for one server process; "a dead server" is one that stops confirming without releasing.
"""

import os

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from qpsmtpd_tx.codes import LOGERROR, LOGNOTICE
from qpsmtpd_tx.config import Config
from qpsmtpd_tx.server import config_problems
from qpsmtpd_tx.shared_ip_count import KEY_PREFIX, SharedIPCount
from qpsmtpd_tx.testing import write_config
from tests.support.redis import shared_redis, start_redis

IP = "192.0.2.7"


def pause(seconds):
    """A Deferred firing after ``seconds`` (the reactor keeps running meanwhile)."""
    return deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def until(condition, timeout=20.0, step=0.05):
    """Wait (without blocking the reactor) until ``condition()`` is true; whether it became so."""
    waited = 0.0
    while not condition():
        if waited > timeout:
            return False
        yield pause(step)
        waited += step
    return True


class SharedIPCountTests(unittest.TestCase):
    def setUp(self):
        self.redis = shared_redis()
        self.redis.flush()
        self.logged = []

    def count(self, url=None, limit=2, ttl=60, timeout=1):
        """One server's count on the test's Redis (closed at the test's end)."""
        counter = SharedIPCount(url or self.redis.url, limit, ttl, timeout,
                                lambda level, text: self.logged.append((level, text)))
        self.addCleanup(counter.close)
        return counter

    def members(self, ip=IP):
        """How many members the IP's set holds in Redis now."""
        return int(self.redis.command("ZCARD", KEY_PREFIX + ip)[1:])

    @defer.inlineCallbacks
    def test_add_refuse_at_the_limit_release(self):
        a, b = self.count(), self.count()
        self.assertEqual((yield a.acquire("c1", IP)), (True, 1))
        self.assertEqual((yield b.acquire("c2", IP)), (True, 2))
        # the third, on either server, is refused and not written
        self.assertEqual((yield b.acquire("c3", IP)), (False, 2))
        self.assertEqual((yield a.acquire("c4", IP)), (False, 2))
        self.assertEqual(self.members(), 2)
        # another IP has a count of its own
        self.assertEqual((yield a.acquire("c5", "2001:db8::1")), (True, 1))
        a.release("c1")
        self.assertTrue((yield until(lambda: self.members() == 1)))
        self.assertEqual((yield b.acquire("c6", IP)), (True, 2))
        # releasing what was refused or never counted changes nothing
        b.release("c3")
        b.release("nothing")
        self.assertEqual((yield a.acquire("c7", IP)), (False, 2))
        self.assertEqual(self.logged, [])

    @defer.inlineCallbacks
    def test_every_key_has_a_ttl(self):
        a = self.count(ttl=30)
        yield a.acquire("c1", IP)
        ttl = int(self.redis.command("PTTL", KEY_PREFIX + IP)[1:])
        self.assertTrue(0 < ttl <= 30000, ttl)

    @defer.inlineCallbacks
    def test_released_while_being_checked(self):
        """A connection that ends before Redis answered its check is removed once it has."""
        a = self.count()
        d = a.acquire("c1", IP)
        a.release("c1")
        yield d
        self.assertTrue((yield until(lambda: self.members() == 0)))

    @defer.inlineCallbacks
    def test_dead_server_entries_expire_live_ones_stay(self):
        """Server A stops confirming (as if killed): its connections stop counting one TTL
        later. Server B confirms every TTL / 3: its connection still counts after the TTL."""
        a, b = self.count(ttl=3), self.count(ttl=3)
        yield a.acquire("a1", IP)
        yield b.acquire("b1", IP)
        self.assertEqual((yield b.acquire("b2", IP)), (False, 2))
        a._confirm_loop.stop()     # A "dies": it neither confirms nor releases
        refused = []
        # each try is refused until A's member is older than the TTL, then one is let in
        for _ in range(200):
            allowed, count = yield b.acquire("b%d" % (len(refused) + 2), IP)
            if allowed:
                break
            refused.append(count)
            yield pause(0.1)
        self.assertTrue(allowed)
        self.assertTrue(refused)
        # B's first member, more than a TTL old by now, still counts: B confirmed it
        self.assertEqual((yield b.acquire("b-late", IP)), (False, 2))
        self.assertEqual(self.members(), 2)

    @defer.inlineCallbacks
    def test_script_loaded_again_after_flush(self):
        a = self.count()
        yield a.acquire("c1", IP)
        self.redis.command("SCRIPT", "FLUSH")
        self.assertEqual((yield a.acquire("c2", IP)), (True, 2))

    @defer.inlineCallbacks
    def test_redis_down_lets_through_logged_once_counted_when_back(self):
        redis = start_redis()
        self.addCleanup(redis.stop)
        a = self.count(url=redis.url, ttl=3)
        self.assertEqual((yield a.acquire("c1", IP)), (True, 1))
        redis.stop()
        # let through (no count) within the time limit, however many come, logged once
        for n in range(2, 6):
            self.assertEqual((yield a.acquire("c%d" % n, IP)), (True, None))
        self.assertEqual([level for level, _ in self.logged], [LOGERROR])
        self.assertIn("counting this server's connections per IP only", self.logged[0][1])
        again = start_redis(port=redis.port)
        self.addCleanup(again.stop)
        # the confirmations (every second here) add all five live connections once Redis
        # is back (txredisapi reconnects after its back-off)
        self.assertTrue((yield until(lambda: again.command("ZCARD", KEY_PREFIX + IP) == ":5",
                                     timeout=60)))
        self.assertEqual([level for level, _ in self.logged], [LOGERROR, LOGNOTICE])
        self.assertIn("answers again", self.logged[1][1])
        self.assertEqual((yield a.acquire("c6", IP)), (False, 5))



class ConfigTests(unittest.TestCase):
    def test_bad_url_stops_start_up_naming_file_and_line(self):
        directory = write_config(os.path.abspath(self.mktemp()), ["rcpt_ok"], {
            "max_from_ip_redis": "http://redis.example/", "max_from_ip_redis_ttl": "1"})
        config = Config(config_dir=directory, qmail_dir=directory, environ={})
        at = lambda name: "%s:1: " % os.path.join(directory, name)  # noqa: E731
        self.assertEqual(sorted(config_problems(config)), [
            at("max_from_ip_redis") + "max_from_ip_redis: not a redis://HOST[:PORT][/DB] "
                                      "URL: 'http://redis.example/'",
            at("max_from_ip_redis_ttl") + "max_from_ip_redis_ttl: must be at least 3, not 1"])
