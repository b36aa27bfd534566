"""auth/auth_checkpassword end to end: smtplib AUTH to our server, which runs a checkpassword
program as a child process.

The program is ``tests/support/checkpassword``, a small one written for the tests that
implements the real interface (the request on descriptor 3, exit 0 after running the
``true`` program, 1 for a wrong password, 111 for a temporary problem).
"""

import os
import shutil
import smtplib

from twisted.trial import unittest

from tests.support.auth_client import NO_DELAY, auth
from tests.support.harness import assertStartupError, capture_log, write_config
from tests.support.processes import start_twistd
from tests.support.server import start_server

CHECKPW = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support",
                       "checkpassword")
TRUE = shutil.which("true")
FALSE = shutil.which("false")
FAILED = (535, "5.7.8 Authentication credentials invalid")
TEMPORARY = (454, "4.7.0 Temporary authentication failure")


class CheckpasswordTests(unittest.TestCase):
    def serve(self, line="auth/auth_checkpassword checkpw %s true %s" % (CHECKPW, TRUE),
              files=None):
        self.requests = os.path.abspath(self.mktemp())
        os.environ["CHECKPASSWORD_LOG"] = self.requests
        self.addCleanup(os.environ.pop, "CHECKPASSWORD_LOG", None)
        server, port = start_server(self, [line], dict(NO_DELAY, **(files or {})))
        return server, port

    def logged_requests(self):
        with open(self.requests) as f:
            return f.read().splitlines()

    async def test_right_password(self):
        server, port = self.serve()
        log = capture_log(self, server)
        advertised = []
        self.assertEqual(await auth(port, "alice@example.com", "s3cret pass", "PLAIN",
                                    advertised),
                         (235, "PLAIN authentication successful for alice@example.com - "
                               "auth_checkpassword"))
        self.assertEqual(sorted(advertised), ["LOGIN", "PLAIN"])
        self.assertEqual((await auth(port, "bob", "bobpw", "LOGIN"))[0], 235)
        self.assertEqual(self.logged_requests(), ["alice@example.com Y123456", "bob Y123456"])
        self.assertFalse([m for _, m in log if "s3cret" in m], log)

    async def test_wrong_password_and_unknown_user(self):
        _, port = self.serve()
        self.assertEqual(await auth(port, "alice@example.com", "s3cret"), FAILED)
        self.assertEqual(await auth(port, "carol@example.com", "x", "LOGIN"), FAILED)

    async def test_the_true_program_decides_after_a_right_password(self):
        _, port = self.serve("auth/auth_checkpassword checkpw %s true %s" % (CHECKPW, FALSE))
        self.assertEqual(await auth(port, "alice@example.com", "s3cret pass"), FAILED)

    async def test_temporary_problem_and_crash_are_454(self):
        server, port = self.serve()
        log = capture_log(self, server)
        self.assertEqual(await auth(port, "temporary@example.com", "x"), TEMPORARY)
        self.assertIn("exited 111 (temporary problem) (it said: checkpassword: database "
                      "unavailable)", " ".join(m for _, m in log))
        self.assertEqual(await auth(port, "crash@example.com", "x"), TEMPORARY)
        self.assertIn("killed by signal 9", " ".join(m for _, m in log))

    async def test_hanging_program_is_killed(self):
        server, port = self.serve("auth/auth_checkpassword checkpw %s true %s timeout 0.5"
                                  % (CHECKPW, TRUE))
        log = capture_log(self, server)
        self.assertEqual(await auth(port, "hang@example.com", "x"), TEMPORARY)
        self.assertIn("checkpassword killed after 0.5 s", " ".join(m for _, m in log))

    async def test_paths_from_the_config_file(self):
        _, port = self.serve("auth/auth_checkpassword",
                             {"smtpauth-checkpassword": "%s %s" % (CHECKPW, TRUE)})
        self.assertEqual((await auth(port, "bob", "bobpw"))[0], 235)

    async def test_program_gone_is_454(self):
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        program = os.path.join(directory, "checkpassword")
        shutil.copy(CHECKPW, program)
        _, port = self.serve("auth/auth_checkpassword checkpw %s true %s" % (program, TRUE))
        os.unlink(program)
        self.assertEqual(await auth(port, "bob", "bobpw"), TEMPORARY)

    def test_bad_configuration_stops_start_up(self):
        assertStartupError(self, ["auth/auth_checkpassword"],
                           "needs the checkpassword program and the program it runs on success")
        assertStartupError(self, ["auth/auth_checkpassword checkpw %s" % CHECKPW],
                           "give both checkpw PATH and true PATH")
        assertStartupError(self, ["auth/auth_checkpassword checkpw /nonexistent true %s" % TRUE],
                           "/nonexistent (from the arguments) is not an executable file")
        assertStartupError(self, ["auth/auth_checkpassword"],
                           "/etc/passwd (from the config file smtpauth-checkpassword) is not "
                           "an executable file",
                           {"smtpauth-checkpassword": "/etc/passwd %s" % TRUE})


class CheckpasswordTwistdTests(unittest.TestCase):
    """The plugin in a real ``twistd qpsmtpd-tx`` process (its own reactor and SIGCHLD
    handling), with the core's default failure delay."""

    def test_login_and_relay(self):
        config = write_config(os.path.abspath(self.mktemp()), [
            "auth/auth_checkpassword checkpw %s true %s" % (CHECKPW, TRUE), "rcpt_ok"])
        _, port, _ = start_twistd(self, config)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example")
            with self.assertRaises(smtplib.SMTPAuthenticationError) as failed:
                client.login("alice@example.com", "wrong")
            self.assertEqual(failed.exception.smtp_code, 535)
            self.assertEqual(client.login("alice@example.com", "s3cret pass")[0], 235)
            client.mail("alice@example.com")
            # relaying (example.net is not in rcpthosts) is allowed after AUTH
            self.assertEqual(client.rcpt("someone@example.net")[0], 250)
