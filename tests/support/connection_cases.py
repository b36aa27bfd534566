"""Helpers shared by the tests of the connection-level policy plugins (tests/plugins/:
test_hosts_allow, test_earlytalker, test_connection_time, test_noop_counter, test_random_error,
test_content_log, test_whitelist, test_naughty): the replies of the test server (make_server's
defaults), a fake transaction for calling hooks directly, and ways to drive a MemoryClient.
"""

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from qpsmtpd_tx import __version__
from tests.support import harness

GREETING = ("220 mx.example.org ESMTP qpsmtpd-tx %s ready; send us your mail, but not your spam.\r\n"
            % __version__)
EARLY = "Connecting host started transmitting before SMTP greeting"
HELO_OK = "250 mx.example.org Hi Unknown [%s]; I am so happy to meet you.\r\n"
MESSAGE = "Subject: hi\r\n\r\nbody line\r\n.\r\n"
QUIT_REPLY = "221 mx.example.org closing connection. Have a wonderful day.\r\n"


def fake_transaction(remote_ip="192.0.2.1", session=None):
    """A transaction on a connection from ``remote_ip``."""
    txn = harness.fake_transaction(remote_ip)
    txn.session = session
    return txn


def hang_up(client):
    """The connection of a MemoryClient is gone (runs disconnect / post-connection)."""
    client.protocol.connectionLost(Failure(ConnectionDone()))


def run_lines(client, lines):
    """Send each command line; the list of the replies."""
    return [client.command(line) for line in lines]
