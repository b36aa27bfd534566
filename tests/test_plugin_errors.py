"""``plugin_errors``: what a plugin that fails (raises, or its Deferred fails) in a hook that
decides on a message means. ``decline`` (the default, qpsmtpd's rule): the next plugin
decides, so a content filter that crashes lets the message through; ``defer``: a temporary
refusal (qpsmtpd's codes for DENYSOFT: 450 at MAIL and RCPT, 452 after the data), so nothing
is accepted unchecked. Real sockets, smtplib, a test plugin that raises."""

import smtplib

from twisted.internet import threads
from twisted.trial import unittest

from qpsmtpd_tx.hooks import FAILED_TEXT
from tests.support.server import start_server


def send(port, recipient="c@example.com"):
    """One message; ``(code, text)`` of the first refusal, or of the final dot's reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        for command in ("MAIL FROM:<a@b.example>", "RCPT TO:<%s>" % recipient):
            code, text = client.docmd(command)
            if code >= 400:
                return code, text.decode()
        code, text = client.data(b"Subject: x\r\n\r\nbody\r\n")
        return code, text.decode()


class PluginErrorTests(unittest.TestCase):
    def serve(self, failing, errors=None):
        files = {"plugin_errors": errors} if errors else {}
        _, port = start_server(self, [failing, "rcpt_ok", "scripted queue OK Queued"], files)
        return port

    async def test_decline_lets_the_next_plugin_decide(self):
        port = self.serve("scripted data_post DECLINED raise")
        self.assertEqual(await threads.deferToThread(send, port), (250, "Queued"))

    async def test_defer_refuses_for_now(self):
        for failing in ("scripted data_post DECLINED raise",
                        "scripted data_post DECLINED delay 0 raise"):   # a failed Deferred
            port = self.serve(failing, "defer")
            self.assertEqual(await threads.deferToThread(send, port), (452, FAILED_TEXT),
                             failing)

    async def test_defer_at_rcpt(self):
        port = self.serve("scripted rcpt DECLINED raise", "defer")
        code, text = await threads.deferToThread(send, port)
        self.assertEqual((code, text), (450, FAILED_TEXT))

    async def test_defer_leaves_other_hooks_to_the_rule(self):
        """A failure at HELO decides on no message: the session goes on."""
        port = self.serve("scripted helo DECLINED raise", "defer")
        self.assertEqual(await threads.deferToThread(send, port), (250, "Queued"))
