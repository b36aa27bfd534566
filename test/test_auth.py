"""SMTP AUTH: PLAIN, LOGIN, CRAM-MD5 through auth/auth_flat_file, and the protocol rules."""

import base64
import hashlib
import hmac

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.auth import validate_password
from qpsmtpd_tx.session import _mask_auth
from test.support.harness import MemoryClient, codes_of, make_server

PLUGINS = ["auth/auth_flat_file", "rcpt_ok"]
FILES = {"flat_auth_pw": "u@example.org:s3cr:et\nother@example.org:x"}


def b64(text):
    return base64.b64encode(text.encode()).decode()


class AuthTests(unittest.TestCase):
    def client(self, plugins=PLUGINS):
        client = MemoryClient(make_server(self, plugins, FILES))
        self.ehlo = client.command("EHLO c.example")
        return client

    def test_advertised(self):
        self.client()
        self.assertIn("250 AUTH PLAIN LOGIN CRAM-MD5\r\n", self.ehlo)

    def test_not_advertised_without_plugin(self):
        client = self.client(["rcpt_ok"])
        self.assertNotIn("AUTH", self.ehlo)
        self.assertEqual(client.command("AUTH PLAIN " + b64("\0u@example.org\0s3cr:et")),
                         "500 Unrecognized command\r\n")

    def test_not_after_helo(self):
        client = MemoryClient(make_server(self, PLUGINS, FILES))
        client.command("HELO c.example")
        self.assertEqual(codes_of(client.command("AUTH PLAIN " + b64("\0u@example.org\0s3cr:et"))),
                         [500])

    def test_plain_initial_response(self):
        client = self.client()
        self.assertEqual(client.command("AUTH PLAIN " + b64("\0u@example.org\0s3cr:et")),
                         "235 PLAIN authentication successful for u@example.org - auth_flat_file\r\n")
        conn = client.session.connection
        self.assertTrue(conn.relay_client)
        self.assertEqual((conn.auth_user, conn.auth_mechanism), ("u@example.org", "PLAIN"))
        self.assertEqual(client.command("AUTH PLAIN " + b64("\0u@example.org\0s3cr:et")),
                         "503 but you already said AUTH ...\r\n")

    def test_plain_prompted_and_relay(self):
        client = self.client()
        self.assertEqual(codes_of(client.command("AUTH PLAIN")), [334])
        self.assertEqual(codes_of(client.command(b64("\0u@example.org\0s3cr:et"))), [235])
        client.command("MAIL FROM:<u@example.org>")
        self.assertEqual(client.command("RCPT TO:<x@elsewhere.example>"),
                         "250 <x@elsewhere.example>, recipient ok\r\n")

    def test_login_wrong_password(self):
        client = self.client()
        self.assertEqual(client.command("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n")
        self.assertEqual(client.command(b64("u@example.org")), "334 UGFzc3dvcmQ6\r\n")
        self.assertEqual(client.command(b64("nope")),
                         "535 LOGIN authentication failed for u@example.org - "
                         "auth_flat_file - wrong password\r\n")
        self.assertFalse(client.session.connection.relay_client)

    def test_cram_md5(self):
        client = self.client()
        challenge = client.command("AUTH CRAM-MD5")[4:].strip()
        ticket = base64.b64decode(challenge).decode()
        self.assertTrue(ticket.startswith("<") and ticket.endswith("@mx.example.org>"))
        digest = hmac.new(b"s3cr:et", ticket.encode(), hashlib.md5).hexdigest()
        self.assertEqual(codes_of(client.command(b64("u@example.org " + digest))), [235])

    def test_cancel_and_unknown_mechanism(self):
        client = self.client()
        client.command("AUTH LOGIN")
        self.assertEqual(client.command("*"), "501 Authentication cancelled\r\n")
        self.assertEqual(client.command("AUTH FOO"),
                         "504 Unimplemented authentification mechanism: foo\r\n")
        self.assertEqual(client.command("NOOP"), "250 OK\r\n")

    def test_unknown_user_fails(self):
        client = self.client()
        self.assertEqual(codes_of(client.command("AUTH PLAIN " + b64("\0who@example.org\0x"))), [535])

    def test_received_says_esmtpa(self):
        client = self.client(PLUGINS + ["scripted queue OK"])
        client.command("AUTH PLAIN " + b64("\0u@example.org\0s3cr:et"))
        client.send("MAIL FROM:<u@example.org>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
        self.assertEqual(client.send("Subject: a\r\n\r\nb\r\n.\r\n"), "250 Queued\r\n")
        message = client.session.connection.notes["scripted_message"].decode()
        self.assertIn(" with ESMTPA; ", message)
        self.assertIn("Authentication-Results: mx.example.org; auth=pass (plain) smtp.auth=u@example.org",
                      message)

    def test_credentials_not_logged(self):
        line = "AUTH PLAIN " + b64("\0u@example.org\0s3cr:et")
        self.assertEqual(_mask_auth(line), "AUTH PLAIN <hidden>")


class ValidatePasswordTests(unittest.TestCase):
    def test_table(self):
        self.assertEqual(validate_password("p", "plain", clear="a", src_clear="a"), (codes.OK, "p"))
        self.assertEqual(validate_password("p", "plain", clear="b", src_clear="a"),
                         (codes.DENY, "p - wrong password"))
        self.assertEqual(validate_password("p", "cram-md5", digest="x", ticket="t", src_crypt="zz"),
                         (codes.DECLINED, "p"))
        self.assertEqual(validate_password("p", "plain", clear="a"), (codes.DENY, "p - no such user"))
