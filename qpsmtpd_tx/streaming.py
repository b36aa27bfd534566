"""Moving a message out of the server in bounded pieces, so its size never becomes memory.

A message is a few small byte strings (a header block, envelope lines) followed by the body,
an open file object from ``Transaction.body.open()``. These helpers read that body ``CHUNK``
bytes at a time: ``write_to_fd`` for files written from the I/O thread pool (queue/maildir,
content_log), ``message_chunks`` for a pull producer that feeds a socket or a pipe only as
fast as it drains (spamd, clamd).
"""

import itertools
import os

#: bytes read from the body at a time: large enough that a typical message is one read
CHUNK = 1 << 20


def write_all(fd, pieces):
    """Write every piece of ``pieces`` (a list of bytes) to ``fd`` with ``os.writev``,
    going on after short writes."""
    pending = [p for p in pieces if p]
    while pending:
        written = os.writev(fd, pending)
        while pending and written >= len(pending[0]):
            written -= len(pending[0])
            pending.pop(0)
        if written:
            pending[0] = pending[0][written:]


def write_to_fd(fd, head, body, chunk_size=CHUNK):
    """Write the byte strings ``head``, then ``body`` (a binary file, from its current
    position) to ``fd``; return the number of bytes written. Blocking: run it in a thread.

    A message whose body fits in one chunk takes a single ``writev``; a larger one is copied
    a chunk at a time, so memory stays at one chunk whatever the size.
    """
    pieces = list(head)
    total = 0
    while True:
        chunk = body.read(chunk_size)
        pieces.append(chunk)
        total += sum(len(p) for p in pieces)
        write_all(fd, pieces)
        # a file's read() is short only at its end: no extra read for a small message
        if len(chunk) < chunk_size:
            return total
        pieces = []


def message_chunks(head, body, chunk_size=CHUNK, crlf=False):
    """Yield ``head`` (bytes), then ``body`` (a binary file) ``chunk_size`` bytes at a time;
    with ``crlf``, every LF becomes CRLF (a line ending never splits, the input has LF only).
    The body is read lazily, as the consumer asks for the next chunk (also after an empty
    ``head``: the body is never skipped)."""
    for data in itertools.chain([head], iter(lambda: body.read(chunk_size), b"")):
        if data:
            yield data.replace(b"\n", b"\r\n") if crlf else data


def crlf_length(head, body, chunk_size=CHUNK):
    """The length of ``head`` + ``body`` once every LF is CRLF; ``body`` is read to its end
    and put back at its start. Blocking: run it in a thread for a spooled body."""
    total = len(head) + head.count(b"\n")
    for chunk in iter(lambda: body.read(chunk_size), b""):
        total += len(chunk) + chunk.count(b"\n")
    body.seek(0)
    return total
