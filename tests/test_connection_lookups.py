"""What a connection no longer reads again each time (issue 15, the connection's CPU).

- ``Config.get_map`` of a plain file gives the same mapping until the item is read again
  (SIGHUP, ``forget``), instead of building one per lookup (relay's ``morerelayclients`` at
  each connection, rcpt_ok's ``morercpthosts`` at each RCPT); a changed file is still seen
  after a reload, and a ``.cdb`` created later still wins.
- relay reads ``RELAYCLIENT`` from the environment when it starts, not per connection.
"""

import os

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.cdb import write_cdb
from qpsmtpd_tx.config import Config
from tests.support.harness import fake_transaction, loaded_plugin, make_server


class PlainMapTests(unittest.TestCase):
    """get_map without a cdb file."""

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.config = Config(config_dir=self.dir, qmail_dir=self.dir, environ={})

    def write(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    def test_the_same_mapping_until_read_again(self):
        self.write("morercpthosts", "a.example\n")
        first = self.config.get_map("morercpthosts")
        self.assertIs(self.config.get_map("morercpthosts"), first)
        self.write("morercpthosts", "b.example\n")
        self.assertEqual(dict(self.config.get_map("morercpthosts")), {"a.example": ""})
        self.config.clear_cache()       # SIGHUP
        self.assertEqual(dict(self.config.get_map("morercpthosts")), {"b.example": ""})
        self.write("morercpthosts", "c.example\n")
        self.config.forget("morercpthosts")
        self.assertEqual(dict(self.config.get_map("morercpthosts")), {"c.example": ""})

    def test_a_cdb_still_wins(self):
        self.write("morercpthosts", "plain.example\n")
        self.config.get_map("morercpthosts")
        write_cdb(os.path.join(self.dir, "morercpthosts.cdb"), [("cdb.example", "")])
        self.config.clear_cache()
        self.assertIn("cdb.example", self.config.get_map("morercpthosts"))


class RelayAtConnectTests(unittest.TestCase):
    """relay's connect hook with morerelayclients and RELAYCLIENT."""

    def decide(self, plugin, ip):
        txn = fake_transaction(ip)
        self.assertEqual(plugin.hook_connect(txn), codes.DECLINED)
        return txn.connection.relay_client

    def test_morerelayclients_read_again_after_a_reload(self):
        server = make_server(self, ["relay"], {"morerelayclients": "198.51.100.\n"})
        plugin = loaded_plugin(server, "relay")
        self.assertTrue(self.decide(plugin, "198.51.100.7"))
        self.assertFalse(self.decide(plugin, "203.0.113.7"))
        with open(os.path.join(server.config.config_dir, "morerelayclients"), "w") as f:
            f.write("203.0.113.\n")
        self.assertTrue(self.decide(plugin, "198.51.100.7"))     # cached until the reload
        server.config.clear_cache()
        self.assertFalse(self.decide(plugin, "198.51.100.7"))
        self.assertTrue(self.decide(plugin, "203.0.113.7"))

    def test_relayclient_is_read_when_the_plugin_starts(self):
        self.patch(os, "environ", dict(os.environ, RELAYCLIENT="1"))
        plugin = loaded_plugin(make_server(self, ["relay"]), "relay")
        self.assertTrue(self.decide(plugin, "198.51.100.7"))
        self.patch(os, "environ", {})
        self.assertTrue(self.decide(plugin, "198.51.100.7"))    # as when it started
        fresh = loaded_plugin(make_server(self, ["relay"]), "relay")
        self.assertFalse(self.decide(fresh, "198.51.100.7"))
