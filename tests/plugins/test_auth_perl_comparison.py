"""AUTH back ends side by side with Perl qpsmtpd 0.94 (Debian's ``qpsmtpd-forkserver``), each
server with the same plugin line, asked the same AUTH exchanges with smtplib.

The CVM module both servers ask is the STAND-IN in
``tests/support/cvm.py`` (no CVM package in Debian); it records
each request, so the test also shows that both send the same bytes. The replies' texts
differ on purpose (ours never tells why an AUTH failed), so codes are compared.
"""

import os

from twisted.internet import reactor
from twisted.trial import unittest

from tests.support.auth_client import NO_DELAY, auth
from tests.support.cvm import StandInCvm
from tests.support.harness import write_config
from tests.support.perl_qpsmtpd import PERL_PLUGIN_DIR, give_to_perl_user, shared_root, \
    start_forkserver
from tests.support.server import start_server


class PerlComparisonTests(unittest.TestCase):
    def start_both(self, line, root):
        perl_config = write_config(os.path.join(root, "perl"), [line],
                                   dict(NO_DELAY, plugin_dirs=PERL_PLUGIN_DIR))
        give_to_perl_user(perl_config)
        perl = start_forkserver(self, perl_config)
        _, ours = start_server(self, [line], NO_DELAY)
        return perl, ours

    async def codes(self, port, cases):
        return [(await auth(port, user, password, mechanism))[0]
                for user, password, mechanism in cases]

    async def test_authdeny(self):
        root = shared_root(self, "qptx-authdeny-")
        perl, ours = self.start_both("auth/authdeny", root)
        cases = [("alice", "pw", "PLAIN"), ("alice", "pw", "LOGIN"), ("alice", "pw", "CRAM-MD5")]
        self.assertEqual(await self.codes(perl, cases), [535, 535, 535])
        self.assertEqual(await self.codes(ours, cases), [535, 535, 535])

    async def test_cvm_unix_local(self):
        root = shared_root(self, "qptx-cvm-")
        socket = os.path.join(root, "cvm.sock")
        module = StandInCvm()
        listening = reactor.listenUNIX(socket, module, mode=0o666)
        self.addCleanup(listening.stopListening)
        # Perl takes the port from $PORT, else 25: there enable_smtp must be yes
        perl, ours = self.start_both(
            "auth/auth_cvm_unix_local cvm_socket %s enable_smtp yes" % socket, root)
        cases = [("alice@example.com", "s3cret pass", "PLAIN"), ("bob", "bobpw", "LOGIN"),
                 ("alice@example.com", "wrong", "PLAIN")]
        self.assertEqual(await self.codes(perl, cases), [235, 235, 535])
        perl_requests, module.requests = module.requests, []
        self.assertEqual(await self.codes(ours, cases), [235, 235, 535])
        self.assertEqual(module.requests, perl_requests)
