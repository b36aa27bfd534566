"""The Plugin base class's shared conventions: reject/reject_type, naughty, karma, auth results."""

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.objects import Connection, Transaction
from qpsmtpd_tx.plugin import Plugin
from tests.support.harness import log_every_level, make_server


def plugin_and_transaction(testcase, reject=None, reject_type=None):
    plugin = Plugin()
    plugin.name = "probe"
    plugin.server = make_server(testcase, [])
    plugin.reject, plugin.reject_type = reject, reject_type
    return plugin, Transaction(connection=Connection(remote_ip="192.0.2.9"))


class RejectTests(unittest.TestCase):
    def test_reject_table(self):
        table = [
            (None, None, (codes.DENY, "no")),
            ("1", None, (codes.DENY, "no")),
            ("0", None, codes.DECLINED),
            ("1", "temp", (codes.DENYSOFT, "no")),
            ("1", "soft", (codes.DENYSOFT, "no")),
            ("1", "hard", (codes.DENY, "no")),
            ("1", "disconnect", (codes.DENY_DISCONNECT, "no")),
            ("1", "temp_disconnect", (codes.DENYSOFT_DISCONNECT, "no")),
            ("1", "bogus", (codes.DENY, "no")),
        ]
        for reject, reject_type, expected in table:
            plugin, txn = plugin_and_transaction(self, reject, reject_type)
            self.assertEqual(plugin.get_reject(txn, "no"), expected, (reject, reject_type))

    def test_temporary_makes_each_refusal_the_temporary_one_of_its_kind(self):
        table = [
            (None, None, (codes.DENYSOFT, "no")),
            ("1", "perm", (codes.DENYSOFT, "no")),
            ("1", "temp", (codes.DENYSOFT, "no")),
            ("1", "disconnect", (codes.DENYSOFT_DISCONNECT, "no")),
            ("1", "temp_disconnect", (codes.DENYSOFT_DISCONNECT, "no")),
            ("0", None, codes.DECLINED),
        ]
        for reject, reject_type, expected in table:
            plugin, txn = plugin_and_transaction(self, reject, reject_type)
            self.assertEqual(plugin.get_reject(txn, "no", temporary=True), expected,
                             (reject, reject_type))
        plugin, txn = plugin_and_transaction(self, "naughty", "disconnect")
        self.assertEqual(plugin.get_reject(txn, "later", temporary=True), codes.DECLINED)
        self.assertEqual(txn.connection.notes["naughty_reject_type"], "temp_disconnect")

    def test_naughty_defers_and_accumulates(self):
        plugin, txn = plugin_and_transaction(self, "naughty", "disconnect")
        self.assertEqual(plugin.get_reject(txn, "first"), codes.DECLINED)
        self.assertEqual(plugin.get_reject(txn, "second"), codes.DECLINED)
        self.assertEqual(txn.connection.notes["naughty"], "first\r\nsecond")
        self.assertEqual(txn.connection.notes["naughty_reject_type"], "disconnect")
        self.assertEqual(plugin.is_naughty(txn), "first\r\nsecond")

    def test_karma_and_auth_results(self):
        plugin, txn = plugin_and_transaction(self)
        plugin.adjust_karma(txn, -2)
        plugin.adjust_karma(txn, 1)
        self.assertEqual(txn.connection.notes["karma"], -1)
        plugin.store_auth_results(txn, "spf=pass")
        plugin.store_auth_results(txn, "dkim=none")
        # per message: a second message on the connection does not repeat them
        self.assertEqual(txn.notes["authentication_results"], ["spf=pass", "dkim=none"])
        self.assertNotIn("authentication_results", txn.connection.notes)


class LogLevelTests(unittest.TestCase):
    def logged(self, loglevel, level):
        plugin, txn = plugin_and_transaction(self)
        plugin.set_loglevel(loglevel)
        seen = []
        log_every_level(self, plugin.server)
        plugin.server.log = lambda lvl, message, **kw: seen.append(lvl)
        plugin.log(level, "x", txn)
        return seen

    def test_absolute_relabels_every_line(self):
        self.assertEqual(self.logged("6", codes.LOGDEBUG), [6])
        self.assertEqual(self.logged("LOGNOTICE", codes.LOGERROR), [5])

    def test_relative_plus_is_less_severe(self):
        self.assertEqual(self.logged("+2", codes.LOGWARN), [6])
        self.assertEqual(self.logged("-1", codes.LOGWARN), [3])
        self.assertEqual(self.logged("+5", codes.LOGINFO), [7])
        self.assertEqual(self.logged("-9", codes.LOGERROR), [0])
