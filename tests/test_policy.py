"""Per-recipient policy: the lookup order and recipient grouping ("group" and "strictest")."""

from twisted.trial import unittest

from qpsmtpd_tx.address import Address
from qpsmtpd_tx.policy import Setting, resolve
from qpsmtpd_tx.server import StartupError
from tests.support.harness import MemoryClient, codes_of, make_server

NOTES = ["note_rcpt low@example.com test_threshold=2 strict@example.com test_action=reject"
         " same@example.com test_threshold=5.0",
         "threshold_filter", "rcpt_ok", "scripted queue OK"]
MESSAGE = b"Subject: x\r\n\r\nbody\r\n.\r\n"


class LookupTests(unittest.TestCase):
    setting = Setting("x_threshold", "threshold", 5.0, float, min)

    def test_note_then_argument_then_default(self):
        rcpt = Address.parse("<a@example.com>")
        self.assertEqual(resolve(self.setting, rcpt, {}), 5.0)
        self.assertEqual(resolve(self.setting, rcpt, {"threshold": "7"}), 7.0)
        rcpt.notes["x_threshold"] = "3.5"
        self.assertEqual(resolve(self.setting, rcpt, {"threshold": "7"}), 3.5)

    def test_bad_note_falls_back(self):
        rcpt = Address.parse("<a@example.com>")
        rcpt.notes["x_threshold"] = "lots"
        self.assertEqual(resolve(self.setting, rcpt, {"threshold": "7"}), 7.0)


class GroupingTests(unittest.TestCase):
    def client(self, files=None, plugins=NOTES):
        client = MemoryClient(make_server(self, plugins, dict({"recipient_policy": "group"},
                                                              **(files or {}))))
        client.command("EHLO c.example")
        client.command("MAIL FROM:<a@b.example>")
        return client

    def test_different_settings_go_to_another_transaction(self):
        client = self.client()
        self.assertEqual(codes_of(client.command("RCPT TO:<plain@example.com>")), [250])
        self.assertEqual(client.command("RCPT TO:<low@example.com>"),
                         "452 4.5.3 Try this recipient in another transaction\r\n")
        self.assertEqual(client.command("RCPT TO:<strict@example.com>"),
                         "452 4.5.3 Try this recipient in another transaction\r\n")
        # same effective settings as plain@ (5.0 from the note equals the default): accepted
        self.assertEqual(codes_of(client.command("RCPT TO:<same@example.com>")), [250])
        client.command("DATA")
        self.assertEqual(codes_of(client.send(MESSAGE)), [250])
        self.assertEqual(client.session.connection.notes["threshold_seen"], [(5.0, "tag")])
        # the client retries the deferred recipient in a new transaction
        client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(codes_of(client.command("RCPT TO:<low@example.com>")), [250])
        client.command("DATA")
        client.send(MESSAGE)
        self.assertEqual(client.session.connection.notes["threshold_seen"][-1], (2.0, "tag"))

    def test_strictest_accepts_all_and_merges(self):
        client = self.client({"recipient_policy": "strictest"})
        for rcpt in ("plain", "low", "strict"):
            self.assertEqual(codes_of(client.command("RCPT TO:<%s@example.com>" % rcpt)), [250])
        client.command("DATA")
        client.send(MESSAGE)
        self.assertEqual(client.session.connection.notes["threshold_seen"], [(2.0, "reject")])

    def test_argument_applies_to_everyone(self):
        plugins = list(NOTES)
        plugins[1] = "threshold_filter threshold 9"
        client = self.client(plugins=plugins)
        client.command("RCPT TO:<plain@example.com>")
        client.command("DATA")
        client.send(MESSAGE)
        self.assertEqual(client.session.connection.notes["threshold_seen"], [(9.0, "tag")])

    def test_without_filters_nothing_is_grouped(self):
        client = self.client(plugins=[NOTES[0], "rcpt_ok"])
        self.assertEqual(codes_of(client.command("RCPT TO:<plain@example.com>")), [250])
        self.assertEqual(codes_of(client.command("RCPT TO:<low@example.com>")), [250])

    def test_bad_policy_name(self):
        with self.assertRaises(StartupError) as caught:
            make_server(self, ["rcpt_ok"], {"recipient_policy": "loosest"})
        self.assertIn("recipient_policy:1: recipient_policy must be one of split, group, strictest",
                      str(caught.exception))


class RcptPhaseTests(unittest.TestCase):
    """A setting read at RCPT time (``phase="rcpt"``) does not group recipients."""

    PLUGINS = ["note_rcpt low@example.com test_size_limit=100 big@example.com test_size_limit=5000"
               " picky@example.com test_threshold=2",
               "rcpt_size_limit", "rcpt_ok", "scripted queue OK"]

    def client(self, plugins):
        client = MemoryClient(make_server(self, plugins, {"recipient_policy": "group"}))
        client.command("EHLO c.example")
        client.command("MAIL FROM:<a@b.example> SIZE=1000")
        return client

    def test_rcpt_time_setting_does_not_split_the_transaction(self):
        client = self.client(self.PLUGINS)
        self.assertEqual(codes_of(client.command("RCPT TO:<plain@example.com>")), [250])
        # its limit differs from plain@'s, but it was only read for the RCPT: same transaction
        self.assertEqual(codes_of(client.command("RCPT TO:<big@example.com>")), [250])
        self.assertEqual(client.command("RCPT TO:<low@example.com>"),
                         "550 message too big for <low@example.com>\r\n")
        client.command("DATA")
        self.assertEqual(codes_of(client.send(MESSAGE)), [250])

    def test_data_time_settings_still_group(self):
        client = self.client(self.PLUGINS[:2] + ["threshold_filter"] + self.PLUGINS[2:])
        self.assertEqual(codes_of(client.command("RCPT TO:<plain@example.com>")), [250])
        self.assertEqual(codes_of(client.command("RCPT TO:<big@example.com>")), [250])
        self.assertEqual(client.command("RCPT TO:<picky@example.com>"),
                         "452 4.5.3 Try this recipient in another transaction\r\n")

    def test_phase_is_checked(self):
        self.assertTrue(Setting("x", phase="queue").groups)
        self.assertTrue(Setting("x").groups)
        self.assertFalse(Setting("x", phase="rcpt").groups)
        with self.assertRaises(ValueError):
            Setting("x", phase="helo")
