"""Plugin.log_enabled answers what Plugin.log does: a line whose text is costly is built only
when it would be logged, with the plugin's ``loglevel`` argument applied."""

from twisted.trial import unittest

from qpsmtpd_tx import codes
from tests.test_plugin_base import plugin_and_transaction


class LogEnabledTests(unittest.TestCase):
    def test_agrees_with_log(self):
        for loglevel in (None, "6", "LOGNOTICE", "+2", "-1", "+5", "-9"):
            plugin, txn = plugin_and_transaction(self)
            if loglevel is not None:
                plugin.set_loglevel(loglevel)
            self.patch(plugin.server, "log_enabled", lambda level: level <= codes.LOGWARN)
            for level in range(8):
                seen = []
                self.patch(plugin.server, "log", lambda lvl, message, **kw: seen.append(lvl))
                plugin.log(level, "x", txn)
                self.assertEqual(plugin.log_enabled(level), bool(seen), (loglevel, level))

    def test_karma_line_only_when_logged(self):
        plugin, txn = plugin_and_transaction(self)
        seen = []
        self.patch(plugin.server, "log", lambda lvl, message, **kw: seen.append(message))
        self.patch(plugin.server, "log_enabled", lambda level: False)
        self.assertEqual(plugin.adjust_karma(txn, 2), 2)
        self.assertEqual((seen, txn.connection.notes["karma"]), ([], 2))
        self.patch(plugin.server, "log_enabled", lambda level: True)
        plugin.adjust_karma(txn, -1)
        self.assertEqual(seen, ["karma -1 (1)"])
