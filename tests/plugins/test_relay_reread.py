"""relay reads its client lists again only when the config was read again (SIGHUP's clear_cache, a
config hook's forget): between those, each connection reuses the parsed lists without
comparing them with the config (see Relay._list)."""

import os

from twisted.trial import unittest

from qpsmtpd_tx.testing import MemoryClient, make_server


class RelayListsRereadTests(unittest.TestCase):
    def setUp(self):
        self.server = make_server(self, ["relay", "rcpt_ok"], {"relayclients": "192.0.2."})
        self.path = os.path.join(self.server.config.config_dir, "relayclients")

    def relays(self, ip):
        return MemoryClient(self.server, remote_ip=ip).session.connection.relay_client

    def test_an_edited_list_is_used_once_the_config_is_read_again(self):
        self.assertEqual((self.relays("192.0.2.1"), self.relays("198.51.100.1")), (True, False))
        with open(self.path, "w") as f:
            f.write("198.51.100.\n")
        # not read again yet: the lists parsed before stay
        self.assertEqual((self.relays("192.0.2.1"), self.relays("198.51.100.1")), (True, False))
        self.server.config.forget("relayclients")
        self.assertEqual((self.relays("192.0.2.1"), self.relays("198.51.100.1")), (False, True))
        with open(self.path, "w") as f:
            f.write("192.0.2.\n")
        self.server.config.clear_cache()
        self.assertEqual((self.relays("192.0.2.1"), self.relays("198.51.100.1")), (True, False))

    def test_a_list_unchanged_by_a_new_reading_keeps_its_parse(self):
        self.relays("192.0.2.1")
        relay = [p for p in self.server.plugins if p.name == "relay"][0]
        lists = relay._relayclients()
        self.server.config.clear_cache()
        self.assertTrue(self.relays("192.0.2.1"))
        self.assertIs(relay._relayclients(), lists)
