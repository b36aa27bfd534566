"""A config item whose file cannot be read (here, one that includes itself) raises the same
ConfigError at every lookup until the item is read again (SIGHUP's clear_cache, forget), as a
good file's lines stay until then: the broken file is not read again at every lookup, which
may be once per connection or per command. A map's cdb file that is not a valid cdb likewise,
until the file changes."""

import os

from twisted.trial import unittest

from qpsmtpd_tx.cdb import write_cdb
from qpsmtpd_tx.config import Config, ConfigError


class BrokenItemCachedTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.config = Config(config_dir=self.dir, environ={})
        self.path = os.path.join(self.dir, "a")

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    def test_the_error_stays_until_the_item_is_read_again(self):
        self.write("x\n$include a\n")
        first = self.assertRaises(ConfigError, self.config.get_lines, "a")
        self.assertEqual(str(first), "%s:2: circular $include of %s" % (self.path, self.path))
        self.write("fixed\n")
        for _ in range(3):                      # not read again: the same error
            again = self.assertRaises(ConfigError, self.config.get, "a")
            self.assertEqual(str(again), str(first))
        self.config.clear_cache()
        self.assertEqual(self.config.get("a"), ["fixed"])
        self.write("$include a\n")
        self.config.forget("a")
        self.assertRaises(ConfigError, self.config.get, "a")
        self.write("fixed again\n")
        self.config.forget("a")
        self.assertEqual(self.config.get("a"), ["fixed again"])

    def test_a_broken_cdb_file_is_opened_once_per_version(self):
        path = os.path.join(self.dir, "m.cdb")
        with open(path, "wb") as f:
            f.write(b"not a cdb")
        errors = [self.assertRaises(ConfigError, self.config.get_map, "m") for _ in range(3)]
        self.assertEqual(str(errors[0]), "%s: too short for a cdb file" % path)
        # the same error each time: the file was not opened again
        self.assertTrue(errors[1] is errors[0] and errors[2] is errors[0])
        write_cdb(path + ".new", [("key", "value")])
        os.rename(path + ".new", path)           # a new version: opened at once
        self.assertEqual(self.config.get_map("m")["key"], "value")
