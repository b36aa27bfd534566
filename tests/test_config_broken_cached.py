"""A config item whose file cannot be read (here, one that includes itself) raises the same
ConfigError at every lookup until the item is read again (SIGHUP's clear_cache, forget), as a
good file's lines stay until then: the broken file is not read again at every lookup, which
may be once per connection or per command."""

import os

from twisted.trial import unittest

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
