"""Directory fsyncs shared by concurrent deliveries (qpsmtpd_tx.dirsync), on real threads.

The fsync passed to DirSync is the real one behind a gate the test opens: the timing of a
real disk's fsync cannot be controlled, and the point is the order of events around it.
"""

import os
import threading

from twisted.trial import unittest

from qpsmtpd_tx.dirsync import DirSync, fsync_directory
from qpsmtpd_tx.maildir import write_maildir

#: seconds a test waits for a thread's step before it fails (never reached when all is well)
BOUND = 30


class GatedFsync:
    """fsync_directory, but the calls listed in ``gated`` (1-based) wait for ``open(n)``;
    ``fail`` lists calls that raise OSError after their gate."""

    def __init__(self, gated=(), fail=()):
        self.calls = 0
        self.gates = {n: threading.Event() for n in gated}
        self.entered = {n: threading.Event() for n in gated}
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, path):
        with self.lock:
            self.calls += 1
            n = self.calls
        if n in self.gates:
            self.entered[n].set()
            assert self.gates[n].wait(BOUND)
        if n in self.fail:
            raise OSError(5, "Input/output error")
        fsync_directory(path)

    def open(self, n):
        self.gates[n].set()


class Caller(threading.Thread):
    """One delivery's sync() in a thread; ``error`` is what it raised."""

    def __init__(self, dirsync, path):
        threading.Thread.__init__(self, daemon=True)
        self.dirsync, self.path = dirsync, path
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            self.dirsync.sync(self.path)
        except OSError as e:
            self.error = e
        self.done.set()


def wait_until(condition):
    event = threading.Event()
    for _ in range(BOUND * 100):
        if condition():
            return True
        event.wait(0.01)
    return condition()


class DirSyncTests(unittest.TestCase):
    def setUp(self):
        self.path = self.mktemp()
        os.makedirs(self.path)

    def start(self, dirsync, count=1):
        callers = [Caller(dirsync, self.path) for _ in range(count)]
        for c in callers:
            c.start()
            self.addCleanup(c.join, BOUND)
        return callers

    def leader(self, dirsync, fsync):
        """Start one caller and wait until its fsync (call 1, gated) has begun."""
        (first,) = self.start(dirsync)
        self.assertTrue(fsync.entered[1].wait(BOUND))
        return first

    def test_callers_during_a_sync_share_the_next_one(self):
        fsync = GatedFsync(gated=[1])
        dirsync = DirSync(fsync)
        first = self.leader(dirsync, fsync)
        later = self.start(dirsync, 5)
        self.assertTrue(wait_until(lambda: dirsync.waiting == 5))
        fsync.open(1)
        for c in [first] + later:
            self.assertTrue(c.done.wait(BOUND))
            self.assertIsNone(c.error)
        self.assertEqual((fsync.calls, dirsync.fsyncs), (2, 2))   # not 6

    def test_a_sync_already_running_does_not_count(self):
        # a caller that arrives while a sync runs may have linked after that sync began
        fsync = GatedFsync(gated=[1, 2])
        dirsync = DirSync(fsync)
        first = self.leader(dirsync, fsync)
        (second,) = self.start(dirsync)
        self.assertTrue(wait_until(lambda: dirsync.waiting == 1))
        fsync.open(1)
        self.assertTrue(first.done.wait(BOUND))
        self.assertTrue(fsync.entered[2].wait(BOUND))
        self.assertFalse(second.done.is_set())
        fsync.open(2)
        self.assertTrue(second.done.wait(BOUND))

    def test_a_failed_sync_fails_its_callers_only(self):
        fsync = GatedFsync(gated=[1], fail=[2])
        dirsync = DirSync(fsync)
        first = self.leader(dirsync, fsync)
        later = self.start(dirsync, 3)
        self.assertTrue(wait_until(lambda: dirsync.waiting == 3))
        fsync.open(1)
        for c in [first] + later:
            self.assertTrue(c.done.wait(BOUND))
        self.assertIsNone(first.error)
        self.assertEqual([c.error.errno for c in later], [5, 5, 5])
        self.start(dirsync)[0].done.wait(BOUND)      # the next one succeeds again
        self.assertEqual(fsync.calls, 3)

    def test_directories_are_independent(self):
        other = self.mktemp()
        os.makedirs(other)
        fsync = GatedFsync(gated=[1])
        dirsync = DirSync(fsync)
        first = self.leader(dirsync, fsync)
        c = Caller(dirsync, other)
        c.start()
        self.assertTrue(c.done.wait(BOUND))          # not held by the other directory's sync
        fsync.open(1)
        self.assertTrue(first.done.wait(BOUND))


class ConcurrentMaildirTests(unittest.TestCase):
    def test_parallel_deliveries_all_land(self):
        maildir = self.mktemp()
        names, errors = [], []

        def deliver(n):
            import io
            try:
                names.append(write_maildir(maildir, 0o700, [b"Subject: %d\n\n" % n],
                                           io.BytesIO(b"body\n")))
            except Exception as e:      # reported below
                errors.append(e)
        threads = [threading.Thread(target=deliver, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(BOUND)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(os.listdir(os.path.join(maildir, "new"))), sorted(names))
        self.assertEqual(len(set(names)), 20)
