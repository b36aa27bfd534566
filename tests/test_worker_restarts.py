"""--workers: a worker that ends is started again, later each time it fails at once.

The pool's timing runs on a Clock; ``_spawn`` only records which worker it would start (real
worker processes are started, killed and restarted in test_end_to_end.WorkersTests).
"""

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from qpsmtpd_tx.workers import WorkerPool


class RecordingPool(WorkerPool):
    """A WorkerPool on a Clock whose workers are only recorded, never started."""

    def __init__(self):
        WorkerPool.__init__(self, 2, listening=None, worker_args=[])
        self.clock = Clock()
        self.spawned = []

    def _spawn(self, number):
        self.spawned.append((number, self.clock.seconds()))
        self.workers[number] = ("worker", "transport")
        self._started_at[number] = self.clock.seconds()

    def end(self, number):
        self.worker_ended(number, Failure(RuntimeError("exit status 1")))


class RestartTests(unittest.TestCase):
    def setUp(self):
        self.pool = RecordingPool()
        self.pool.startService()
        self.addCleanup(lambda: setattr(self.pool, "running", False))

    def restart_delays(self, number, lifetimes):
        """End worker ``number`` after each lifetime; the delays before each restart."""
        pool, delays = self.pool, []
        for lived in lifetimes:
            pool.clock.advance(lived)
            pool.end(number)
            ended_at, spawns = pool.clock.seconds(), len(pool.spawned)
            while len(pool.spawned) == spawns and pool.clock.seconds() - ended_at < 600:
                pool.clock.advance(0.5)
            started = [t for n, t in pool.spawned if n == number][-1]
            delays.append(started - ended_at)
        return delays

    def test_a_worker_failing_at_once_waits_longer_each_time(self):
        self.assertEqual(self.restart_delays(1, [0.5] * 8), [1, 2, 4, 8, 16, 32, 60, 60])

    def test_a_worker_that_ran_a_while_is_restarted_after_a_second(self):
        self.assertEqual(self.restart_delays(1, [0.5, 0.5, 0.5, 30, 0.5]), [1, 2, 4, 1, 2])

    def test_each_worker_has_its_own_delay(self):
        self.restart_delays(1, [0.5] * 4)
        self.assertEqual(self.restart_delays(2, [0.5]), [1])

    def test_no_restart_once_stopped(self):
        self.pool.running = False
        self.pool.end(1)
        self.pool.clock.advance(120)
        self.assertEqual([n for n, _ in self.pool.spawned], [1, 2])
