"""Tests of the content_log plugin (archives every message to a file named by a strftime pattern):
real files in a temporary directory, written from the I/O thread pool, including a FIFO that
blocks and concurrent large messages.

Protocol-level cases use MemoryClient (a real SMTPProtocol on an in-memory transport); the
blocking, concurrency and end-to-end cases run over a real loopback socket
(tests.support.server). Reply texts are qpsmtpd 0.94's, read from its plugins in
/usr/share/qpsmtpd/plugins.
"""

import os
import re
import threading
import time

from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED, LOGERROR
from tests.support.connection_cases import fake_transaction, run_lines
from tests.support.harness import (MemoryClient, StartupErrorMixin, capture_log, eventually,
                                   make_server)
from tests.support.harness import loaded_plugin as plugin_of
from tests.support.server import connect, start_server


class ContentLogTests(StartupErrorMixin, unittest.TestCase):
    WHEN = 1700000000.0

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def server(self, files=None, pattern="archive/%Y%m%d.log"):
        files = dict(files or {})
        files.setdefault("content_log_file", os.path.join(self.dir, pattern))
        server = make_server(self, ["content_log", "rcpt_ok", "scripted queue OK Queued"], files)
        plugin = plugin_of(server, "content_log")
        plugin.now = lambda: self.WHEN
        return server

    def expected_path(self, pattern="archive/%Y%m%d.log"):
        return os.path.join(self.dir, time.strftime(pattern, time.localtime(self.WHEN)))

    async def deliver(self, server, body="body line"):
        """One message; the reply comes once the archive is written (in a thread)."""
        client = MemoryClient(server)
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"])
        out = [client.send("Subject: hi\r\n\r\n%s\r\n.\r\n" % body)]
        await eventually(lambda: out.append(client.take()) or "".join(out).endswith("\r\n"))
        self.assertEqual("".join(out), "250 Queued\r\n")
        return client.session.connection.notes["scripted_message"]

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    async def test_appends_each_message(self):
        server = self.server()
        first = await self.deliver(server, "first")
        second = await self.deliver(server, "second")
        content = self.read(self.expected_path())
        self.assertEqual(content, first + second)
        self.assertTrue(first.startswith(b"Received: from Unknown (HELO x) (192.0.2.1)\n"), first)
        self.assertTrue(first.endswith(b"\nSubject: hi\n\nfirst\n"), first)

    async def test_pattern_creates_directories(self):
        server = self.server(pattern="%Y/%m/%d/mail")
        message = await self.deliver(server)
        self.assertEqual(self.read(self.expected_path("%Y/%m/%d/mail")), message)

    async def test_default_pattern_is_relative_to_the_working_directory(self):
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.dir)
        server = make_server(self, ["content_log", "rcpt_ok", "scripted queue OK Queued"])
        plugin = plugin_of(server, "content_log")
        self.assertEqual(plugin.pattern, "mail/%Y%m%d")
        plugin.now = lambda: self.WHEN
        message = await self.deliver(server)
        self.assertEqual(self.read(self.expected_path("mail/%Y%m%d")), message)

    def test_enabled_values(self):
        for value in ("true", "1", "Yes", "on", "enabled"):
            server = self.server({"content_log_enabled": value})
            self.assertTrue(server.hooks.has("data_post"), value)
        for value in ("false", "0", "no", "OFF", "disabled"):
            server = self.server({"content_log_enabled": "# off\n" + value})
            self.assertFalse(server.hooks.has("data_post"), value)

    async def test_disabled_writes_nothing(self):
        server = self.server({"content_log_enabled": "false"})
        await self.deliver(server)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "archive")))

    async def test_write_failure_is_logged_and_the_message_goes_on(self):
        blocker = os.path.join(self.dir, "file")
        with open(blocker, "w") as f:
            f.write("not a directory\n")
        server = self.server(pattern="file/%Y")
        log = capture_log(self, server, plugin_names=True)
        await self.deliver(server)
        errors = [m for level, name, m in log if name == "content_log" and level == LOGERROR]
        self.assertEqual(len(errors), 1, log)
        self.assertTrue(errors[0].startswith("cannot write %s/file/" % self.dir), errors)

    async def test_hook_results(self):
        server = self.server()
        plugin = plugin_of(server, "content_log")
        txn = fake_transaction()
        txn.body.write(b"x\n")
        txn.body.finish()
        self.assertEqual(await plugin.save(txn), (DECLINED, "successfully saved message.. continuing"))
        self.assertEqual(self.read(self.expected_path()), b"\nx\n")
        plugin.pattern = os.path.join(self.dir, "archive/%Y%m%d.log", "below-a-file")
        capture_log(self, server, plugin_names=True)
        self.assertEqual(await plugin.save(txn),
                         (DECLINED, "Could not open log file.. continuing anyway"))

    def test_bad_config(self):
        self.assertStartupError(
            ["content_log"],
            [":1: plugin content_log: ", "content_log_enabled:2: content_log_enabled must be true or false, got 'maybe'"],
            {"content_log_enabled": "# on or off?\nmaybe\n"})
        self.assertStartupError(["content_log mail"], ":1: plugin content_log: arguments must be key/value pairs")

    async def test_a_blocked_archive_does_not_stop_the_server(self):
        # The archive is a FIFO nobody reads yet: opening it blocks. Written in the reactor
        # thread, that would stop every connection; from the I/O pool, a second client is
        # served meanwhile. A reader thread opens the FIFO once the second client has been
        # greeted (or after 30 s, so a failing run ends), then the first client gets its 250.
        path = os.path.join(self.dir, "fifo")
        os.mkfifo(path)
        server, port = start_server(self, ["scripted data_post DECLINED", "content_log", "rcpt_ok",
                                           "scripted queue OK Queued"], {"content_log_file": path})
        greeted, released, archived = threading.Event(), threading.Event(), []

        def reader():
            greeted.wait(30)
            released.set()
            with open(path, "rb") as f:
                archived.append(f.read())

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 30)
        first = await connect(self, port)
        for line in ("HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"):
            await first.command(line)
        first.send("Subject: blocked\r\n\r\nbody\r\n.")
        # data_post has begun (the plugin before content_log saw it)
        await eventually(lambda: any(
            hook == "data_post" for session in server.sessions
            for hook, _ in session.connection.notes.get("scripted_calls", ())), timeout=60)
        second = await connect(self, port)
        self.assertEqual(second.greeting[0], 220)
        self.assertFalse(released.is_set(), "the second client waited for the blocked archive")
        self.assertEqual((await second.command("NOOP"))[0], 250)
        greeted.set()
        self.assertEqual(await first.reply(), (250, ["Queued"]))
        await eventually(lambda: archived)
        self.assertTrue(archived[0].endswith(b"\nSubject: blocked\n\nbody\n"), archived)

    async def test_concurrent_messages_stay_whole(self):
        # Messages larger than the writing chunk (1 MiB) from several clients at once: each is
        # appended whole, none interleaved with another.
        path = os.path.join(self.dir, "concurrent.log")
        server, port = start_server(self, ["content_log", "rcpt_ok", "scripted queue OK Queued"],
                                    {"content_log_file": path, "databytes": "0"})
        bodies = [(b"%d" % n) * (1300000 // len(b"%d" % n)) for n in range(1, 6)]
        clients = [await connect(self, port) for _ in bodies]
        for client in clients:
            for line in ("HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"):
                await client.command(line)
        for client, body in zip(clients, bodies):
            client.transport.write(b"Subject: whole\r\n\r\n" + body + b"\r\n.\r\n")
        for client in clients:
            self.assertEqual(await client.reply(), (250, ["Queued"]))
        content = self.read(path)
        found = sorted(re.findall(rb"\nSubject: whole\n\n([0-9]+)\n", content))
        self.assertEqual(found, sorted(bodies))
        self.assertEqual(content.count(b"Received: from"), len(bodies))

    async def test_over_tcp(self):
        path = os.path.join(self.dir, "tcp.log")
        server, port = start_server(self, ["content_log", "rcpt_ok", "scripted queue OK Queued"],
                                    {"content_log_file": path})
        client = await connect(self, port)
        for line in ("HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"):
            self.assertEqual((await client.command(line))[0], 250)
        self.assertEqual(await client.command("DATA"), (354, ["go ahead"]))
        client.send("Subject: over tcp\r\n\r\n..dotted\r\n.")
        self.assertEqual(await client.reply(), (250, ["Queued"]))
        content = self.read(path)
        self.assertTrue(content.startswith(b"Received: from Unknown (HELO x) (127.0.0.1)\n"), content)
        self.assertTrue(content.endswith(b"\nSubject: over tcp\n\n.dotted\n"), content)
