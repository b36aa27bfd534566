"""Tests of logging/apache: Apache-format error log lines written to a real file by a server
serving a real SMTP session over a loopback socket; rotation by SIGHUP."""

import io
import os
import re
import signal
import time

from twisted.trial import unittest

from qpsmtpd_tx import codes
from tests.support.harness import StartupErrorMixin, fake_transaction, make_server
from tests.support.server import connect, keep_signal_handlers, start_server

#: Apache 2.4's error log line: time with microseconds, module:level, pid, client, text
LINE = re.compile(r"\[(?P<time>\w{3} \w{3} \d\d \d\d:\d\d:\d\d\.\d{6} \d{4})\] "
                  r"\[perl:(?P<level>\w+)\] \[pid (?P<pid>\d+)\] "
                  r"(?:\[client (?P<client>[^\]]+)\] )?(?P<text>.*)$")


def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


class ApacheLogTests(StartupErrorMixin, unittest.TestCase):
    def path(self, name="error.log"):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, name)

    def logging_plugin(self, line):
        server = make_server(self, ["rcpt_ok"], {"logging": line})
        [plugin] = server.logging_plugins
        return plugin

    async def test_session_lines(self):
        log = self.path()
        _, port = start_server(self, ["rcpt_ok"], {"logging": "logging/apache loglevel LOGINFO " + log})
        client = await connect(self, port)
        client_port = client.transport.getHost().port
        await client.command("HELO client.example")
        await client.command("MAIL FROM:<a@b.example>")
        await client.command("RCPT TO:<u@example.com>")
        await client.command("QUIT")
        await client.wait_closed()
        lines = read_lines(log)
        parsed = [LINE.match(line) for line in lines]
        self.assertTrue(all(parsed), lines)
        session_lines = [m for m in parsed if m.group("client")]
        self.assertTrue(session_lines)
        for m in session_lines:
            self.assertEqual(m.group("client"), "127.0.0.1:%d" % client_port)
            self.assertEqual(m.group("pid"), str(os.getpid()))
            self.assertIn(m.group("level"), ("info", "notice"))
            time.strptime(m.group("time").split(".")[0] + m.group("time")[-5:], "%a %b %d %H:%M:%S %Y")
        texts = [m.group("text") for m in session_lines]
        conn_id = texts[0].split(" ")[0]
        self.assertIn("%s 250 <u@example.com>, recipient ok" % conn_id, texts)
        self.assertTrue(all(t.startswith(conn_id + " ") for t in texts), texts)

    def test_levels_and_formats(self):
        plugin = self.logging_plugin("logging/apache loglevel LOGDEBUG " + self.path())
        transaction = fake_transaction("192.0.2.7", remote_port=4242)
        start = len(read_lines(plugin.path)) if os.path.exists(plugin.path) else 0
        for level in range(8):
            plugin.hook_logging(transaction, level, "rcpt", "check_thing", "text %d" % level)
        plugin.hook_logging(transaction, codes.LOGINFO, "rcpt", None, "core during a hook")
        plugin.hook_logging(None, codes.LOGERROR, None, None, "outside a connection")
        plugin.hook_logging(None, codes.LOGERROR, None, plugin.name, "own line: not written")
        lines = [LINE.match(line).groupdict() for line in read_lines(plugin.path)[start:]]
        self.assertEqual([line["level"] for line in lines[:8]],
                         ["emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"])
        conn_id = transaction.connection.id
        self.assertEqual(lines[0]["client"], "192.0.2.7:4242")
        self.assertEqual(lines[0]["text"], "%s check_thing plugin: text 0" % conn_id)
        self.assertEqual(lines[8]["text"], "%s running plugin (rcpt): core during a hook" % conn_id)
        self.assertEqual((lines[9]["client"], lines[9]["text"]),
                         (None, "%d outside a connection" % os.getpid()))
        self.assertEqual(len(lines), 10)

    def test_default_level_is_warn(self):
        plugin = self.logging_plugin("logging/apache " + self.path())
        plugin.hook_logging(None, codes.LOGINFO, None, None, "info: not written")
        plugin.hook_logging(None, codes.LOGWARN, None, None, "warn: written")
        self.assertEqual([LINE.match(line).group("text") for line in read_lines(plugin.path)],
                         ["%d warn: written" % os.getpid()])

    def test_standard_error_without_path(self):
        plugin = self.logging_plugin("logging/apache")
        stderr = io.StringIO()
        self.patch(__import__("sys"), "stderr", stderr)
        plugin.hook_logging(None, codes.LOGERROR, None, None, "to stderr")
        self.assertTrue(LINE.match(stderr.getvalue().rstrip("\n")))

    def test_sighup_reopens(self):
        keep_signal_handlers(self)
        plugin = self.logging_plugin("logging/apache " + self.path())
        plugin.hook_logging(None, codes.LOGERROR, None, None, "before rotation")
        os.rename(plugin.path, plugin.path + ".1")
        plugin.hook_logging(None, codes.LOGERROR, None, None, "still the old file")
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):   # the Python-level handler runs at the next bytecode boundary
            if plugin._sighup.raised:
                break
            time.sleep(0.01)
        plugin.hook_logging(None, codes.LOGERROR, None, None, "after rotation")
        self.assertEqual(len(read_lines(plugin.path + ".1")), 2)
        self.assertTrue(read_lines(plugin.path)[0].endswith(" after rotation"))

    def test_bad_arguments(self):
        self.assertStartupError(["rcpt_ok"], "logging:1: plugin logging/apache: unknown log level 'LOUD'",
                                files={"logging": "logging/apache loglevel LOUD /tmp/x.log"})
        self.assertStartupError(["rcpt_ok"], "logging:1: plugin logging/apache: loglevel needs a value",
                                files={"logging": "logging/apache loglevel"})
        self.assertStartupError(["rcpt_ok"], "logging:1: plugin logging/apache: /tmp is a directory",
                                files={"logging": "logging/apache /tmp"})
