"""Everything is in setup.cfg, except data_files: plugins/ and etc/ are nested trees of data
files (the plugins are .py files loaded by path, not a package), installed into
<prefix>/share/qpsmtpd-tx/ (see qpsmtpd_tx/paths.py)."""

import os

from setuptools import setup


def tree(source, target):
    """data_files entries installing every file under ``source`` into ``target``, keeping subdirs."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        files = [os.path.join(dirpath, f) for f in sorted(filenames)
                 if not f.startswith(".") and not f.endswith((".pyc", ".pyo", "~"))]
        if files:
            entries.append((os.path.normpath(os.path.join(target, os.path.relpath(dirpath, source))),
                            files))
    return entries


setup(data_files=tree("plugins", "share/qpsmtpd-tx/plugins") + tree("etc", "share/qpsmtpd-tx/etc"))
