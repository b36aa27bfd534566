"""Writing one message into a Maildir durably (queue/maildir, the split policy's quarantine).

tmp/ file → write → fsync → link into new/ → unlink tmp → fsync new/, from a thread; the
fsync of new/ is shared by the deliveries into it that run at the same time (see dirsync).
"""

import itertools
import os
import socket
import time

from qpsmtpd_tx.dirs import make_dirs
from qpsmtpd_tx.dirsync import DIRECTORIES, fsync_directory
from qpsmtpd_tx.streaming import write_all, write_to_fd

_counter = itertools.count(1)


class MaildirError(Exception):
    """Delivery failed; the text says which step."""


#: the host name part of file names, with "/" and ":" escaped as Maildir readers expect
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
#: Maildirs known to have cur/, new/ and tmp/ (skips three mkdir calls per message)
_ready = set()


def make_maildir(maildir, mode):
    """Create ``maildir`` with ``cur``, ``new`` and ``tmp`` (directories get ``mode``).

    The parent of every directory created is fsynced (raises OSError): a message fsynced
    into a ``new/`` made here must not vanish with its directory in a crash.
    """
    created = []
    for sub in ("tmp", "new", "cur"):
        created += make_dirs(os.path.join(maildir, sub), mode)
    for parent in dict.fromkeys(os.path.dirname(directory) for directory in created):
        fsync_directory(parent)
    _ready.add(maildir)


class MaildirFile:
    """One message file on its way into a Maildir: open in ``tmp/`` until :func:`commit_file`."""

    __slots__ = ("fd", "name", "tmp", "new_dir", "new")

    def __init__(self, fd, name, tmp, new_dir, new):
        self.fd, self.name, self.tmp, self.new_dir, self.new = fd, name, tmp, new_dir, new


def create_file(maildir, mode):
    """A new, empty file in ``maildir``/tmp (a :class:`MaildirFile`); raises MaildirError."""
    if maildir not in _ready:
        make_maildir(maildir, mode)
    now = time.time()
    name = "%d.P%dM%dQ%d.%s" % (now, os.getpid(), int(now * 1e6) % 1000000, next(_counter), _HOST)
    tmp = os.path.join(maildir, "tmp", name)
    new_dir = os.path.join(maildir, "new")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o666)
    except FileNotFoundError:
        make_maildir(maildir, mode)   # removed while we ran: make it again, once
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o666)
    except OSError as e:
        raise MaildirError("open: %s" % e.strerror)
    return MaildirFile(fd, name, tmp, new_dir, os.path.join(new_dir, name))


def _abandon(f):
    os.close(f.fd)
    try:
        os.unlink(f.tmp)
    except OSError:
        pass


def write_file(f, head, body=None):
    """Write the byte strings ``head``, then the file ``body`` (from its current position), if
    any, into ``f``; on failure ``f`` is closed and removed, and MaildirError raised."""
    try:
        if body is None:
            write_all(f.fd, head)
        else:
            write_to_fd(f.fd, head, body)
    except OSError as e:
        _abandon(f)
        raise MaildirError("write: %s" % e.strerror)


def commit_file(f):
    """fsync ``f``, close it, link it into ``new/`` and remove it from ``tmp/``; raises
    MaildirError. ``new/`` itself still needs an fsync before the message is safe."""
    try:
        try:
            os.fsync(f.fd)
        except OSError as e:
            raise MaildirError("write: %s" % e.strerror)
        finally:
            os.close(f.fd)
        try:
            os.link(f.tmp, f.new)
        except OSError as e:
            raise MaildirError("link: %s" % e.strerror)
    finally:
        try:
            os.unlink(f.tmp)
        except OSError:
            pass


def write_maildir(maildir, mode, head, body):
    """Write the byte strings ``head`` and then the file ``body`` (from its current position)
    into a new file in ``maildir`` durably; return the file's name.

    tmp/ file → write → fsync → link into new/ → unlink tmp → fsync new/. This runs in a
    thread: it keeps the Python work between system calls small, because the reactor thread
    waits for the GIL whenever this holds it.
    """
    f = create_file(maildir, mode)
    write_file(f, head, body)
    commit_file(f)
    # shared with the deliveries into the same new/ that run at the same time
    DIRECTORIES.sync(f.new_dir)
    return f.name
