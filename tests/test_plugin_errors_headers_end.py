"""``plugin_errors defer`` at ``data_headers_end``: that hook knows no plain DENYSOFT (as in
qpsmtpd, only the ``_DISCONNECT`` refusals count there), so a failure there must still
refuse the message for now instead of letting it through. Real sockets, smtplib, a test
plugin that raises."""

import smtplib

from twisted.internet import threads
from twisted.trial import unittest

from qpsmtpd_tx.hooks import FAILED_TEXT
from tests.support.server import start_server


def send(port):
    """One message; ``(code, text)`` of the final dot's reply (None if the connection was
    dropped without one)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        client.docmd("MAIL FROM:<a@b.example>")
        client.docmd("RCPT TO:<c@example.com>")
        try:
            code, text = client.data(b"Subject: x\r\n\r\nbody\r\n")
        except smtplib.SMTPServerDisconnected:
            return None
        return code, text.decode()


class HeadersEndFailureTests(unittest.TestCase):
    async def test_defer_refuses_at_data_headers_end(self):
        for failing in ("scripted data_headers_end DECLINED raise",
                        "scripted data_headers_end DECLINED delay 0 raise"):
            _, port = start_server(self, [failing, "rcpt_ok", "scripted queue OK Queued"],
                                   {"plugin_errors": "defer"})
            self.assertEqual(await threads.deferToThread(send, port), (421, FAILED_TEXT),
                             failing)

    async def test_decline_lets_it_through(self):
        _, port = start_server(self, ["scripted data_headers_end DECLINED raise", "rcpt_ok",
                                      "scripted queue OK Queued"])
        self.assertEqual(await threads.deferToThread(send, port), (250, "Queued"))
