"""karma's refusal at DATA under ``recipient_policy split`` (the default): a client with very
bad karma sends one message to a recipient whose ``karma_reject`` is ``1`` and one whose is
``0``; the first is refused (its copy quarantined), the message goes to the second, in one
transaction. In-process on the file store, as tests/plugins/test_karma.py."""

import os

from qpsmtpd_tx.testing import maildir_messages
from tests.plugins.test_karma import KEY, KarmaTestCase
from tests.support.store_plugins import ask

NOTES = "note_rcpt strict@example.com karma_reject=1 lenient@example.com karma_reject=0"


class KarmaSplitTests(KarmaTestCase):
    async def session(self, files=None):
        """Bad karma (-6) from a client with a good history (so that its second recipient
        is taken); the replies to DATA and to the message."""
        self.quarantine = os.path.abspath(self.mktemp())
        config = {"quarantine_dir": self.quarantine}
        config.update(files or {})
        server = self.server("reject 1", before=[NOTES], files=config)
        self.maildir = [line.split()[1] for line in server.config.get("plugins")
                        if line.startswith("queue/maildir")][0]
        await self.plugin.store.check_and_set(KEY, None, "0:0:2:2", 1000)
        client = await self.connect(server)
        await ask(client, "HELO client.example")
        await ask(client, "MAIL FROM: <a@spammy.info>")  # -2 and -4
        self.assertTrue((await ask(client, "RCPT TO:<strict@example.com>")).startswith("250 "))
        self.assertTrue((await ask(client, "RCPT TO:<lenient@example.com>")).startswith("250 "))
        data = await ask(client, "DATA")
        if not data.startswith("354 "):
            return data, None
        return data, await ask(client, "Subject: hi\r\n\r\nhello\r\n.")

    async def test_refused_for_one_delivered_to_the_other(self):
        data, end = await self.session()
        self.assertTrue(data.startswith("354 "), data)
        self.assertTrue(end.startswith("250 "), end)
        [delivered] = maildir_messages(self.maildir)
        [held] = maildir_messages(self.quarantine)
        self.assertIn(b"X-Recipient-Rejected: <strict@example.com>; 552 very bad karma: -6 "
                      b"(by karma)\n", held)
        self.assertTrue(delivered.startswith(b"Return-Path: <a@spammy.info>\n"
                                             b"Delivered-To: lenient@example.com\nReceived: "),
                        delivered)

    async def test_strictest_refuses_at_data(self):
        data, _ = await self.session({"recipient_policy": "strictest"})
        self.assertEqual(data, "554 very bad karma: -6\r\n")
