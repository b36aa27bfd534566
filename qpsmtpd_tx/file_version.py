"""What tells that a file changed, for the readers that keep a file's contents (or what was
made of them) until the file changes: config maps' cdb files, map files, aliases, signing
keys, GeoIP databases.

A version is the file's device, inode, size, modification time and change time. The change
time is there because the others can all stay the same while the contents change: a file
rewritten in place with the same size whose modification time is put back (``cp -p``,
``rsync -t``, ``touch -r``, ``os.utime``) keeps its inode, size and mtime, but any write or
``utime`` sets its ctime to the present, which no user can set back. A rewrite of the same
size within the same tick of the file system's clock as the version last seen is still
taken for that version: nothing in ``stat`` tells them apart.
"""

import os


def file_version(stat_result):
    """The version of the file ``stat_result`` (from ``os.stat``/``os.fstat``) describes: a
    tuple, equal for two results only if the file did not change between them (as far as
    ``stat`` can tell)."""
    return (stat_result.st_dev, stat_result.st_ino, stat_result.st_size,
            stat_result.st_mtime_ns, stat_result.st_ctime_ns)


def version_of(path):
    """The :func:`file_version` of the file at ``path``, or None if it cannot be stat'ed."""
    try:
        return file_version(os.stat(path))
    except OSError:
        return None
