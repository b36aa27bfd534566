"""queue/maildir: the directories it creates, at start-up and at delivery (a server built in
memory, no socket, and the plugin's write_maildir called directly)."""

import io
import os
import stat

from twisted.trial import unittest

from qpsmtpd_tx.loader import load_plugin_module
from qpsmtpd_tx.paths import default_plugin_dirs
from tests.support.harness import make_server


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class DirectoryModeTests(unittest.TestCase):
    """Every directory the plugin creates gets MODE (default 0700), not only the leaves."""

    def setUp(self):
        self.top = os.path.abspath(self.mktemp())
        # a umask that would show through: created directories must still get exactly MODE
        previous = os.umask(0o022)
        self.addCleanup(os.umask, previous)

    def test_default_mode_for_maildir_and_missing_parents(self):
        maildir = os.path.join(self.top, "spool", "maildir")
        make_server(self, ["rcpt_ok", "queue/maildir %s" % maildir])
        for path in (self.top, os.path.dirname(maildir), maildir,
                     os.path.join(maildir, "new"), os.path.join(maildir, "tmp"),
                     os.path.join(maildir, "cur")):
            self.assertEqual(mode_of(path), 0o700, path)

    def test_given_mode_for_every_level_of_a_pattern(self):
        module = load_plugin_module(os.path.join(default_plugin_dirs()[0], "queue", "maildir.py"))
        os.makedirs(self.top, mode=0o711)
        target = os.path.join(self.top, "example.com", "alice")
        module.write_maildir(target, 0o750, [b"Subject: x\n\n"], io.BytesIO(b"body\n"))
        self.assertEqual(mode_of(self.top), 0o711)       # existed already: left alone
        for path in (os.path.dirname(target), target, os.path.join(target, "new")):
            self.assertEqual(mode_of(path), 0o750, path)
        [name] = os.listdir(os.path.join(target, "new"))
        self.assertEqual(mode_of(os.path.join(target, "new", name)), 0o640)
