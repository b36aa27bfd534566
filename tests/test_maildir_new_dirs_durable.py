"""A message delivered into a Maildir that the delivery creates (queue/maildir's PATTERN, one
Maildir per recipient) is durable with its directories: before the child answers, the parent
of every directory it created is fsynced, so a crash cannot take the new Maildir (and the
message fsynced inside it) away after the 250.

The real delivery child under strace (its fsync and write system calls, with the paths of
their descriptors): no crash is simulated, the order of the calls is what is checked.
"""

import os
import re
import shutil
import subprocess
import sys

from twisted.trial import unittest

from qpsmtpd_tx.maildir_frames import OK, decode_replies, encode_request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRACE = shutil.which("strace")


class NewMaildirDurableTests(unittest.TestCase):
    def setUp(self):
        if STRACE is None:
            raise unittest.SkipTest("strace is not installed")

    def test_parents_of_created_directories_are_fsynced_before_the_reply(self):
        top = os.path.realpath(self.mktemp())
        os.mkdir(top)
        maildir = os.path.join(top, "example.com", "user")      # two levels to create
        request = b"".join(encode_request(1, 0o700, os.fsencode(maildir), [b"m\n"]))
        trace = os.path.join(top, "strace.txt")
        done = subprocess.run(
            [STRACE, "-f", "-y", "-e", "trace=fsync,write,writev", "-o", trace,
             sys.executable, "-m", "qpsmtpd_tx.maildir_child"],
            input=request, capture_output=True, env=dict(os.environ, PYTHONPATH=ROOT),
            timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        [(request_id, kind, _, _, name)] = decode_replies(done.stdout)[0]
        self.assertEqual((request_id, kind), (1, OK))
        self.assertTrue(os.path.exists(os.path.join(maildir, "new", name)))
        with open(trace) as f:
            calls = f.read()
        # everything up to the reply (the child's write to its stdout pipe)
        before_reply = calls[:re.search(r"writev?\(1<pipe:", calls).start()]
        synced = set(re.findall(r"fsync\(\d+<([^>]*)>\)\s+= 0", before_reply))
        for directory in (top, os.path.join(top, "example.com"), maildir,
                          os.path.join(maildir, "new")):
            self.assertIn(directory, synced)
