"""A child process's input pipe whose complete reading can be checked after the child exits.

A program that exits 0 has taken a message only if it read all of it. Write errors alone
cannot tell: a small message fits in the pipe's buffer, every write succeeds, and a program
that reads the first 100 bytes and exits 0 leaves the rest there unread. So the parent keeps
its own copy of the pipe's read end (it never reads from it): once the child has exited, the
bytes still in the pipe (``FIONREAD``) are exactly what the child left unread.

Use: ``pipe = ChildInput()``, pass ``pipe.child_fd`` as the child's descriptor in
``spawnProcess(childFDs=...)``, write through ``pipe.writer`` (a Twisted consumer: register
a producer, or ``FileSender``), ``pipe.writer.loseConnection()`` when done; after the child
has exited, ``pipe.finish()`` says whether it read everything, and closes the pipe.
"""

import array
import fcntl
import os
import termios

from twisted.internet import abstract, defer, error, fdesc, main
from twisted.python import failure


class PipeWriter(abstract.FileDescriptor):
    """The parent's non-blocking write end of a pipe, as a Twisted consumer (with producer
    flow control: a pull producer is asked for more only when the buffer has drained).

    ``closed`` fires (never fails) with the reason, an exception, once the descriptor is
    closed: ``ConnectionDone`` after ``loseConnection`` wrote everything,
    ``ConnectionAborted`` after ``abort``.
    """

    def __init__(self, fd, reactor=None):
        super().__init__(reactor)
        fdesc.setNonBlocking(fd)
        self.fd = fd
        self.connected = 1
        self.closed = defer.Deferred()

    def fileno(self):
        return self.fd

    def writeSomeData(self, data):
        return fdesc.writeToFD(self.fd, data)

    def doRead(self):
        """Never registered for reading; a write end has nothing to read."""

    def _postLoseConnection(self):
        return main.CONNECTION_DONE

    def connectionLost(self, reason):
        if self.fd < 0:
            return
        super().connectionLost(reason)
        os.close(self.fd)
        self.fd = -1
        self.closed.callback(reason.value)

    def abort(self):
        """Drop whatever is still buffered and close now (the reader is gone)."""
        if self.fd < 0:
            return
        self._tempDataBuffer = []
        self._tempDataLen = 0
        self.dataBuffer = b""
        self.connectionLost(failure.Failure(error.ConnectionAborted()))


class ChildInput:
    """A pipe to one child's input: ``child_fd`` for spawnProcess, ``writer`` for the parent."""

    def __init__(self, reactor=None):
        self.child_fd, write_fd = os.pipe()
        self.writer = PipeWriter(write_fd, reactor)
        self.cleanly_closed = False
        self.writer.closed.addCallback(self._closed)

    def _closed(self, reason):
        self.cleanly_closed = isinstance(reason, error.ConnectionDone)

    def unread(self):
        """How many bytes written into the pipe nobody has read (yet)."""
        count = array.array("i", [0])
        fcntl.ioctl(self.child_fd, termios.FIONREAD, count, True)
        return count[0]

    def finish(self):
        """Call once the child has exited: True if every byte was written, the pipe closed,
        and the child read all of it. Closes both ends (what is unwritten is dropped)."""
        if self.child_fd < 0:
            return False
        taken = self.cleanly_closed and self.unread() == 0
        self.writer.abort()
        os.close(self.child_fd)
        self.child_fd = -1
        return taken

    def close(self):
        """Give up: close both ends (e.g. the child could not be started, or timed out)."""
        self.writer.abort()
        if self.child_fd >= 0:
            os.close(self.child_fd)
            self.child_fd = -1
