"""The log lines operators grep, as qpsmtpd 0.94's forkserver writes them, through logging/file.

A real server on a loopback socket logs through the real logging/file plugin into a file; the
tests read that file. Each line is ``T <host>[<id>]: <text>`` (``tsformat T``): ``<id>`` is
the connection id for a connection's lines (where qpsmtpd shows the child's pid) and the
server's pid for the others. ``test_logs_differential`` runs the same kind of sessions
against Perl qpsmtpd.
"""

import os
import re
import socket

from twisted.trial import unittest

from tests.support.harness import eventually
from tests.support.server import connect, start_server

LINE = re.compile(r"^T (?P<host>\S+)\[(?P<id>[^\]]+)\]: (?P<text>.*)$")


class LogFile:
    """The parsed lines of a logging/file output: ``(id, text)`` pairs."""

    def __init__(self, path):
        self.path = path

    def lines(self):
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8") as f:
            return [(m.group("id"), m.group("text")) for m in map(LINE.match, f.read().splitlines())
                    if m is not None]

    def texts(self, of_id=None):
        return [text for line_id, text in self.lines() if of_id is None or line_id == of_id]

    def ids_of(self, text):
        return [line_id for line_id, t in self.lines() if t == text]


class OperatorLogTests(unittest.TestCase):
    def start(self, plugins=(), files=None, max_connections=500):
        path = os.path.abspath(self.mktemp() + ".log")
        config = {"logging": "logging/file loglevel LOGDEBUG tsformat T %s" % path}
        config.update(files or {})
        server, port = start_server(self, list(plugins), config, max_connections=max_connections)
        self.addCleanup(server.logging_plugins[0].close_outputs)
        return server, port, LogFile(path)

    async def finish(self, server, log, client):
        """QUIT ``client`` and wait until the server logged the end of its session."""
        conn_id = next(iter(server.sessions)).connection.id
        await client.command("QUIT")
        await client.wait_closed()
        await eventually(lambda: "cleaning up after %s" % conn_id in log.texts())
        return conn_id

    async def test_connection_lines_in_forkserver_order(self):
        server, port, log = self.start(max_connections=0)
        client = await connect(self, port)
        await client.command("EHLO c.example")
        conn_id = await self.finish(server, log, client)
        texts = log.texts(conn_id)
        self.assertEqual(texts[:2], ["Accepted connection 0/unlimited from 127.0.0.1 / Unknown",
                                     "Connection from Unknown [127.0.0.1]"])
        self.assertEqual(texts[-2:], ["221 mx.example.org closing connection. Have a wonderful day.",
                                      "click, disconnecting"])
        # the end of the session is logged outside the connection, as qpsmtpd's parent does
        self.assertEqual(log.ids_of("cleaning up after %s" % conn_id), [str(os.getpid())])

    async def test_accepted_counts_other_connections_and_names_the_limit(self):
        server, port, log = self.start(max_connections=7)
        first = await connect(self, port)
        second = await connect(self, port)
        await first.command("NOOP")
        await second.command("NOOP")
        accepted = [t for t in log.texts() if t.startswith("Accepted connection")]
        self.assertEqual(accepted, ["Accepted connection 0/7 from 127.0.0.1 / Unknown",
                                    "Accepted connection 1/7 from 127.0.0.1 / Unknown"])

    async def test_multiline_reply_logged_with_continuation_dashes(self):
        server, port, log = self.start(files={"databytes": "2000"})
        client = await connect(self, port)
        await client.command("EHLO c.example")
        conn_id = await self.finish(server, log, client)
        texts = log.texts(conn_id)
        start = texts.index("dispatching EHLO c.example") + 1
        self.assertEqual(texts[start:start + 4], ["250-mx.example.org Hi Unknown [127.0.0.1]",
                                                  "250-PIPELINING", "250-8BITMIME", "250 SIZE 2000"])

    async def test_concurrent_sessions_have_distinct_ids(self):
        server, port, log = self.start()
        one = await connect(self, port)
        two = await connect(self, port)
        await one.command("NOOP")
        await two.command("NOOP")
        session_ids = {s.connection.id for s in server.sessions}
        self.assertEqual(len(session_ids), 2)
        ids = log.ids_of("dispatching NOOP")
        self.assertEqual(sorted(ids), sorted(session_ids))
        for conn_id in ids:
            self.assertTrue(log.texts(conn_id)[0].startswith("Accepted connection "))
            self.assertNotEqual(conn_id, str(os.getpid()))

    async def test_deny_mail_from(self):
        server, port, log = self.start(["check_badmailfrom", "scripted mail DENYSOFT"],
                                       {"badmailfrom": "bad@b.example"})
        client = await connect(self, port)
        await client.command("HELO c.example")
        self.assertEqual((await client.command("MAIL FROM:<bad@b.example>"))[0], 550)
        self.assertEqual((await client.command("MAIL FROM:<a@b.example>"))[0], 450)
        conn_id = await self.finish(server, log, client)
        texts = log.texts(conn_id)
        denied = texts.index(
            "deny mail from <bad@b.example> (Your envelope sender is in my badmailfrom list)")
        self.assertEqual(texts[denied + 1], "550 Your envelope sender is in my badmailfrom list")
        self.assertIn("denysoft mail from <a@b.example> (<a@b.example>, temporarily denied)", texts)

    async def test_spooling_message_to_disk(self):
        server, port, log = self.start(["rcpt_ok", "scripted queue OK"], {"size_threshold": "100"})
        client = await connect(self, port)
        for line in ("HELO c.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"):
            await client.command(line)
        self.assertEqual((await client.command("DATA"))[0], 354)
        client.send("Subject: small\r\n\r\nshort body")
        self.assertEqual((await client.command("."))[0], 250)
        self.assertNotIn("spooling message to disk", log.texts())
        for line in ("MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"):
            await client.command(line)
        client.send("Subject: big\r\n\r\n" + "x" * 70 + "\r\n" + "y" * 70)
        self.assertEqual((await client.command("."))[0], 250)
        conn_id = await self.finish(server, log, client)
        self.assertEqual(log.texts(conn_id).count("spooling message to disk"), 1)

    def test_parent_lines_carry_the_pid(self):
        """Lines logged outside any connection keep the server's pid, as Perl's parent."""
        path = os.path.abspath(self.mktemp() + ".log")
        server, _ = start_server(self, [], {"logging": "logging/file tsformat T %s" % path})
        self.addCleanup(server.logging_plugins[0].close_outputs)
        server.log(4, "a server line")
        self.assertEqual(LogFile(path).lines(), [(str(os.getpid()), "a server line")])
        with open(path) as f:
            self.assertEqual(f.read(), "T %s[%d]: a server line\n" % (socket.gethostname(), os.getpid()))


class ListeningLineTests(unittest.TestCase):
    """The address in ``Listening on``, as qpsmtpd-forkserver writes it (end-to-end: the
    differential test)."""

    def test_addresses(self):
        from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

        from qpsmtpd_tx.tap import _address
        self.assertEqual(_address(IPv4Address("TCP", "127.0.0.1", 2525)), "127.0.0.1:2525")
        self.assertEqual(_address(IPv6Address("TCP", "::1", 25)), "[::1]:25")
        self.assertEqual(_address(UNIXAddress(b"/run/smtp.sock")), "/run/smtp.sock")
