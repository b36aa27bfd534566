"""Creating directories with one mode for every level created."""

import os


def make_dirs(path, mode):
    """Create ``path`` and any missing parents, each with exactly ``mode``.

    Unlike :func:`os.makedirs`, which gives ``mode`` to the last directory only (parents get
    0777 less the umask), every directory created here gets ``mode``, whatever the umask.
    Directories that exist already are left as they are. Returns the directories that did
    not exist at the start (made here, or meanwhile by another thread or process).
    """
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if os.path.isdir(directory):
                continue  # made meanwhile by another thread or process: theirs to set
            raise
        os.chmod(directory, mode)
    return missing[::-1]
