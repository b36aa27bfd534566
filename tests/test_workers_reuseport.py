"""--workers auto and --reuseport: one process per core, and a listening socket per process.

The end-to-end test runs a real ``twistd qpsmtpd-tx --workers 2 --reuseport`` and real SMTP
clients; which process served a connection is read from its log line (the workers' connection
ids start with ``w1.``).
"""

import os
import re
import smtplib
import time

from twisted.python import usage
from twisted.trial import unittest

from qpsmtpd_tx.tap import Options
from qpsmtpd_tx.workers import HAVE_REUSEPORT, worker_count
from tests.support.processes import child_pids, listening_sockets, start_maildir_twistd

MESSAGE = b"From: a@b.example\r\nSubject: spread\r\n\r\nbody\r\n"
BOUND = 30


class WorkerCountTests(unittest.TestCase):
    def test_auto_is_one_per_usable_core(self):
        self.assertEqual(worker_count("auto"), len(os.sched_getaffinity(0)))
        self.assertEqual(worker_count(" AUTO "), len(os.sched_getaffinity(0)))
        self.assertEqual(worker_count("3"), 3)

    def test_options(self):
        options = Options()
        options.parseOptions(["--workers", "auto", "--config", self.mktemp_dir()])
        self.assertEqual(options["workers"], len(os.sched_getaffinity(0)))
        for bad, text in (("0", "at least 1"), ("two", "a number of at least 1 or auto")):
            with self.assertRaises(usage.UsageError) as caught:
                Options().parseOptions(["--workers", bad, "--config", self.mktemp_dir()])
            self.assertIn(text, str(caught.exception))

    def mktemp_dir(self):
        path = self.mktemp()
        os.makedirs(path)
        return path


class ReusePortTests(unittest.TestCase):
    def setUp(self):
        if not HAVE_REUSEPORT:
            raise unittest.SkipTest("no SO_REUSEPORT on this system")

    def test_a_socket_per_process_and_both_serve(self):
        process, port, log, _ = start_maildir_twistd(self, ["--workers", "2", "--reuseport"])
        deadline = time.monotonic() + BOUND
        while not child_pids(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(listening_sockets(port), 2)     # one shared socket without --reuseport
        for _ in range(20):
            with smtplib.SMTP("127.0.0.1", port, timeout=BOUND) as client:
                self.assertEqual(client.sendmail("a@b.example", ["u@example.com"], MESSAGE), {})
        line = re.compile(r"\] (w1\.)?[0-9a-f]+ message \S+ from <a@b.example>")

        def served():
            with open(log, "rb") as f:
                return [m.group(1) for m in line.finditer(f.read().decode(errors="replace"))]
        deadline = time.monotonic() + BOUND
        while len(served()) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        by = served()
        self.assertEqual(len(by), 20)
        # the kernel hashes each client port to a socket: both processes get some (the chance
        # that 20 connections all land on one is 2 in a million)
        self.assertGreater(by.count("w1."), 0)
        self.assertGreater(by.count(None), 0)
