"""auth/auth_cvm_unix_local end to end: smtplib AUTH to our server, which asks a CVM module.

The CVM module is a STAND-IN (no CVM package in Debian): ``tests.support.cvm.StandInCvm``,
strict about CVM protocol version 1 (see there).
"""

import os
import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED, LOGWARN, OK
from tests.support.auth_client import NO_DELAY, auth
from tests.support.cvm import StandInCvm
from tests.support.harness import capture_log, fake_transaction, loaded_plugin, make_server
from tests.support.server import start_server

OK_REPLY = (235, "PLAIN authentication successful for alice@example.com - auth success for "
                 "alice@example.com")
FAILED = (535, "5.7.8 Authentication credentials invalid")
TEMPORARY = (454, "4.7.0 Temporary authentication failure")


class CvmTests(unittest.TestCase):
    def setUp(self):
        directory = tempfile.mkdtemp(prefix="cvm")
        self.addCleanup(shutil.rmtree, directory, True)
        self.socket = os.path.join(directory, "cvm.sock")
        self.module = StandInCvm()
        self.listening = reactor.listenUNIX(self.socket, self.module)
        self.addCleanup(self.listening.stopListening)

    def serve(self, arguments=""):
        line = "auth/auth_cvm_unix_local cvm_socket %s %s" % (self.socket, arguments)
        server, port = start_server(self, [line.strip()], NO_DELAY)
        return server, port

    async def test_right_password(self):
        _, port = self.serve()
        advertised = []
        self.assertEqual(await auth(port, "alice@example.com", "s3cret pass", "PLAIN",
                                    advertised), OK_REPLY)
        self.assertEqual(sorted(advertised), ["LOGIN", "PLAIN"])
        self.assertEqual(self.module.requests,
                         [b"\x01alice\x00example.com\x00s3cret pass\x00\x00"])
        self.assertEqual((await auth(port, "bob", "bobpw", "LOGIN"))[0], 235)
        self.assertEqual(self.module.requests[-1], b"\x01bob\x00localhost\x00bobpw\x00\x00")

    async def test_wrong_password_and_unknown_user(self):
        _, port = self.serve()
        self.assertEqual(await auth(port, "alice@example.com", "guess"), FAILED)
        self.assertEqual(await auth(port, "carol@example.com", "x", "LOGIN"), FAILED)

    async def test_module_errors_are_temporary(self):
        server, port = self.serve()
        log = capture_log(self, server)
        self.module.error_code = 4           # CVME_IO
        self.assertEqual(await auth(port, "alice@example.com", "s3cret pass"), TEMPORARY)
        self.module.error_code = None
        self.module.mode = "close"
        self.assertEqual(await auth(port, "alice@example.com", "s3cret pass"), TEMPORARY)
        self.assertFalse([m for _, m in log if "s3cret" in m], log)

    async def test_module_down(self):
        _, port = self.serve()
        await self.listening.stopListening()
        self.assertFalse(os.path.exists(self.socket))
        self.assertEqual(await auth(port, "alice@example.com", "s3cret pass"), TEMPORARY)

    async def test_no_answer_within_timeout(self):
        _, port = self.serve("timeout 0.5")
        self.module.mode = "silent"
        self.assertEqual(await auth(port, "alice@example.com", "s3cret pass"), TEMPORARY)

    async def test_request_over_512_bytes_is_not_sent(self):
        _, port = self.serve()
        self.assertEqual(await auth(port, "alice@example.com", "x" * 600), FAILED)
        self.assertEqual(self.module.requests, [])

    def test_smtp_ports_need_enable_smtp(self):
        server = make_server(self, ["auth/auth_cvm_unix_local cvm_socket %s" % self.socket])
        plugin = loaded_plugin(server, "auth::auth_cvm_unix_local")
        for port in (25, 587):
            d = defer.ensureDeferred(plugin.check(fake_transaction(local_port=port), "plain",
                                                  "alice@example.com", "s3cret pass", None, None))
            self.assertEqual(self.successResultOf(d), DECLINED)
        self.assertEqual(self.module.requests, [])

    async def test_ssmtp_port_with_enable_ssmtp_no(self):
        server = make_server(self, ["auth/auth_cvm_unix_local cvm_socket %s enable_ssmtp no "
                                    "enable_smtp yes" % self.socket])
        plugin = loaded_plugin(server, "auth::auth_cvm_unix_local")
        self.assertEqual(await plugin.check(fake_transaction(local_port=465), "plain",
                                            "alice@example.com", "s3cret pass", None, None),
                         DECLINED)
        self.assertEqual((await plugin.check(fake_transaction(local_port=25), "plain",
                                             "alice@example.com", "s3cret pass", None,
                                             None))[0], OK)

    def test_arguments(self):
        from tests.support.harness import assertStartupError
        assertStartupError(self, ["auth/auth_cvm_unix_local"], "requires the cvm_socket argument")
        assertStartupError(self, ["auth/auth_cvm_unix_local cvm_socket /x enable_smtp maybe"],
                           "enable_smtp must be yes or no")
        assertStartupError(self, ["auth/auth_cvm_unix_local cvm_socket /x timeout 0"],
                           "timeout must be a positive number")

    def test_missing_socket_warns_at_start(self):
        server = make_server(self, ["auth/auth_cvm_unix_local cvm_socket /nonexistent/cvm"])
        self.assertIsNotNone(server)
        missing = os.path.join(os.path.dirname(self.socket), "none")
        log = []
        server.log = lambda level, message, **kw: log.append((level, message))
        plugin = loaded_plugin(server, "auth::auth_cvm_unix_local")
        plugin.init(["cvm_socket", missing])
        self.assertEqual(log, [(LOGWARN, "cvm_socket %s is missing or not a socket: AUTH gets a "
                                         "temporary failure until it is there" % missing)])
