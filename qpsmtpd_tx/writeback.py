"""Starting the writeback of written files without waiting for it (Linux's
``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)``; nothing elsewhere).

Called on every file of a batch before their fsyncs, it hands the disk the whole batch's
data at once (and has ext4 allocate their blocks together) instead of file by file as each
fsync comes. It is only a hint: durability still comes from the fsyncs, which report any
error.
"""

import ctypes
import sys

#: SYNC_FILE_RANGE_WRITE from <fcntl.h>: start writing the dirty pages, do not wait
_SYNC_FILE_RANGE_WRITE = 2


def _load():
    """libc's sync_file_range, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        # the C library our interpreter is linked with (find_library would run ldconfig)
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    return call


_sync_file_range = _load()

#: whether :func:`start_writeback` does anything on this system
AVAILABLE = _sync_file_range is not None


def start_writeback(fds):
    """Start writing back the dirty pages of each file descriptor in ``fds`` (a hint: errors
    are ignored, the fsync that follows reports them)."""
    call = _sync_file_range
    if call is None:
        return
    flags = _SYNC_FILE_RANGE_WRITE
    for fd in fds:
        call(fd, 0, 0, flags)
