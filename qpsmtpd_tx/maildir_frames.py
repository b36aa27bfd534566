"""The byte format between the server and its Maildir delivery child (:mod:`~qpsmtpd_tx.syncer`,
:mod:`~qpsmtpd_tx.maildir_child`): length-prefixed frames, so a batch is parsed without scanning.

A request is :data:`REQUEST` (request id, directory mode, length of the Maildir path, length
of the message) followed by the path (file system encoding) and the message bytes. A reply is
:data:`REPLY` (request id, :data:`OK` or an error kind, errno, the child's batch number, length
of the text) followed by the text: the file name, or what failed. Standard library only: the
child imports this.
"""

import os
import struct

REQUEST = struct.Struct("!IIII")
REPLY = struct.Struct("!IBiII")

#: reply kinds: delivered; a MaildirError or other exception (text is its message); an
#: OSError (text is its strerror, then NUL and the file name if it has one)
OK, MAILDIR_ERROR, OS_ERROR = 0, 1, 2


def encode_request(request_id, mode, path, pieces):
    """The frame of one delivery as a list of byte strings: ``path`` is the Maildir's (bytes,
    :func:`os.fsencode`), ``pieces`` are the message."""
    return [REQUEST.pack(request_id, mode, len(path), sum(map(len, pieces))), path] + pieces


def decode_requests(data):
    """``([(request_id, mode, maildir, message), ...], used)`` for the complete requests at the
    start of the bytes ``data``; ``message`` is a memoryview of ``data``."""
    view = memoryview(data)
    requests, at, size, head = [], 0, len(data), REQUEST.size
    while size - at >= head:
        request_id, mode, path_len, data_len = REQUEST.unpack_from(data, at)
        end = at + head + path_len + data_len
        if end > size:
            break
        path = os.fsdecode(bytes(view[at + head:at + head + path_len]))
        requests.append((request_id, mode, path, view[at + head + path_len:end]))
        at = end
    return requests, at


def frame_size(data):
    """Bytes the first request of ``data`` (at least :data:`REQUEST`.size bytes) needs."""
    _, _, path_len, data_len = REQUEST.unpack_from(data)
    return REQUEST.size + path_len + data_len


def encode_reply(request_id, batch, outcome):
    """The reply for ``outcome``: the file name (str) or the exception the delivery raised."""
    if isinstance(outcome, str):
        kind, number, text = OK, 0, outcome
    elif isinstance(outcome, OSError):
        kind, number = OS_ERROR, outcome.errno or 0
        text = outcome.strerror or str(outcome)
        if outcome.filename is not None:
            text += "\0" + os.fsdecode(outcome.filename)
    else:
        kind, number, text = MAILDIR_ERROR, 0, str(outcome) or type(outcome).__name__
    raw = text.encode("utf-8", "surrogateescape")
    return REPLY.pack(request_id, kind, number, batch, len(raw)) + raw


def decode_replies(data):
    """``([(request_id, kind, errno, batch, text), ...], used)`` for the complete replies at
    the start of ``data``."""
    replies, at, size, head = [], 0, len(data), REPLY.size
    while size - at >= head:
        request_id, kind, number, batch, text_len = REPLY.unpack_from(data, at)
        end = at + head + text_len
        if end > size:
            break
        text = bytes(data[at + head:end]).decode("utf-8", "surrogateescape")
        replies.append((request_id, kind, number, batch, text))
        at = end
    return replies, at
