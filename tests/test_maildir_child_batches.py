"""How the Maildir delivery child (qpsmtpd_tx.maildir_child) commits a batch, seen from the
outside with strace on a real child and real files: the writeback of every file of a batch
is started before the first fsync, the files are fsynced from the fsync threads (a single
file in the child's own thread), and still each file, then new/, is fsynced before any reply.
"""

import os
import re
import shutil
import subprocess
import sys

from twisted.trial import unittest

from qpsmtpd_tx import maildir_child, writeback
from qpsmtpd_tx.maildir import make_maildir
from qpsmtpd_tx.maildir_frames import OK, decode_replies, encode_request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: strace's lines: ``TID  call(args) = result``, or ``TID  call(args <unfinished ...>``
#: while another thread's call is printed (its ``<... call resumed>`` line follows later)
_CALL = re.compile(r"^(\d+) +(\w+)\(([^,)<]*)")


class BatchTests(unittest.TestCase):
    def setUp(self):
        if shutil.which("strace") is None:
            raise unittest.SkipTest("strace is not installed")
        if not writeback.AVAILABLE:
            raise unittest.SkipTest("no sync_file_range on this system")
        self.maildir = os.path.abspath(self.mktemp())
        make_maildir(self.maildir, 0o700)

    def run_batch(self, count):
        """Deliver ``count`` messages in one batch through a child under strace; its system
        calls [(thread id, name, first argument)] in order."""
        requests = b"".join(b"".join(encode_request(n, 0o700, os.fsencode(self.maildir),
                                                    [b"m%d\n" % n * 1000]))
                            for n in range(1, count + 1))
        trace = os.path.abspath(self.mktemp())
        done = subprocess.run(
            ["strace", "-f", "-qq", "-o", trace, "-e", "trace=fsync,sync_file_range,write,writev",
             sys.executable, "-m", "qpsmtpd_tx.maildir_child"],
            input=requests, capture_output=True, env=dict(os.environ, PYTHONPATH=ROOT),
            cwd=ROOT, timeout=120)
        self.assertEqual((done.returncode, done.stderr), (0, b""))
        replies, _ = decode_replies(done.stdout)
        self.assertEqual([(r[0], r[1]) for r in replies], [(n, OK) for n in range(1, count + 1)])
        # (all written before the child read any: one batch, or the test proves nothing)
        self.assertEqual({r[3] for r in replies}, {1})
        self.assertEqual(len(os.listdir(os.path.join(self.maildir, "new"))), count)
        calls = []
        with open(trace) as f:
            for line in f:
                m = _CALL.match(line)
                if m:
                    calls.append((int(m.group(1)), m.group(2), m.group(3).strip()))
        return calls

    def check_order(self, calls, count):
        """Writeback of every file first, then ``count`` + 1 fsyncs (the files, then new/),
        then the replies (the only write to stdout); returns the file fsyncs' thread ids and
        the child's main thread id."""
        names = ["reply" if fd == "1" else name for _, name, fd in calls
                 if not name.startswith("write") or fd == "1"]
        self.assertEqual(names, ["sync_file_range"] * count + ["fsync"] * (count + 1)
                         + ["reply"])
        fsyncs = [tid for tid, name, _ in calls if name == "fsync"]
        main = calls[0][0]
        self.assertEqual(fsyncs[-1], main)         # new/, once all files are done
        return fsyncs[:-1], main

    def test_one_file_is_fsynced_in_the_childs_own_thread(self):
        calls = self.run_batch(1)
        self.assertEqual([name for _, name, fd in calls if not name.startswith("write")],
                         ["fsync", "fsync"])           # no writeback hint for one file
        self.assertEqual({tid for tid, name, _ in calls if name == "fsync"}, {calls[0][0]})

    def test_a_batch_starts_every_writeback_then_fsyncs_from_the_threads(self):
        for count in (2, 3 * maildir_child.THREADS):
            file_fsyncs, main = self.check_order(self.run_batch(count), count)
            # (the pool starts a thread only when none is idle: up to THREADS of them)
            self.assertNotIn(main, file_fsyncs)
            if count > 2:
                self.assertGreater(len(set(file_fsyncs)), 1)
            for sub in ("new", "tmp"):
                shutil.rmtree(os.path.join(self.maildir, sub))
            make_maildir(self.maildir, 0o700)


class WritebackTests(unittest.TestCase):
    def test_a_descriptor_it_cannot_write_back_is_no_error(self):
        # a hint only: a pipe (ESPIPE) or a closed descriptor (EBADF) raises nothing
        read, write = os.pipe()
        os.close(read)
        os.close(write)
        a, b = os.pipe()
        self.addCleanup(os.close, a)
        self.addCleanup(os.close, b)
        writeback.start_writeback([b, write])

    def test_available_on_linux(self):
        self.assertEqual(writeback.AVAILABLE, sys.platform.startswith("linux"))

