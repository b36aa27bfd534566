"""Helpers shared by the tests of the content plugins headers and loop, the logging plugins
logging/syslog, logging/adaptive, logging/connection_id and logging/transaction_id, and
http_config (tests/plugins/test_headers, test_loop, test_logging_*, test_http_config): a loaded
server that does not listen, a fake transaction with a parsed header, one transaction over a
socket, a start-up error matched by a regex.
"""

import io
import sys

from qpsmtpd_tx.message import Header
from tests.support import harness
from tests.support.harness import startup_error
from tests.support.plugin_server import server_with  # noqa: F401 (re-exported for these tests)
from tests.support.server import connect, start_server

QUEUE_OK = "scripted queue OK Queued"


def fake_transaction(header_text=None, data_size=100, remote_ip="192.0.2.1"):
    txn = harness.fake_transaction(remote_ip)
    txn.id = "c1.1"
    if header_text is not None:
        txn.header = Header.parse(header_text.encode())
    txn.data_size = data_size
    return txn


async def send_message(testcase, client, header_lines, body_lines=("body",),
                       rcpt="u@example.com", helo=True):
    """Run one transaction; return the reply to the final dot."""
    if helo:
        testcase.assertEqual((await client.command("HELO client.example"))[0], 250)
    testcase.assertEqual((await client.command("MAIL FROM:<s@sender.example>"))[0], 250)
    testcase.assertEqual((await client.command("RCPT TO:<%s>" % rcpt))[0], 250)
    testcase.assertEqual(await client.command("DATA"), (354, ["go ahead"]))
    for line in list(header_lines) + [""] + list(body_lines):
        client.send(line)
    return await client.command(".")


def assertStartupError(testcase, plugins, pattern, files=None):
    """Loading fails with a StartupError whose text matches ``pattern`` (a regex)."""
    message = startup_error(testcase, plugins, files)
    testcase.assertRegex(message, pattern)
    return message


class IdLoggingCase:
    """A mixin for unittest.TestCase: the helpers of the logging/connection_id and
    logging/transaction_id tests."""

    def plugin(self, line):
        server = server_with(self, [], {"logging": line})
        plugin = server.logging_plugins[0]
        plugin.stream = io.StringIO()
        return server, plugin

    async def run_session(self, logging_line):
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        server, port = start_server(self, ["rcpt_ok", QUEUE_OK], {"logging": logging_line})
        client = await connect(self, port)
        cid = next(iter(server.sessions)).connection.id
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))
        self.assertEqual(await send_message(self, client, ["From: a@b.example"]),
                         (250, ["Queued"]))
        self.assertEqual(await client.command("RCPT TO:<x@elsewhere.example>"),
                         (503, ["Use MAIL before RCPT"]))
        return stderr.getvalue().splitlines(), cid
