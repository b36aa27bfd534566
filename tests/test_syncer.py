"""The Maildir syncer (qpsmtpd_tx.syncer): fsyncs and links in threads, in batches, and a
delivery is reported only after its file and its directory were fsynced.

Real files and the real thread; the directory fsync is the real one behind a gate the test
opens, because the timing of a disk's fsync cannot be controlled here.
"""

import errno
import io
import os
import threading

from twisted.trial import unittest

from qpsmtpd_tx.dirsync import fsync_directory
from qpsmtpd_tx.maildir import MaildirError, create_file, make_maildir, write_file
from qpsmtpd_tx.syncer import Syncer
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

    def written(self, text):
        f = create_file(self.maildir, 0o700)
        write_file(f, [b"Subject: %s\n\n" % text.encode()], io.BytesIO(b"body\n"))
        return f

    def listing(self, sub):
        return sorted(os.listdir(os.path.join(self.maildir, sub)))

    async def test_files_waiting_during_a_batch_make_the_next_batch(self):
        fsync = GatedDirFsync()
        syncer = Syncer(fsync_dir=fsync, threads=1)
        first = self.written("first")
        d1 = syncer.commit(first)
        self.assertTrue(fsync.entered.wait(BOUND))       # batch 1 is at its directory fsync
        self.assertEqual(self.listing("new"), [first.name])
        self.assertFalse(d1.called)                      # linked, but new/ not yet synced
        later = [self.written("m%d" % n) for n in range(4)]
        ds = [syncer.commit(f) for f in later]
        fsync.release()
        await eventually(lambda: all(d.called for d in [d1] + ds))
        names = [await d for d in [d1] + ds]
        self.assertEqual(names, [f.name for f in [first] + later])
        self.assertEqual(self.listing("new"), sorted(names))
        self.assertEqual(self.listing("tmp"), [])
        self.assertEqual((syncer.batches, syncer.files, fsync.calls), (2, 5, 2))

    async def test_failed_directory_fsync_fails_the_whole_batch(self):
        fsync = GatedDirFsync(fail=True)
        fsync.release()
        syncer = Syncer(fsync_dir=fsync, threads=1)
        d = syncer.commit(self.written("x"))
        await eventually(lambda: d.called)
        with self.assertRaises(OSError) as caught:
            await d
        self.assertEqual(caught.exception.errno, errno.EIO)

    async def test_failed_link_fails_that_file_only(self):
        fsync = GatedDirFsync()
        syncer = Syncer(fsync_dir=fsync, threads=1)
        blocker = self.written("blocker")
        d0 = syncer.commit(blocker)
        self.assertTrue(fsync.entered.wait(BOUND))
        clash, fine = self.written("clash"), self.written("fine")
        # a file of that name already in new/: link fails with EEXIST
        open(clash.new, "w").close()
        d1, d2 = syncer.commit(clash), syncer.commit(fine)
        fsync.release()
        await eventually(lambda: d0.called and d1.called and d2.called)
        with self.assertRaises(MaildirError) as caught:
            await d1
        self.assertTrue(str(caught.exception).startswith("link:"))
        self.assertEqual(await d2, fine.name)
        self.assertEqual(self.listing("tmp"), [])

    async def test_several_threads_bounded_batches(self):
        syncer = Syncer(threads=3, batch=2)
        files = [self.written("m%d" % n) for n in range(12)]
        ds = [syncer.commit(f) for f in files]
        await eventually(lambda: all(d.called for d in ds))
        self.assertEqual([await d for d in ds], [f.name for f in files])
        self.assertEqual(self.listing("new"), sorted(f.name for f in files))
        self.assertEqual(self.listing("tmp"), [])
        self.assertGreaterEqual(syncer.batches, 6)      # never more than 2 files a batch
