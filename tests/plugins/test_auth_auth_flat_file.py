"""Tests of auth/auth_flat_file: its verdict for each kind of attempt, the hooks called directly.

The AUTH exchange itself (PLAIN, LOGIN, CRAM-MD5 over a session, the one failure text, the delay
and the failure limit) is the core's and is tested in tests/test_auth.py, with this plugin as
its back end; here is what the plugin decides from ``flat_auth_pw``.
"""

import hashlib
import hmac

from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED, DENY, LOGINFO, OK
from tests.support.harness import capture_log, fake_transaction, loaded_plugin, make_server

PASSWORDS = "# users\nu@example.org:s3cr:et\nOther@Example.org:x\nnodomain:y\n"


class AuthFlatFileTests(unittest.TestCase):
    def setUp(self):
        self.server = make_server(self, ["auth/auth_flat_file"], {"flat_auth_pw": PASSWORDS})
        self.plugin = loaded_plugin(self.server, "auth::auth_flat_file")
        self.log = capture_log(self, self.server)

    def check(self, method, user, clear=None, digest=None, ticket=None):
        return self.plugin.authenticate(fake_transaction(), method, user, clear, digest, ticket)

    def test_offers_the_three_mechanisms(self):
        for hook in ("auth-plain", "auth-login", "auth-cram-md5"):
            self.assertEqual([p for p, _ in self.server.hooks.handlers(hook)], [self.plugin], hook)

    def test_right_password(self):
        # the password may hold ":"; user names compare in lower case, both ways
        self.assertEqual(self.check("plain", "u@example.org", "s3cr:et"), (OK, "auth_flat_file"))
        self.assertEqual(self.check("login", "U@EXAMPLE.ORG", "s3cr:et"), (OK, "auth_flat_file"))
        self.assertEqual(self.check("plain", "other@example.org", "x"), (OK, "auth_flat_file"))

    def test_wrong_password_is_deny(self):
        self.assertEqual(self.check("plain", "u@example.org", "s3cr"),
                         (DENY, "auth_flat_file - wrong password"))

    def test_unknown_user_and_missing_domain_are_declined(self):
        # another auth plugin may know them; the reason is logged, not told
        self.assertEqual(self.check("plain", "who@example.org", "x"), DECLINED)
        self.assertEqual(self.check("plain", "nodomain", "y"), DECLINED)
        self.assertEqual(self.log, [(LOGINFO, "fail: no such user: who@example.org"),
                                    (LOGINFO, "fail: missing domain")])

    def test_cram_md5(self):
        ticket = "<1234.5678@mx.example.org>"
        right = hmac.new(b"s3cr:et", ticket.encode(), hashlib.md5).hexdigest()
        self.assertEqual(self.check("cram-md5", "u@example.org", digest=right, ticket=ticket),
                         (OK, "auth_flat_file"))
        self.assertEqual(self.check("cram-md5", "u@example.org", digest="0" * 32, ticket=ticket),
                         (DENY, "auth_flat_file - wrong password"))

    def test_no_password_at_all_is_deny(self):
        self.assertEqual(self.check("plain", "u@example.org"), (DENY, "authflat - missing password"))
