"""The documentation check of the connection-level policy plugins hosts_allow, earlytalker (and
its alias check_earlytalker), connection_time, noop_counter, random_error, content_log,
whitelist and naughty: each documents itself with the usual sections (``qpsmtpd-tx plugins
doc``). Their behaviour is tested in tests/plugins/test_<name>.py.
"""

from twisted.trial import unittest

from qpsmtpd_tx import cli
from qpsmtpd_tx.loader import find_plugin_file
from qpsmtpd_tx.paths import default_plugin_dirs

PLUGIN_DIRS = default_plugin_dirs()


class DocumentationTests(unittest.TestCase):
    NAMES = ("hosts_allow", "earlytalker", "connection_time", "noop_counter", "random_error",
             "content_log", "whitelist", "naughty")

    def test_every_plugin_documents_itself(self):
        for name in self.NAMES:
            info = cli.PluginInfo(name, find_plugin_file(name, PLUGIN_DIRS))
            self.assertIsNone(info.error, name)
            self.assertTrue(info.summary() and not info.summary().startswith("("), name)
            for section in ("Arguments", "Notes", "Replies", "Config file"):
                self.assertIn(section, info.doc, (name, section))

    def test_alias_is_listed_as_alias(self):
        info = cli.PluginInfo("check_earlytalker", find_plugin_file("check_earlytalker", PLUGIN_DIRS))
        self.assertEqual(info.summary(), "alias of earlytalker")
