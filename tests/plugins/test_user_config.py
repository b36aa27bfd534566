"""user_config: recipient notes from per-user config directories (real files, a real server,
an in-memory client; the ``split_score`` test filter reads ``test_threshold``)."""

import os

from twisted.internet.defer import maybeDeferred
from twisted.trial import unittest

from qpsmtpd_tx.address import Address
from qpsmtpd_tx.codes import LOGERROR, LOGINFO, LOGWARN
from tests.support.harness import (MemoryClient, capture_log, codes_of, eventually, loaded_plugin,
                                   maildir_messages, make_server, startup_error)


class UserConfigTests(unittest.TestCase):
    def setUp(self):
        self.users = os.path.abspath(self.mktemp())
        self.maildir = os.path.abspath(self.mktemp())

    def write(self, address, name, text):
        user, host = address.split("@")
        directory = os.path.join(self.users, host, user)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)

    def server(self, line=None):
        server = make_server(self, [
            line or "user_config %s/%%h/%%u" % self.users, "split_score", "rcpt_ok",
            "queue/maildir %s %%u" % self.maildir],
            {"quarantine_dir": os.path.abspath(self.mktemp())})
        self.log = capture_log(self, server)
        return server

    async def notes_of(self, server, address):
        user, _, host = address.rpartition("@")
        recipient = Address(user, host)
        await maybeDeferred(loaded_plugin(server, "user_config").hook_rcpt, None, recipient, {})
        return recipient.notes

    async def test_files_become_notes(self):
        self.write("alice@example.com", "test_threshold", "# alice is strict\n\n 2 \n9\n")
        self.write("alice@example.com", "not_a_setting", "x\n")
        server = self.server()
        self.assertEqual(await self.notes_of(server, "Alice@EXAMPLE.com"), {})  # %u as given
        self.assertEqual(await self.notes_of(server, "alice@EXAMPLE.com"), {"test_threshold": "2"})
        self.assertEqual(await self.notes_of(server, "bob@example.com"), {})
        self.assertIn((LOGINFO, "<alice@EXAMPLE.com>: test_threshold=2"), self.log)

    async def test_one_message_two_thresholds(self):
        self.write("alice@example.com", "test_threshold", "2\n")
        client = MemoryClient(self.server())
        client.command("EHLO c.example")
        client.command("MAIL FROM:<s@b.example>")
        for rcpt in ("alice", "bob"):
            client.command("RCPT TO:<%s@example.com>" % rcpt)    # answered from a thread
            await eventually(lambda: client.transport.value())
            self.assertEqual(codes_of(client.take()), [250])
        client.command("DATA")
        client.protocol.dataReceived(b"Subject: x\r\nX-Test-Score: 3\r\n\r\nbody\r\n.\r\n")
        await eventually(lambda: client.transport.value())
        self.assertEqual(codes_of(client.take()), [250])
        delivered = {r: maildir_messages(os.path.join(self.maildir, r + "@example.com"))
                     for r in ("alice", "bob")}
        self.assertEqual({r: len(m) for r, m in delivered.items()}, {"alice": 0, "bob": 1})

    async def test_addresses_that_could_leave_the_directory_are_not_looked_up(self):
        server = self.server()
        for address in ("../x@example.com", ".hidden@example.com", "a/b@example.com",
                        "x@../example.com"):
            self.assertEqual(await self.notes_of(server, address), {})
        self.assertEqual(len([m for level, m in self.log if level == LOGINFO
                              and m.endswith(": no user config lookup for this address")]), 4)

    async def test_bad_value_and_unreadable_file_are_logged(self):
        self.write("alice@example.com", "test_threshold", "lots\n")
        os.makedirs(os.path.join(self.users, "example.com", "carol", "test_threshold"))
        server = self.server()
        self.assertEqual(await self.notes_of(server, "alice@example.com"),
                         {"test_threshold": "lots"})
        self.assertIn((LOGWARN, "<alice@example.com>: test_threshold=lots is not a valid value "
                       "for plugin split_score; it gets the plugin's argument or default "
                       "instead"), self.log)
        self.assertEqual(await self.notes_of(server, "carol@example.com"), {})
        [error] = [m for level, m in self.log if level == LOGERROR]
        self.assertTrue(error.startswith("cannot read %s/example.com/carol/test_threshold: "
                                         % self.users), error)

    def test_default_pattern_and_bad_arguments(self):
        self.assertEqual(loaded_plugin(self.server("user_config"), "user_config").pattern,
                         "/home/%u/.qpsmtpd")
        self.assertIn("usage: user_config [PATTERN]",
                      startup_error(self, ["user_config a b", "rcpt_ok"]))
