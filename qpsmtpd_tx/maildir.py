"""Writing one message into a Maildir durably (queue/maildir, the split policy's quarantine).

tmp/ file → write → fsync → link into new/ → unlink tmp → fsync new/, from a thread; the
fsync of new/ is shared by the deliveries into it that run at the same time (see dirsync).
"""

import itertools
import os
import socket
import time

from qpsmtpd_tx.dirs import make_dirs
from qpsmtpd_tx.dirsync import DIRECTORIES
from qpsmtpd_tx.streaming import write_to_fd

_counter = itertools.count(1)


class MaildirError(Exception):
    """Delivery failed; the text says which step."""


#: the host name part of file names, with "/" and ":" escaped as Maildir readers expect
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
#: Maildirs known to have cur/, new/ and tmp/ (skips three mkdir calls per message)
_ready = set()


def make_maildir(maildir, mode):
    """Create ``maildir`` with ``cur``, ``new`` and ``tmp`` (directories get ``mode``)."""
    for sub in ("tmp", "new", "cur"):
        make_dirs(os.path.join(maildir, sub), mode)
    _ready.add(maildir)


def write_maildir(maildir, mode, head, body):
    """Write the byte strings ``head`` and then the file ``body`` (from its current position)
    into a new file in ``maildir`` durably; return the file's name.

    tmp/ file → write → fsync → link into new/ → unlink tmp → fsync new/. This runs in a
    thread: it keeps the Python work between system calls small, because the reactor thread
    waits for the GIL whenever this holds it.
    """
    if maildir not in _ready:
        make_maildir(maildir, mode)
    now = time.time()
    name = "%d.P%dM%dQ%d.%s" % (now, os.getpid(), int(now * 1e6) % 1000000, next(_counter), _HOST)
    tmp = os.path.join(maildir, "tmp", name)
    new_dir = os.path.join(maildir, "new")
    new = os.path.join(new_dir, name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o666)
    except FileNotFoundError:
        make_maildir(maildir, mode)   # removed while we ran: make it again, once
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o666)
    except OSError as e:
        raise MaildirError("open: %s" % e.strerror)
    try:
        try:
            write_to_fd(fd, head, body)
            os.fsync(fd)
        except OSError as e:
            raise MaildirError("write: %s" % e.strerror)
        finally:
            os.close(fd)
        try:
            os.link(tmp, new)
        except OSError as e:
            raise MaildirError("link: %s" % e.strerror)
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    # shared with the deliveries into the same new/ that run at the same time
    DIRECTORIES.sync(new_dir)
    return name
