"""The thread syncer (qpsmtpd_tx.thread_syncer, queue/maildir's fallback when the delivery
child cannot run): writes, fsyncs and links in threads, in batches, and
a delivery is reported only after its file and its directory were fsynced. Deliveries of one
reactor turn reach the threads together, at the end of the turn.

Real files and the real thread; the directory fsync is the real one behind a gate the test
opens, because the timing of a disk's fsync cannot be controlled here.
"""

import errno
import os
import threading
import time

from twisted.trial import unittest

from qpsmtpd_tx.dirsync import fsync_directory
from qpsmtpd_tx.maildir import make_maildir
from qpsmtpd_tx.thread_syncer import ThreadSyncer as Syncer
from tests.support.harness import eventually

BOUND = 30


class GatedDirFsync:
    """fsync_directory whose first call waits for ``release()``; ``fail`` makes every call
    raise EIO after its gate."""

    def __init__(self, fail=False):
        self.calls = 0
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.fail = fail

    def __call__(self, path):
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            assert self.gate.wait(BOUND)
        if self.fail:
            raise OSError(errno.EIO, "Input/output error")
        fsync_directory(path)

    def release(self):
        self.gate.set()


class SyncerTests(unittest.TestCase):
    def setUp(self):
        self.maildir = self.mktemp()
        make_maildir(self.maildir, 0o700)

    def deliver(self, syncer, text, maildir=None):
        return syncer.deliver(maildir or self.maildir, 0o700,
                              [b"Subject: %s\n\n" % text.encode(), b"body\n"])

    def listing(self, sub):
        return sorted(os.listdir(os.path.join(self.maildir, sub)))

    async def test_files_waiting_during_a_batch_make_the_next_batch(self):
        fsync = GatedDirFsync()
        syncer = Syncer(fsync_dir=fsync, threads=1)
        d1 = self.deliver(syncer, "first")
        await eventually(fsync.entered.is_set)           # batch 1 is at its directory fsync
        [first] = self.listing("new")
        self.assertFalse(d1.called)                      # linked, but new/ not yet synced
        ds = [self.deliver(syncer, "m%d" % n) for n in range(4)]
        fsync.release()
        await eventually(lambda: all(d.called for d in [d1] + ds))
        names = [await d for d in [d1] + ds]
        self.assertEqual(names[0], first)
        self.assertEqual(self.listing("new"), sorted(names))
        self.assertEqual(self.listing("tmp"), [])
        with open(os.path.join(self.maildir, "new", names[1]), "rb") as f:
            self.assertEqual(f.read(), b"Subject: m0\n\nbody\n")
        self.assertEqual((syncer.batches, syncer.files, fsync.calls), (2, 5, 2))

    async def test_failed_directory_fsync_fails_the_whole_batch(self):
        fsync = GatedDirFsync(fail=True)
        fsync.release()
        syncer = Syncer(fsync_dir=fsync, threads=1)
        d = self.deliver(syncer, "x")
        await eventually(lambda: d.called)
        with self.assertRaises(OSError) as caught:
            await d
        self.assertEqual(caught.exception.errno, errno.EIO)

    async def test_failed_file_fails_that_delivery_only(self):
        fsync = GatedDirFsync()
        syncer = Syncer(fsync_dir=fsync, threads=1)
        d0 = self.deliver(syncer, "blocker")
        await eventually(fsync.entered.is_set)
        not_a_dir = os.path.join(self.maildir, "cur", "file")
        open(not_a_dir, "w").close()
        d1 = self.deliver(syncer, "bad", maildir=os.path.join(not_a_dir, "maildir"))
        d2 = self.deliver(syncer, "fine")
        fsync.release()
        await eventually(lambda: d0.called and d1.called and d2.called)
        with self.assertRaises(OSError):
            await d1
        self.assertIn(await d2, self.listing("new"))
        self.assertEqual(self.listing("tmp"), [])

    async def test_deliveries_of_one_turn_travel_as_one_batch(self):
        # Handing each message to a thread on its own woke a thread per message; the
        # deliveries made before the reactor turn ends go together (up to ``batch``).
        syncer = Syncer(threads=4, batch=8)
        await self.deliver(syncer, "started")            # the threads are up and idle
        ds = [self.deliver(syncer, "m%d" % n) for n in range(5)]
        time.sleep(0.2)      # the threads could write now, but nothing was handed over yet
        self.assertEqual(len(self.listing("new")), 1)
        await eventually(lambda: all(d.called for d in ds))
        self.assertEqual((syncer.batches, syncer.files), (2, 6))
        self.assertEqual(len(self.listing("new")), 6)

    async def test_several_threads_bounded_batches(self):
        syncer = Syncer(threads=3, batch=2)
        ds = [self.deliver(syncer, "m%d" % n) for n in range(12)]
        await eventually(lambda: all(d.called for d in ds))
        names = [await d for d in ds]
        self.assertEqual(self.listing("new"), sorted(names))
        self.assertEqual(len(set(names)), 12)
        self.assertEqual(self.listing("tmp"), [])
        self.assertGreaterEqual(syncer.batches, 6)      # never more than 2 files a batch
