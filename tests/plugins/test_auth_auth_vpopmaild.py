"""auth/auth_vpopmaild end to end: smtplib AUTH to our server, which asks vpopmaild over TCP.

vpopmaild is a STAND-IN (vpopmail is not in Debian): :class:`StandInVpopmaild` below, a TCP
server speaking vpopmaild's documented line protocol as far as the plugin uses it — a
``+OK`` greeting, ``login EMAIL PASSWORD`` answered ``+OK+`` with a multi-line body ended
by ``.``, or ``-ERR 0420 Login failed`` — strict about the command: exactly three words,
ended by CRLF.
"""

from twisted.internet import protocol, reactor
from twisted.protocols.basic import LineOnlyReceiver
from twisted.trial import unittest

from tests.support.auth_client import NO_DELAY, auth
from tests.support.harness import assertStartupError, capture_log
from tests.support.server import start_server

USERS = {"alice@example.com": "s3cret"}
FAILED = (535, "5.7.8 Authentication credentials invalid")
TEMPORARY = (454, "4.7.0 Temporary authentication failure")


class _VpopmaildConnection(LineOnlyReceiver):
    delimiter = b"\n"

    def connectionMade(self):
        mode = self.factory.mode
        if mode == "silent":
            return
        if mode == "busy":
            self.sendLine(b"-ERR server busy\r")
            self.transport.loseConnection()
            return
        self.sendLine(b"+OK \r")

    def lineReceived(self, line):
        self.factory.lines.append(line)
        words = line.decode().split(" ")
        if not line.endswith(b"\r") or len(words) != 3 or words[0] != "login":
            self.sendLine(b"-ERR 0000 bad command\r")
            return
        if self.factory.mode == "close":
            self.transport.loseConnection()
        elif USERS.get(words[1]) == words[2][:-1]:
            for reply in (b"+OK+", b"vpopmail_dir /home/vpopmail", b"."):
                self.sendLine(reply + b"\r")
        else:
            self.sendLine(b"-ERR 0420 Login failed\r")


class StandInVpopmaild(protocol.Factory):
    """A stand-in vpopmaild (see the module docstring)."""

    protocol = _VpopmaildConnection

    def __init__(self):
        self.mode = "normal"     # "silent": no greeting; "busy": -ERR greeting; "close"
        self.lines = []


class VpopmaildTests(unittest.TestCase):
    def setUp(self):
        self.daemon = StandInVpopmaild()
        listening = reactor.listenTCP(0, self.daemon, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.daemon_port = listening.getHost().port

    def serve(self, extra=""):
        line = "auth/auth_vpopmaild host 127.0.0.1 port %d %s" % (self.daemon_port, extra)
        return start_server(self, [line.strip()], NO_DELAY)

    async def test_right_password(self):
        _, port = self.serve()
        advertised = []
        self.assertEqual(await auth(port, "alice@example.com", "s3cret", "LOGIN", advertised),
                         (235, "LOGIN authentication successful for alice@example.com - "
                               "auth_vpopmaild"))
        self.assertEqual(sorted(advertised), ["LOGIN", "PLAIN"])
        self.assertEqual(self.daemon.lines, [b"login alice@example.com s3cret\r"])

    async def test_wrong_password(self):
        server, port = self.serve()
        log = capture_log(self, server)
        self.assertEqual(await auth(port, "alice@example.com", "guess"), FAILED)
        self.assertIn("fail, -ERR 0420 Login failed", [m for _, m in log])
        self.assertFalse([m for _, m in log if "guess" in m], log)

    async def test_spaces_and_line_breaks_are_never_sent(self):
        _, port = self.serve()
        self.assertEqual(await auth(port, "alice@example.com", "s3cret anything"), FAILED)
        self.assertEqual(await auth(port, "alice@example.com", "x\r\nquit"), FAILED)
        self.assertEqual(self.daemon.lines, [])

    async def test_daemon_trouble_is_temporary(self):
        _, port = self.serve("timeout 0.5")
        for mode in ("busy", "close", "silent"):
            self.daemon.mode = mode
            self.assertEqual(await auth(port, "alice@example.com", "s3cret"), TEMPORARY, mode)

    async def test_daemon_down(self):
        _, port = start_server(self, ["auth/auth_vpopmaild host 127.0.0.1 port 1"], NO_DELAY)
        self.assertEqual(await auth(port, "alice@example.com", "s3cret"), TEMPORARY)

    def test_arguments(self):
        assertStartupError(self, ["auth/auth_vpopmaild port x"], "port must be a TCP port number")
        assertStartupError(self, ["auth/auth_vpopmaild hots x"], "unknown argument 'hots'")
