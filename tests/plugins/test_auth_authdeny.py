"""auth/authdeny: every attempt fails, over a real socket with smtplib, for each mechanism."""

from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED, LOGWARN
from tests.support.auth_client import NO_DELAY, auth
from tests.support.harness import capture_log, fake_transaction, loaded_plugin
from tests.support.server import start_server

FAILED = (535, "5.7.8 Authentication credentials invalid")


class AuthDenyTests(unittest.TestCase):
    async def test_every_mechanism_fails(self):
        server, port = start_server(self, ["auth/authdeny", "rcpt_ok"], NO_DELAY)
        log = capture_log(self, server)
        advertised = []
        self.assertEqual(await auth(port, "alice", "pw", "PLAIN", advertised), FAILED)
        self.assertEqual(sorted(advertised), ["CRAM-MD5", "LOGIN", "PLAIN"])
        self.assertEqual(await auth(port, "alice", "pw", "LOGIN"), FAILED)
        self.assertEqual(await auth(port, "alice", "pw", "CRAM-MD5"), FAILED)
        self.assertIn((LOGWARN, "fail: cannot authenticate"), log)

    def test_declines_with_qpsmtpd_text(self):
        server = start_server(self, ["auth/authdeny"])[0]
        plugin = loaded_plugin(server, "auth::authdeny")
        self.assertEqual(plugin.hook_auth(fake_transaction(), "plain", "bob", "x", None, None),
                         (DECLINED, "bob is not free to abuse my relay"))
