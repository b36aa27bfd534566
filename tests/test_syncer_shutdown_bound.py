"""The delivery child at the reactor's shutdown: the wait for its exit is bounded. Without a
bound, a server whose chain lost queue/maildir in a reload (so no plugin ``stop`` closed the
child first) and whose child is stuck on a disk would never exit. A real child, stopped with
SIGSTOP to stand for the stuck disk; the reactor's shutdown trigger is taken from a wrapper
that records it (the suite's reactor cannot be shut down inside a test)."""

import os
import signal

from twisted.internet import reactor
from twisted.trial import unittest

from qpsmtpd_tx.syncer import Syncer
from tests.support.harness import eventually
from tests.test_syncer import alive


class _RecordingReactor:
    """The real reactor, but system event triggers are recorded instead of added."""

    def __init__(self):
        self.triggers = []

    def addSystemEventTrigger(self, phase, event, callable_, *args, **kwargs):
        self.triggers.append((phase, event, callable_))

    def __getattr__(self, name):
        return getattr(reactor, name)


class ShutdownBoundTests(unittest.TestCase):
    async def test_shutdown_gives_up_on_a_stuck_child(self):
        recording = _RecordingReactor()
        syncer = Syncer(reactor=recording)
        syncer.SHUTDOWN_WAIT = 0.3
        child = syncer.start()
        pid = child.transport.pid
        self.addCleanup(lambda: alive(pid) and os.kill(pid, signal.SIGCONT))
        (phase, event, trigger), = recording.triggers
        self.assertEqual((phase, event), ("during", "shutdown"))
        os.kill(pid, signal.SIGSTOP)
        # (the bound of the test itself: without one in the trigger this times out)
        await trigger().addTimeout(10, reactor)
        self.assertFalse(child.ended)
        os.kill(pid, signal.SIGCONT)                 # it still finishes and exits by itself
        await eventually(lambda: child.ended)
        self.assertFalse(alive(pid))
