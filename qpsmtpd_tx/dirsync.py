"""Shared directory fsyncs ("group commit") for deliveries running in parallel threads.

A Maildir delivery links its file into ``new/`` and must then fsync ``new/`` before the
message is acknowledged. One fsync of a directory makes durable every entry linked into it
before that fsync started, so deliveries that finish their link while another delivery's fsync
of the same directory runs need not each make their own: they wait for the next one, which one
of them runs for all. Under load this turns N directory fsyncs into about two, and leaves the
guarantee unchanged: :meth:`DirSync.sync` returns only after an fsync of the directory that
began after it was called has completed.
"""

import os
import threading


def fsync_directory(path):
    """fsync the directory ``path`` (raises OSError)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Directory:
    """The fsync state of one directory: generations started and finished."""

    __slots__ = ("started", "finished", "running", "errors")

    def __init__(self):
        self.started = 0
        self.finished = 0
        self.running = False
        #: generation → the OSError its fsync raised (kept while a caller may still read it)
        self.errors = {}


class DirSync:
    """Group commit of directory fsyncs; thread-safe, one instance per process is enough.

    ``fsync`` (a function of a directory path) is :func:`fsync_directory` except in tests.
    """

    #: errors of this many generations back are kept for callers that wake up late
    KEEP_ERRORS = 1000

    def __init__(self, fsync=fsync_directory):
        self._fsync = fsync
        self._cond = threading.Condition()
        self._dirs = {}
        #: how many fsyncs ran, and how many callers wait for one (for tests and measurements)
        self.fsyncs = 0
        self.waiting = 0

    def sync(self, path):
        """Return once an fsync of directory ``path`` that started after this call has
        completed; raise the OSError of that fsync if it failed. Blocks: call it in a thread."""
        with self._cond:
            state = self._dirs.get(path)
            if state is None:
                state = self._dirs[path] = _Directory()
            # the first fsync to start from now on is generation ``needed``: it covers us
            needed = state.started + 1
            while state.finished < needed:
                if state.running:
                    self.waiting += 1
                    self._cond.wait()
                    self.waiting -= 1
                    continue
                state.started += 1
                state.running = True
                generation = state.started
                self._cond.release()
                error = None
                try:
                    self._fsync(path)
                except OSError as e:
                    error = e
                finally:
                    self._cond.acquire()
                    self.fsyncs += 1
                    state.running = False
                    state.finished = generation
                    if error is not None:
                        state.errors[generation] = error
                        for old in [g for g in state.errors if g < generation - self.KEEP_ERRORS]:
                            del state.errors[old]
                    self._cond.notify_all()
            error = state.errors.get(needed)
        if error is not None:
            raise error


#: the process's instance
DIRECTORIES = DirSync()
