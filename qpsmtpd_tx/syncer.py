"""Making written Maildir files durable from one thread, in batches.

Why not the I/O thread pool: every Python step of a pool thread competes with the reactor
thread for the GIL, and each system call the reactor makes (send, recv, epoll) must take the
GIL back afterwards; under load the pool's own hand-off (queues, conditions, a context per
call) and a delivery's nine system calls cost the reactor more than the delivery itself. Here
the reactor thread creates and writes a small message's file (page-cache writes, no waiting on
the disk), and this one thread only does what waits on the disk: it takes every file waiting,
fsyncs each, links it into ``new/``, then fsyncs each ``new/`` once for the whole batch, and
hands the batch back to the reactor in one call. The guarantee is the one of
:func:`~qpsmtpd_tx.maildir.write_maildir`: a delivery succeeds only after its file and then
its directory were fsynced.
"""

import queue
import threading

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from qpsmtpd_tx.dirsync import fsync_directory
from qpsmtpd_tx.maildir import commit_file


class Syncer:
    """One thread committing :class:`~qpsmtpd_tx.maildir.MaildirFile` objects in batches.

    ``reactor`` defaults to the global one; ``fsync_dir`` is the directory fsync (tests
    pass their own to control its timing).
    """

    def __init__(self, reactor=None, fsync_dir=fsync_directory):
        self._reactor = reactor
        self._fsync_dir = fsync_dir
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._start_lock = threading.Lock()
        #: batches committed and files in them (for tests and measurements)
        self.batches = 0
        self.files = 0

    def commit(self, f):
        """A Deferred firing with ``f.name`` once ``f`` is in ``new/`` durably (or failing with
        the MaildirError or OSError of the step that failed). Call it in the reactor thread."""
        d = Deferred()
        if self._thread is None:
            self._start()
        self._queue.put((f, d))
        return d

    def _start(self):
        with self._start_lock:
            if self._thread is None:
                if self._reactor is None:
                    from twisted.internet import reactor
                    self._reactor = reactor
                # a daemon: at exit no delivery is pending (the sessions drain first)
                self._thread = threading.Thread(target=self._run, name="qpsmtpd-tx-syncer",
                                                daemon=True)
                self._thread.start()

    def _run(self):
        get, get_nowait, empty = self._queue.get, self._queue.get_nowait, queue.Empty
        while True:
            batch = [get()]
            try:
                while True:
                    batch.append(get_nowait())
            except empty:
                pass
            self._reactor.callFromThread(self._settle, self._commit_batch(batch))

    def _commit_batch(self, batch):
        """[(Deferred, name or exception)] for ``batch``, after the fsyncs."""
        results, dirs = [], {}
        for f, d in batch:
            try:
                commit_file(f)
            except Exception as e:        # handed to the delivery's Deferred
                results.append((d, e, None))
            else:
                dirs[f.new_dir] = None
                results.append((d, f.name, f.new_dir))
        for path in dirs:
            try:
                self._fsync_dir(path)
            except OSError as e:
                dirs[path] = e
        return [(d, dirs[path] if path is not None and dirs[path] is not None else outcome)
                for d, outcome, path in results]

    def _settle(self, results):
        self.batches += 1
        self.files += len(results)
        for d, outcome in results:
            if isinstance(outcome, BaseException):
                d.errback(Failure(outcome))
            else:
                d.callback(outcome)


#: the process's syncer
SYNCER = Syncer()
