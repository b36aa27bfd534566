"""The Maildir delivery child: ``python -m qpsmtpd_tx.maildir_child``, started by
:mod:`~qpsmtpd_tx.syncer`. Requests come on stdin, replies go to stdout
(:mod:`~qpsmtpd_tx.maildir_frames`), anything unexpected to stderr (the server logs it).

Its own interpreter: no GIL shared with the server's reactor. It reads every request waiting
in the pipe and, for that batch, creates and writes each file in ``tmp/``, then fsyncs and
links each into ``new/``, then fsyncs each distinct ``new/`` once, and only then writes the
batch's replies, in one write. While it waits on the disk the next requests pile up in the
pipe and make the next, bigger, batch.

The file fsyncs of a batch run in :data:`THREADS` threads at once, each thread taking a
part of the batch: fsyncs issued together share one journal commit and one cache flush,
where one after another each waited for its own (ext4 allocates a file's blocks only when it
is written back), and on a busy disk one thread delivered 220 messages a second where eight
threads delivered 900-1,340 (50 deliveries in flight, 10 KiB). A batch of one file stays in
the child's own thread. Fsyncing batches of up to four there too cost a third less CPU on a
quiet journaled disk, but on a busy one or without a journal it delivered 0.6-0.9x as many
messages a second, so it is not done. Those threads share only the child's GIL, never the
server's.

Before the fsyncs the writeback of every file of the batch is started
(:func:`~qpsmtpd_tx.writeback.start_writeback`), so that the disk gets the whole batch's
data at once rather than as each thread reaches its fsync: on a journaled ext4 with 50
deliveries in flight 0.40x the context switches, 0.77x the child's CPU and 1.23x the
deliveries per second (medians; bench/README.md, "Measured: the delivery child").

It ignores SIGINT and SIGTERM (a ^C in the server's terminal, or a stop signal sent to the
whole process group, must not end it while the server still drains its sessions) and exits
when its stdin closes: the server closes it at shutdown, and the kernel when the server dies,
so it never outlives the server. Requests already read are finished first.
"""

import fcntl
import os
import select
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from qpsmtpd_tx.dirsync import fsync_directory
from qpsmtpd_tx.maildir import commit_file, create_file, write_file
from qpsmtpd_tx.maildir_frames import REQUEST, decode_requests, encode_reply, frame_size
from qpsmtpd_tx.streaming import write_all
from qpsmtpd_tx.writeback import start_writeback

#: the pipe buffer asked for (the unprivileged maximum by default): the more requests fit in
#: it while the child waits on the disk, the bigger the next batch
PIPE_SIZE = 1 << 20
#: the most files open at a time (a batch larger than this is committed in parts)
MOST_OPEN = 256
#: threads fsyncing a batch's files at the same time (see the module's docstring)
THREADS = 8


def commit_batch(requests, batch, pool):
    """Deliver ``requests`` (from :func:`decode_requests`), the fsyncs in the threads of
    ``pool``; the replies, as one byte string."""
    opened = []
    for request_id, mode, maildir, message in requests:
        try:
            f = create_file(maildir, mode)
            write_file(f, [message])
        except Exception as e:    # this delivery fails, the others go on
            opened.append((request_id, e))
        else:
            opened.append((request_id, f))
    if len(opened) > 1:
        start_writeback(f.fd for _, f in opened if not isinstance(f, Exception))
    # at most THREADS parts, one per thread: a task per file cost a third more CPU
    size = -(-len(opened) // THREADS)
    parts = [opened[start:start + size] for start in range(0, len(opened), size)]
    results = [result for part in (pool.map(_commit_part, parts) if len(parts) > 1
                                   else map(_commit_part, parts))
               for result in part]
    dirs = dict.fromkeys(new_dir for _, _, new_dir in results if new_dir is not None)
    for path in dirs:
        try:
            fsync_directory(path)
        except OSError as e:
            dirs[path] = e
    return b"".join(
        encode_reply(request_id, batch,
                     dirs[new_dir] if new_dir is not None and dirs[new_dir] is not None
                     else outcome)
        for request_id, outcome, new_dir in results)


def _commit_part(opened):
    """``[(request id, file name or exception, new/ or None)]`` for files of a batch."""
    results = []
    for request_id, f in opened:
        if isinstance(f, Exception):
            results.append((request_id, f, None))
            continue
        try:
            commit_file(f)
        except Exception as e:
            results.append((request_id, e, None))
        else:
            results.append((request_id, f.name, f.new_dir))
    return results


class Input:
    """The requests arriving on a non-blocking descriptor, without copying a message twice."""

    def __init__(self, fd):
        self.fd = fd
        self.chunks = []
        self.size = 0
        #: bytes the first incomplete request needs before it is worth parsing
        self.need = REQUEST.size
        self.eof = False

    def read_available(self):
        """Read what the pipe holds now; True if anything (or the end) came."""
        got = False
        while True:
            try:
                chunk = os.read(self.fd, PIPE_SIZE)
            except BlockingIOError:
                return got
            if not chunk:
                self.eof = True
                return True
            self.chunks.append(chunk)
            self.size += len(chunk)
            got = True

    def requests(self):
        """The complete requests received so far (taken out of the buffer)."""
        if self.size < self.need:
            return []
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        requests, used = decode_requests(data)
        rest = data[used:]
        self.chunks, self.size = ([rest] if rest else []), len(rest)
        self.need = frame_size(rest) if len(rest) >= REQUEST.size else REQUEST.size
        return requests


def serve(infd, outfd):
    """Deliver the requests read from ``infd`` until it ends; replies to ``outfd``."""
    try:
        fcntl.fcntl(infd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass      # not a pipe, or above the system's limit: the default size works too
    os.set_blocking(infd, False)
    source = Input(infd)
    pool = ThreadPoolExecutor(THREADS, thread_name_prefix="fsync")
    batch = 0
    while True:
        if not source.read_available():
            select.select([infd], [], [])
            continue
        requests = source.requests()
        for start in range(0, len(requests), MOST_OPEN):
            batch += 1
            write_all(outfd, [commit_batch(requests[start:start + MOST_OPEN], batch, pool)])
        if source.eof:
            if source.size:
                sys.stderr.write("input ended inside a request (%d bytes dropped)\n"
                                 % source.size)
            return


def main():
    """The child's entry point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        serve(0, 1)
    except BrokenPipeError:
        pass      # the server is gone: nobody is left to tell


if __name__ == "__main__":
    main()
