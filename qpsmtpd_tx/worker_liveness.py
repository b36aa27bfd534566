"""The main process's check that every ``--workers`` worker still answers (``--worker-timeout``).

A worker whose reactor stops turning (stopped, stuck in a blocking call or a loop) without
dying keeps the connections it accepted without greeting them, and with ``--reuseport`` the
kernel goes on handing its own listening socket a share of the new ones. So the main process
asks each worker for a sign of life every ``timeout / 5`` seconds: one byte (:data:`QUESTION`)
on the worker's standard input, the pipe it already watches for its parent's end. The
worker's reactor reads it and answers with one byte on a pipe of its own (:data:`ALIVE_FD`
in the worker, see :func:`answer`): the answer comes from the reactor itself, so a worker
whose hooks wait a long time (on a Deferred) is not killed while its reactor turns.

A worker that leaves a question unanswered for ``timeout`` seconds (:data:`START_ALLOWANCE`
at the least for its first answer, while it loads its plugins, and again for
:data:`START_ALLOWANCE` seconds after the main process passes SIGHUP on to it, while it loads
them again: see :meth:`Liveness.reloading`) is logged (``worker N not answering for S s;
killing it``), the main process accepts on its own sockets at once as for a
dead worker, and it gets SIGTERM, then SIGKILL :data:`KILL_GRACE` seconds later if it is still
there: the pool then starts it again as any worker that ended. The check goes on while the
pool stops, until every worker has ended: one that hangs instead of draining is killed too.
"""

import os

from twisted.internet import task
from twisted.logger import Logger

log = Logger(namespace="qpsmtpd_tx.workers")

#: the worker's file descriptor for its answers (the parent reads the other end)
ALIVE_FD = 3
#: what the main process writes to ask, and what the worker answers
QUESTION = b"?"
ANSWER = b"!"
#: seconds a worker that has not answered yet gets for its start (its plugins load first)
START_ALLOWANCE = 60.0
#: seconds between the SIGTERM and the SIGKILL of a worker that does not answer
KILL_GRACE = 5.0
#: default of ``--worker-timeout``
DEFAULT_TIMEOUT = 10


def answer(fd):
    """In the worker: answer a question on ``fd`` (a full pipe or a parent gone: no answer,
    the parent decides)."""
    try:
        os.write(fd, ANSWER)
    except OSError:
        pass


class Liveness:
    """Asks the workers of ``pool`` (a :class:`~qpsmtpd_tx.workers.WorkerPool`) for a sign of
    life, and kills one that leaves a question unanswered for ``timeout`` seconds; time is
    the pool's ``clock``.

    Each worker's state lives on its process protocol (``asked_at``: when the unanswered
    question went out, else None; ``answered``: whether it ever answered; ``reload_allowed_until``:
    the end of the allowance of its last reload, else None; ``killing``), so a restarted
    worker starts afresh.
    """

    def __init__(self, pool, timeout):
        self.pool = pool
        self.timeout = timeout
        self._loop = None

    def start(self):
        """Start asking (every ``timeout / 5`` seconds)."""
        self._loop = task.LoopingCall.withCount(self._ask)
        self._loop.clock = self.pool.clock
        self._loop.start(self.timeout / 5.0, now=False)

    def stop(self):
        """Stop asking; a kill under way still ends with its SIGKILL."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def answered(self, worker):
        """``worker`` (its process protocol) answered."""
        if not worker.answered:
            log.info("worker {n} ready (answers the liveness check)", n=worker.number)
        worker.answered = True
        worker.asked_at = None

    def reloading(self, worker):
        """``worker`` (its process protocol) is sent SIGHUP: it runs its plugins' ``init`` in
        its reactor, which answers no question meanwhile. It is not judged hung before
        :data:`START_ALLOWANCE` seconds (at least ``timeout``) from now, as at its start;
        after that an unanswered question counts as before. Timed from the signal, not from
        an answer: one read after the signal may have been sent before the reload began."""
        worker.reload_allowed_until = self.pool.clock.seconds() + max(self.timeout,
                                                                      START_ALLOWANCE)

    def _ask(self, intervals):
        now = self.pool.clock.seconds()
        # A late turn (intervals > 1) means this process was busy itself: the answers may be
        # waiting unread in the pipes (timers run before the reactor reads), so the waits
        # start afresh instead of ending in a kill.
        late = intervals > 1
        for number, (worker, transport) in list(self.pool.workers.items()):
            if worker.killing:
                continue
            if late and worker.asked_at is not None:
                worker.asked_at = now
                continue
            if worker.asked_at is None:
                worker.asked_at = now
                transport.write(QUESTION)
                continue
            waited = now - worker.asked_at
            limit = self.timeout if worker.answered else max(self.timeout, START_ALLOWANCE)
            if waited >= limit and not self._reload_allowed(worker, now):
                self._kill(number, worker, transport, waited)

    @staticmethod
    def _reload_allowed(worker, now):
        """Whether ``worker`` is still within the allowance of its last reload."""
        return worker.reload_allowed_until is not None and now < worker.reload_allowed_until

    def _kill(self, number, worker, transport, waited):
        worker.killing = True
        log.error("worker {n} not answering for {s:.0f} s; killing it", n=number, s=waited)
        self.pool.serve_for(number)
        _signal(transport, "TERM")
        self.pool.clock.callLater(KILL_GRACE, self._force, worker, transport)

    @staticmethod
    def _force(worker, transport):
        if not worker.ended.called:
            _signal(transport, "KILL")


def _signal(transport, name):
    try:
        transport.signalProcess(name)
    except Exception:      # ended meanwhile
        pass
