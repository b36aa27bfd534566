"""A CRAM-MD5 answer whose digest is not ASCII (``user é9…``): ``validate_password`` compared
it with ``hmac.compare_digest`` on str, which raises TypeError for non-ASCII text, so the
auth plugin crashed (a FATAL PLUGIN ERROR with a traceback in the log) instead of saying
"wrong password". Through auth/auth_flat_file, in memory."""

import base64

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.auth import validate_password
from qpsmtpd_tx.testing import capture_log
from tests.support.harness import MemoryClient, make_server
from tests.test_auth import CREDENTIALS_INVALID, NO_DELAY, PLUGINS, b64


class NonAsciiDigestTests(unittest.TestCase):
    def test_is_a_wrong_password(self):
        self.assertEqual(validate_password("p", "cram-md5", digest="\xe9" * 32, ticket="<t@x>",
                                           src_clear="secret"), (codes.DENY, "p - wrong password"))
        self.assertEqual(validate_password("p", "plain", clear="\xe9", src_clear="\xe9x"),
                         (codes.DENY, "p - wrong password"))

    def test_session_answers_535_and_logs_no_crash(self):
        server = make_server(self, PLUGINS, NO_DELAY)
        client = MemoryClient(server)
        client.command("EHLO c.example")
        lines = capture_log(self, server)
        challenge = client.command("AUTH CRAM-MD5")
        self.assertTrue(challenge.startswith("334 "), challenge)
        base64.b64decode(challenge[4:])
        self.assertEqual(client.command(b64("u@example.org " + "\xe9" * 32)), CREDENTIALS_INVALID)
        self.assertEqual([text for level, text in lines if level <= codes.LOGERROR], [])
