"""``qpsmtpd-tx notes ADDRESS``: what each notes source sets and what each filter uses, in
process (a real server on a temporary config) and as the real command."""

import os

from twisted.trial import unittest

from qpsmtpd_tx import notes_report
from tests.support.harness import make_server, write_config
from tests.test_cli import run_cli

ALIASES = ("@example.com  spamassassin_reject_threshold=6 virus_action=tag\n"
           "alice@example.com  spamassassin_munge_subject_threshold=4"
           " spamassassin_reject_threshold=lots\n")


class NotesReportTests(unittest.TestCase):
    def setUp(self):
        self.top = os.path.abspath(self.mktemp())
        users = os.path.join(self.top, "users", "example.com", "alice")
        os.makedirs(users)
        with open(os.path.join(users, "spamassassin_munge_subject_threshold"), "w") as f:
            f.write("2\n")
        self.plugins = ["aliases aliases", "user_config %s/users/%%h/%%u" % self.top, "rcpt_ok",
                        "spamassassin reject 9", "virus/clamdscan", "rspamd settings_id base"]
        self.files = {"aliases": ALIASES}

    async def test_sources_and_values(self):
        server = make_server(self, self.plugins, self.files)
        address = notes_report.parse_address("alice@example.com")
        per_source, combined = await notes_report.gather(server, address)
        self.assertEqual(per_source, [
            ("aliases", {"spamassassin_reject_threshold": "lots", "virus_action": "tag",
                         "spamassassin_munge_subject_threshold": "4"}, None),
            ("user_config", {"spamassassin_munge_subject_threshold": "2"}, None)])
        self.assertEqual(notes_report.values(server, combined, per_source), [
            ("spamassassin", "spamassassin_reject_threshold", 9.0,
             "argument reject (note from aliases 'lots' cannot be used)"),
            ("spamassassin", "spamassassin_munge_subject_threshold", 2.0,
             "note from user_config"),
            ("virus/clamdscan", "virus_action", "tag", "note from aliases"),
            ("rspamd", "rspamd_settings_id", "base", "argument settings_id")])

    def test_the_command(self):
        config = write_config(os.path.join(self.top, "config"), self.plugins, self.files)
        result = run_cli(["notes", "<bob@example.com>", "--config", config])
        self.assertEqual(result.returncode, 0, result.stderr)
        out = result.stdout.decode()
        self.assertIn("  aliases: spamassassin_reject_threshold=6 virus_action=tag\n", out)
        self.assertIn("  user_config: -\n", out)
        self.assertIn(" = 6.0  (note from aliases)\n", out)
        self.assertIn("rspamd rspamd_settings_id", out)

    def test_bad_address_and_bad_config(self):
        config = write_config(os.path.join(self.top, "config"), self.plugins + ["nosuch"],
                              self.files)
        result = run_cli(["notes", "not an address", "--config", config])
        self.assertEqual((result.returncode, result.stderr.decode()),
                         (1, "qpsmtpd-tx: 'not an address' is not an address\n"))
        result = run_cli(["notes", "bob@example.com", "--config", config])
        self.assertEqual(result.returncode, 1)
        self.assertIn("plugin nosuch: plugin not found", result.stderr.decode())
