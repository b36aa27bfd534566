"""The key-value stores (qpsmtpd_tx.kvstore): the same checks on the SQLite file and on a
private Redis (tests/support/redis.py), then what is particular to each."""

import multiprocessing
import os

from twisted.internet import defer
from twisted.trial import unittest

from qpsmtpd_tx.kvstore import StoreError, ip_key, key_ip
from qpsmtpd_tx.kvstore.redis import RedisStore, parse_url
from qpsmtpd_tx.kvstore.sqlite import SQLiteStore
from qpsmtpd_tx.testing import eventually
from tests.support.redis import shared_redis, start_redis


class FakeClock:
    """A clock whose time the test sets (the store only asks ``seconds()``)."""

    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def seconds(self):
        return self.now


def bump(old, now):
    """An update: a counter, kept 60 s."""
    value = str(int(old or 0) + 1)
    return value, 60, value


class StoreChecks:
    """The interface; ``make_store()`` gives an empty store."""

    @defer.inlineCallbacks
    def test_get_absent_then_check_and_set(self):
        store = self.make_store()
        self.assertIsNone((yield store.get("k")))
        self.assertTrue((yield store.check_and_set("k", None, "a", 60)))
        self.assertEqual((yield store.get("k")), "a")
        # a stale expectation loses
        self.assertFalse((yield store.check_and_set("k", None, "b", 60)))
        self.assertFalse((yield store.check_and_set("k", "x", "b", 60)))
        self.assertTrue((yield store.check_and_set("k", "a", "b", 60)))
        self.assertEqual((yield store.get("k")), "b")

    @defer.inlineCallbacks
    def test_update_counts(self):
        store = self.make_store()
        results = yield defer.gatherResults([store.update("n", bump) for _ in range(10)])
        self.assertEqual(sorted(int(r) for r in results), list(range(1, 11)))
        self.assertEqual((yield store.get("n")), "10")

    @defer.inlineCallbacks
    def test_delete_and_scan(self):
        store = self.make_store()
        for key in ("karma:1", "karma:2", "greylist:1", "karma*x"):
            yield store.check_and_set(key, None, "v" + key, 60)
        yield store.delete("karma:2")
        rows = yield store.scan("karma:")
        self.assertEqual([(k, v) for k, v, _ in rows], [("karma:1", "vkarma:1")])
        self.assertTrue(all(expires > store.now() for _, _, expires in rows))


class SQLiteStoreTests(StoreChecks, unittest.TestCase):
    def make_store(self, path=None):
        store = SQLiteStore(path or os.path.join(self.mktemp(), "kv.sqlite"))
        store.check()
        self.addCleanup(store.close)
        return store

    @defer.inlineCallbacks
    def test_ttl_expires_records(self):
        store = self.make_store()
        store.clock = FakeClock()
        yield store.check_and_set("k", None, "a", 10)
        store.clock.now += 9
        self.assertEqual((yield store.get("k")), "a")
        store.clock.now += 2
        self.assertIsNone((yield store.get("k")))
        # an expired record counts as absent for check_and_set too
        self.assertTrue((yield store.check_and_set("k", None, "b", 10)))
        store.clock.now += 11
        self.assertEqual((yield store.prune()), 1)

    def test_journal_modes(self):
        """WAL by default; the rollback journal for a file on NFS (greylisting's nfslock)."""
        import sqlite3
        for journal, expected in (("wal", "wal"), ("delete", "delete")):
            path = os.path.join(os.path.abspath(self.mktemp()), "kv.sqlite")
            SQLiteStore(path, journal=journal).check()
            conn = sqlite3.connect(path)
            self.addCleanup(conn.close)
            self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], expected)

    def test_new_file_is_private(self):
        path = os.path.join(os.path.abspath(self.mktemp()), "kv.sqlite")
        SQLiteStore(path).check()
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)

    def test_unusable_file_is_a_clear_error(self):
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "kv.sqlite")
        with open(path, "wb") as f:
            f.write(b"not a database" * 100)
        e = self.assertRaises(StoreError, SQLiteStore(path).check)
        self.assertIn(path, str(e))

    def test_processes_update_one_file_atomically(self):
        """Four processes each add 1 to one counter 100 times: 400, no update lost."""
        path = os.path.join(os.path.abspath(self.mktemp()), "kv.sqlite")
        SQLiteStore(path).check()
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=_count_in_process, args=(path, 100)) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
            self.assertEqual(worker.exitcode, 0)
        store = self.make_store(path)
        return store.get("n").addCallback(self.assertEqual, "400")


def _count_in_process(path, times):
    """A child process: add 1 to key ``n`` ``times`` times, through the store's thread."""
    from twisted.internet import reactor

    store = SQLiteStore(path)

    @defer.inlineCallbacks
    def run():
        try:
            for _ in range(times):
                yield store.update("n", bump)
            yield store.close()
        finally:
            reactor.stop()
    reactor.callWhenRunning(run)
    reactor.run()


class RedisStoreTests(StoreChecks, unittest.TestCase):
    def setUp(self):
        self.redis = shared_redis()
        self.redis.flush()

    def make_store(self, url=None, timeout=3.0):
        store = RedisStore(url or self.redis.url, timeout=timeout)
        self.addCleanup(store.close)
        return store

    def test_parse_url(self):
        self.assertEqual(parse_url("redis://:pw@10.0.0.1:6380/3"), ("10.0.0.1", 6380, 3, "pw"))
        self.assertEqual(parse_url("localhost"), ("localhost", 6379, 0, None))
        self.assertRaises(ValueError, parse_url, "http://x/")
        self.assertRaises(ValueError, parse_url, "redis://x/db")

    @defer.inlineCallbacks
    def test_every_key_has_a_ttl(self):
        store = self.make_store()
        yield store.check_and_set("k", None, "a", 30)
        yield store.update("n", bump)
        for key in ("k", "n"):
            ttl = int(self.redis.command("PTTL", key)[1:])
            self.assertTrue(0 < ttl <= 60000, (key, ttl))

    @defer.inlineCallbacks
    def test_script_reloaded_after_flush(self):
        store = self.make_store()
        yield store.check_and_set("k", None, "a", 30)
        self.redis.command("SCRIPT", "FLUSH")
        self.assertTrue((yield store.check_and_set("k", "a", "b", 30)))

    @defer.inlineCallbacks
    def test_redis_down_fails_within_the_timeout(self):
        redis = start_redis()
        store = self.make_store(redis.url, timeout=0.5)
        yield store.check_and_set("k", None, "a", 30)
        redis.stop()
        with self.assertRaises(StoreError) as caught:
            yield store.get("k")
        # a connection that has noticed the end says so, one that has not times out
        self.assertRegex(str(caught.exception), r"^redis://127.0.0.1:%d/0: "
                         r"(no answer to GET within 0.5 s|GET: Lost connection)$" % redis.port)

    @defer.inlineCallbacks
    def test_after_one_timeout_commands_fail_at_once_until_reconnected(self):
        redis = start_redis()
        self.addCleanup(redis.stop)
        store = self.make_store(redis.url, timeout=0.5)
        yield store.check_and_set("k", None, "a", 30)
        redis.stop()
        # each pooled connection fails once (lost, or timed out); then the pool is down and
        # commands fail without waiting
        errors = []
        for _ in range(10):
            try:
                yield store.get("k")
            except StoreError as e:
                errors.append(str(e))
        self.assertEqual(len(errors), 10)
        down = "redis://127.0.0.1:%d/0: not connected (Redis did not answer before)" % redis.port
        self.assertIn(down, errors)
        self.assertEqual(set(errors[errors.index(down):]), {down})
        again = start_redis(port=redis.port)
        self.addCleanup(again.stop)
        # the pool reconnects by itself (after its back-off, at most about 11 s; see
        # test_kvstore_reconnect for attempts that meet no answer): then commands go through
        yield eventually(store._pool.connected, timeout=60, step=0.05)
        self.assertIsNone((yield store.get("k")))  # the new redis-server is empty


class IPKeyTests(unittest.TestCase):
    def test_round_trip(self):
        self.assertEqual(ip_key("192.0.2.1"), "3221225985")
        self.assertEqual(key_ip("3221225985"), "192.0.2.1")
        self.assertEqual(key_ip(ip_key("2001:db8::1")), "2001:db8::1")
