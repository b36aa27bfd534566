"""SMTP AUTH: PLAIN, LOGIN, CRAM-MD5 through auth/auth_flat_file, and the protocol rules."""

import base64
import hashlib
import hmac
import os
import smtplib

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.auth import validate_password
from qpsmtpd_tx.server import StartupError
from qpsmtpd_tx.session import _mask_auth
from tests.support.harness import MemoryClient, codes_of, make_server, write_config
from tests.support.processes import start_twistd

PLUGINS = ["auth/auth_flat_file", "rcpt_ok"]
FILES = {"flat_auth_pw": "u@example.org:s3cr:et\nother@example.org:x"}
NO_DELAY = dict(FILES, auth_failure_delay="0")
CREDENTIALS_INVALID = "535 5.7.8 Authentication credentials invalid\r\n"


def b64(text):
    return base64.b64encode(text.encode()).decode()


class AuthTests(unittest.TestCase):
    def client(self, plugins=PLUGINS):
        client = MemoryClient(make_server(self, plugins, NO_DELAY))
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
        self.assertEqual(client.command(b64("nope")), CREDENTIALS_INVALID)
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




def plain(user, password):
    return "AUTH PLAIN " + b64("\0%s\0%s" % (user, password))


class AuthHardeningTests(unittest.TestCase):
    """Failures that tell nothing, cost time and end the connection; no client bytes echoed."""

    def client(self, files=NO_DELAY, plugins=PLUGINS):
        client = MemoryClient(make_server(self, plugins, files))
        client.command("EHLO c.example")
        return client

    def test_unknown_user_and_wrong_password_look_the_same(self):
        client = self.client()
        replies = [client.command(plain("who@example.org", "x")),       # no such user
                   client.command(plain("u@example.org", "wrong"))]     # wrong password
        self.assertEqual(replies, [CREDENTIALS_INVALID] * 2)
        client = self.client()
        client.command("AUTH LOGIN")
        client.command(b64("nodomain"))                                   # declined: no domain
        self.assertEqual(client.command(b64("x")), CREDENTIALS_INVALID)

    def test_generic_auth_hook_deny_text_is_not_shown(self):
        client = self.client(plugins=["scripted auth DENY no such user here", "rcpt_ok"])
        self.assertEqual(client.command(plain("u@example.org", "x")), CREDENTIALS_INVALID)

    def test_a_back_end_that_cannot_answer_is_454_and_does_not_count(self):
        # DENYSOFT (a back end down; also what a timed-out hook gives): RFC 4954's 454
        client = self.client(dict(NO_DELAY, auth_max_failures="1"),
                             plugins=["scripted auth DENYSOFT directory down", "rcpt_ok"])
        for _ in range(3):
            self.assertEqual(client.command(plain("u@example.org", "x")),
                             "454 4.7.0 Temporary authentication failure\r\n")
        self.assertFalse(client.closed)

    def test_failure_limit_closes_with_421(self):
        client = self.client()
        for _ in range(2):
            self.assertEqual(client.command(plain("u@example.org", "wrong")), CREDENTIALS_INVALID)
        self.assertFalse(client.closed)
        self.assertEqual(client.command(plain("u@example.org", "wrong")),
                         "421 4.7.0 mx.example.org Too many failed authentication attempts, "
                         "closing connection\r\n")
        self.assertTrue(client.closed)

    def test_malformed_answers_count_and_limit_is_configurable(self):
        client = self.client(dict(NO_DELAY, auth_max_failures="2"))
        client.command("AUTH PLAIN")
        self.assertEqual(codes_of(client.command("!!not base64!!")), [501])
        self.assertEqual(codes_of(client.command("AUTH CRAM-MD5")), [334])
        self.assertEqual(codes_of(client.command(b64("no-digest"))), [421])
        self.assertTrue(client.closed)

    def test_cancel_does_not_count(self):
        client = self.client(dict(NO_DELAY, auth_max_failures="1"))
        for _ in range(3):
            client.command("AUTH LOGIN")
            self.assertEqual(client.command("*"), "501 Authentication cancelled\r\n")
        self.assertEqual(codes_of(client.command(plain("u@example.org", "s3cr:et"))), [235])

    def test_no_limit_with_zero(self):
        client = self.client(dict(NO_DELAY, auth_max_failures="0"))
        for _ in range(10):
            self.assertEqual(client.command(plain("u@example.org", "wrong")), CREDENTIALS_INVALID)
        self.assertEqual(codes_of(client.command(plain("u@example.org", "s3cr:et"))), [235])

    def test_failure_is_answered_after_the_delay(self):
        client = self.client(files=FILES)       # default delay: 1 s
        client.session.server.auth.clock = client.clock
        # The failure and a pipelined NOOP: nothing until the delay has passed.
        self.assertEqual(client.send(plain("u@example.org", "wrong") + "\r\nNOOP\r\n"), "")
        client.clock.advance(0.9)
        self.assertEqual(client.take(), "")
        client.clock.advance(0.1)
        self.assertEqual(client.take(), CREDENTIALS_INVALID + "250 OK\r\n")
        # A success is not delayed.
        self.assertEqual(codes_of(client.command(plain("u@example.org", "s3cr:et"))), [235])

    def test_configured_delay(self):
        client = self.client(dict(FILES, auth_failure_delay="3"))
        client.session.server.auth.clock = client.clock
        self.assertEqual(client.command(plain("u@example.org", "wrong")), "")
        client.clock.advance(2.5)
        self.assertEqual(client.take(), "")
        client.clock.advance(0.5)
        self.assertEqual(client.take(), CREDENTIALS_INVALID)

    def test_auth_during_a_transaction_is_503(self):
        client = self.client()
        client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(client.command(plain("u@example.org", "s3cr:et")),
                         "503 5.5.1 MAIL transaction in progress\r\n")
        client.command("RCPT TO:<u@example.com>")
        self.assertEqual(codes_of(client.command("AUTH LOGIN")), [503])
        client.command("RSET")
        self.assertEqual(codes_of(client.command(plain("u@example.org", "s3cr:et"))), [235])

    def test_over_long_answer_ends_the_exchange(self):
        client = self.client()
        self.assertEqual(client.command("AUTH PLAIN"), "334  \r\n")
        # 13,000 bytes in pieces, then NOOP: the NOOP is a command again, not the answer.
        reply = client.send("A" * 6000) + client.send("A" * 7000 + "\r\nNOOP\r\n")
        self.assertEqual(reply, "500 5.5.6 Authentication Exchange line is too long\r\n250 OK\r\n")
        self.assertFalse(client.session.core.expect_auth_line)
        self.assertEqual(client.session.connection.notes["auth_failures"], 1)

    def test_unknown_mechanism_is_not_echoed_raw(self):
        client = self.client()
        self.assertEqual(client.send(b"AUTH FOO\x1bbar\x00\r\n"),
                         "504 Unimplemented authentification mechanism: foo\\x1bbar\\x00\r\n")
        reply = client.command("AUTH " + "X" * 12000)
        self.assertEqual(reply, "504 Unimplemented authentification mechanism: %s...\r\n" % ("x" * 20))

    def test_user_name_with_control_characters_is_refused(self):
        log_path = os.path.abspath(self.mktemp())
        client = self.client(dict(NO_DELAY, logging="logging/file loglevel LOGDEBUG %s" % log_path),
                             plugins=["scripted auth OK", "rcpt_ok"])
        self.assertEqual(client.command(plain("u\r\nX-Injected: yes\x1b", "x")), CREDENTIALS_INVALID)
        self.assertIsNone(client.session.connection.auth_user)
        self.assertNotIn("scripted_calls", client.session.connection.notes)   # no plugin asked
        with open(log_path, "rb") as f:
            log = f.read()
        self.assertIn(b"u\\x0d\\x0aX-Injected: yes\\x1b", log)
        self.assertNotIn(b"\x1b", log)

    def test_long_user_name_is_not_echoed(self):
        client = self.client(plugins=["scripted auth OK", "rcpt_ok"])
        user = "u" * 5000 + "@example.org"
        self.assertEqual(client.command(plain(user, "x")),
                         "235 PLAIN authentication successful for %s...\r\n" % ("u" * 100))
        self.assertEqual(client.session.connection.auth_user, user)

    def test_plain_authzid_is_not_echoed_raw(self):
        client = self.client()
        self.assertEqual(client.send(("AUTH PLAIN " + b64("\x1b[2J\0\0pw") + "\r\n").encode()),
                         "535 Authentication invalid (\\x1b[2J)\r\n")

    def test_bad_config_stops_start_up(self):
        for name in ("auth_max_failures", "auth_failure_delay"):
            with self.assertRaises(StartupError) as caught:
                make_server(self, PLUGINS, dict(FILES, **{name: "-1"}))
            self.assertIn("/%s:1: " % name, str(caught.exception))

    def test_client_leaving_during_the_delay(self):
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure
        client = self.client(files=FILES, plugins=PLUGINS + ["scripted post-connection DECLINED"])
        client.session.server.auth.clock = client.clock
        client.send(plain("u@example.org", "wrong") + "\r\n")
        client.protocol.connectionLost(Failure(ConnectionDone()))
        notes = client.session.connection.notes
        self.assertNotIn("scripted_calls", notes)       # the session waits for the delay
        client.clock.advance(1)
        self.assertEqual([hook for hook, _ in notes["scripted_calls"]], ["post-connection"])
        self.assertEqual(client.take(), "")


class AuthEndToEndTests(unittest.TestCase):
    """A real twistd process with the default limits (3 failures, 1 s delay) and smtplib."""

    def test_guessing_ends_with_421(self):
        config = write_config(os.path.abspath(self.mktemp()), PLUGINS, FILES)
        _, port, _ = start_twistd(self, config)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("c.example")
            unknown = client.docmd("AUTH", "PLAIN " + b64("\0who@example.org\0x"))
            wrong = client.docmd("AUTH", "PLAIN " + b64("\0u@example.org\0x"))
            self.assertEqual(unknown, wrong)
            self.assertEqual(wrong, (535, b"5.7.8 Authentication credentials invalid"))
            self.assertEqual(client.docmd("AUTH", "PLAIN " + b64("\0u@example.org\0y")),
                             (421, b"4.7.0 mx.example.org Too many failed authentication attempts, "
                                   b"closing connection"))
            with self.assertRaises(smtplib.SMTPServerDisconnected):
                client.noop()
