"""Making written Maildir files durable from a few threads, in batches: the fallback of
:mod:`~qpsmtpd_tx.syncer` where the server cannot run its delivery child (an interpreter or
standard library the user it runs as may not use, e.g. under ``/root`` with ``--uid``).

It costs the server more CPU than the child (bench/README.md, "Measured: the delivery
child"): the threads share the reactor's GIL. Why not the I/O thread pool: every Python step of a pool thread competes with the reactor
thread for the GIL, and each system call the reactor makes (send, recv, epoll) must take the
GIL back afterwards; under load the pool's own hand-off (queues, conditions, a context per
call) and a delivery's nine system calls cost the reactor more than the delivery itself. Here
a syncer thread takes the messages waiting (up to :data:`BATCH`, each a few byte strings held
in memory), writes, fsyncs and links each into ``new/``, then fsyncs each ``new/`` once for the
batch (shared with the other threads' batches, :mod:`~qpsmtpd_tx.dirsync`), and hands the batch
back to the reactor in one call. The reactor thread never waits on the disk. Several threads
(:data:`THREADS`), because on a busy disk an fsync waits for a journal commit (measured 5-7 ms
here under load): files fsynced one after another by a single thread cut throughput to a
third. The guarantee is the one of :func:`~qpsmtpd_tx.maildir.write_maildir`: a delivery
succeeds only after its file and then its directory were fsynced.

The deliveries of one reactor turn are handed over together, at the end of the turn: a thread
woken for each message (the threads then take the GIL from each other and from the reactor
at every system call) cost more CPU than the deliveries themselves — 58 futex calls per
message under bench/ load with eight threads woken one message at a time.
"""

import queue
import threading

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from qpsmtpd_tx.dirsync import DirSync, fsync_directory
from qpsmtpd_tx.maildir import commit_file, create_file, write_file


#: threads, and the most files one thread commits at a time (see the module's docstring)
THREADS = 8
BATCH = 8


class ThreadSyncer:
    """``threads`` threads delivering messages into Maildirs in batches of at most ``batch``.

    ``reactor`` defaults to the global one; ``fsync_dir`` is the directory fsync (tests
    pass their own to control its timing).
    """

    def __init__(self, reactor=None, fsync_dir=None, threads=THREADS, batch=BATCH):
        self._reactor = reactor
        self._dirs = DirSync(fsync_dir or fsync_directory)
        self._queue = queue.SimpleQueue()
        #: deliveries of this reactor turn, not yet handed to a thread
        self._waiting = []
        self._threads = threads
        self._batch = batch
        self._started = False
        self._start_lock = threading.Lock()
        #: batches committed and files in them (for tests and measurements)
        self.batches = 0
        self.files = 0

    def deliver(self, maildir, mode, pieces):
        """Write the byte strings ``pieces`` into a new file in ``maildir`` durably; a Deferred
        firing with the file's name once it is in ``new/`` and ``new/`` was fsynced (or failing
        with the MaildirError or OSError of the step that failed). Call it in the reactor
        thread."""
        d = Deferred()
        if not self._started:
            self._start()
        self._waiting.append((maildir, mode, pieces, d))
        if len(self._waiting) == 1:
            self._reactor.callLater(0, self._hand_over)
        return d

    def _hand_over(self):
        """Give the deliveries of this reactor turn to the threads, at most ``batch`` each."""
        waiting, self._waiting = self._waiting, []
        most = self._batch
        for start in range(0, len(waiting), most):
            self._queue.put(waiting[start:start + most])

    def _start(self):
        with self._start_lock:
            if not self._started:
                if self._reactor is None:
                    from twisted.internet import reactor
                    self._reactor = reactor
                # daemons: at exit no delivery is pending (the sessions drain first)
                for n in range(self._threads):
                    thread = threading.Thread(target=self._run, name="qpsmtpd-tx-syncer-%d" % n,
                                              daemon=True)
                    thread.start()
                self._started = True

    def _run(self):
        get = self._queue.get
        while True:
            batch = get()
            self._reactor.callFromThread(self._settle, self._commit_batch(batch))

    def _commit_batch(self, batch):
        """[(Deferred, name or exception)] for ``batch``, after the fsyncs."""
        results, dirs = [], {}
        for maildir, mode, pieces, d in batch:
            try:
                f = create_file(maildir, mode)
                write_file(f, pieces)
                commit_file(f)
            except Exception as e:        # handed to the delivery's Deferred
                results.append((d, e, None))
            else:
                dirs[f.new_dir] = None
                results.append((d, f.name, f.new_dir))
        for path in dirs:
            try:
                self._dirs.sync(path)
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


#: the process's thread syncer (its threads start on its first delivery)
THREAD_SYNCER = ThreadSyncer()
