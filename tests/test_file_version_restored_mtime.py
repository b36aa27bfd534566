"""A file rewritten in place (same inode, same size) whose modification time is then put
back, as ``cp -p``, ``rsync -t`` or ``touch -r`` do when restoring a backup, is still seen as
changed: its change time (``st_ctime``, which no user can set back) differs. Before, only
inode, size and mtime were compared, and the old contents stayed in use until a restart or
SIGHUP. Three of the readers that cache a file by its version: a config map's cdb file, a
dkim signing key directory, and rcpt_map's map file. Real files in the test's directory."""

import os
import time

from qpsmtpd_tx.cdb import write_cdb
from qpsmtpd_tx.config import Config, ConfigError
from qpsmtpd_tx.dkim_sign import KeyCache
from tests.support.envelope_cases import PluginTestCase
from tests.support.harness import MemoryClient
from tests.support.mail_dkim import make_key


def rewrite_keeping_mtime(path, data):
    """Write ``data`` over the file ``path`` in place and put its times back as they were.

    Returns once the file's change time differs from the one before (on a coarse file system
    clock, the rewrite may fall in the tick of the last change: then touch it until it moves).
    """
    before = os.stat(path)
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    while os.stat(path).st_ctime_ns == before.st_ctime_ns:
        time.sleep(0.001)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)


class CdbMapTests(PluginTestCase):
    def test_a_cdb_restored_over_a_broken_one_is_opened(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "m.cdb")
        write_cdb(path, [("key", "value")])
        with open(path, "rb") as f:
            good = f.read()
        rewrite_keeping_mtime(path, b"\0" * len(good))      # damaged in place, same size
        config = Config(config_dir=directory, environ={})
        self.assertRaises(ConfigError, config.get_map, "m")
        rewrite_keeping_mtime(path, good)                   # the backup copied back with -p
        self.assertEqual(config.get_map("m")["key"], "value")


class SigningKeyTests(PluginTestCase):
    def test_a_selector_rewritten_with_its_old_mtime_is_read_again(self):
        directory = os.path.abspath(self.mktemp())
        make_key(directory, "ed25519")
        selector = os.path.join(directory, "selector")
        with open(selector, "w") as f:
            f.write("s1\n")
        keys = KeyCache()
        self.assertEqual(keys.get("example.com", directory).selector, "s1")
        rewrite_keeping_mtime(selector, b"s2\n")
        self.assertEqual(keys.get("example.com", directory).selector, "s2")


class RcptMapTests(PluginTestCase):
    def test_a_map_rewritten_with_its_old_mtime_is_read_again(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("x@example.com DENY old\n")
        server = self.recording_server(["rcpt_map domain example.com file %s" % path,
                                        "rcpt_ok"])[0]

        def answer():
            client = MemoryClient(server)
            client.command("HELO c.example")
            client.command("MAIL FROM:<a@b.example>")
            return client.command("RCPT TO:<x@example.com>")

        self.assertEqual(answer(), "550 old\r\n")
        rewrite_keeping_mtime(path, b"x@example.com DENY new\n")
        self.assertEqual(answer(), "550 new\r\n")
