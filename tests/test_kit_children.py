"""The test kit's counts of a server's children (tests/support/processes.py).

A child the server spawns has the server's own command line from its fork until its exec:
``child_pids`` used to count every child but the Maildir delivery child, so a delivery child
caught in that moment counted as a ``--workers`` worker (test_startup's check met the same
child in 16729cb). A real spawn's moment is far too short to catch on purpose, so here a
stand-in server forks a child that never execs (the one stand-in: the processes are real).
"""

import os
import signal
import subprocess
import sys

from twisted.trial import unittest

from tests.support.processes import (CHECKOUT, child_pids, delivery_child_pids, poll_until,
                                     server_env)

#: a stand-in server: one child caught before its exec (a fork that only sleeps), one
#: exec'ed Maildir delivery child (the real one, waiting on its input). The module's name is
#: put together so that the stand-in's own command line, like a twistd's, does not hold it.
STAND_IN = """
import os, subprocess, sys, time
if os.fork() == 0:
    time.sleep(60)
    os._exit(0)
module = "qpsmtpd_tx" + ".maildir_child"
subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE)
print("ready", flush=True)
time.sleep(60)
"""


class ChildrenTests(unittest.TestCase):
    def test_a_child_before_its_exec_is_neither_a_worker_nor_a_delivery_child(self):
        server = subprocess.Popen([sys.executable, "-c", STAND_IN], cwd=CHECKOUT,
                                  env=server_env(), stdout=subprocess.PIPE,
                                  start_new_session=True)
        self.addCleanup(server.wait)
        self.addCleanup(server.stdout.close)
        self.addCleanup(os.killpg, server.pid, signal.SIGKILL)
        self.assertEqual(server.stdout.readline(), b"ready\n")
        self.assertTrue(poll_until(lambda: len(delivery_child_pids(server.pid)) == 1, 20))
        self.assertEqual(child_pids(server.pid), [])
