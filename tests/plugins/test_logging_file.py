"""Tests of the logging/file plugin: its arguments, the hook called directly writing real
files (and a pipe) in a temp dir, rotation, reopening and SIGHUP, and real sessions over a
loopback socket (tests.support.server) with a file per session.
"""

import os
import re
import signal
import socket
import time

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.server import StartupError
from tests.support.harness import fake_transaction, make_server, plugin_module
from tests.support.plugin_server import server_with
from tests.support.server import connect, keep_signal_handlers, start_server

HOSTNAME = socket.gethostname()


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


file_module = plugin_module("logging/file")


class FileArgsTests(unittest.TestCase):
    def test_parse_args(self):
        parse = file_module.parse_args
        self.assertEqual(parse(["/var/log/q.log"]), {
            "loglevel": 4, "reopen": False, "nosplit": False, "tsformat": "%a %b %d %T %Y",
            "ids": False, "pipe": False, "output": "/var/log/q.log"})
        options = parse(["loglevel", "LOGINFO", "reopen", "NOSPLIT", "tsformat", "%FT%T", "ids",
                         "/var/log/q.%Y"])
        self.assertEqual((options["loglevel"], options["reopen"], options["nosplit"],
                          options["tsformat"], options["ids"], options["output"]),
                         (6, True, True, "%FT%T", True, "/var/log/q.%Y"))
        options = parse(["loglevel", "2", "|/usr/bin/logger", "-t", "qp"])
        self.assertEqual((options["loglevel"], options["pipe"], options["output"]),
                         (2, True, "/usr/bin/logger -t qp"))
        for bad in ([], ["loglevel"], ["loglevel", "LOGNOISE", "/x"], ["reopen"], ["|"]):
            self.assertRaises(file_module.PluginError, parse, bad)


class FileLogTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def file_plugin(self, args):
        server = server_with(self, [], {"logging": "logging/file " + args})
        plugin = server.logging_plugins[0]
        self.addCleanup(plugin.close_outputs)
        return server, plugin

    def path(self, name):
        return os.path.join(self.dir, name)

    async def test_session_lines(self):
        server, port = start_server(
            self, [], {"logging": "logging/file loglevel LOGINFO tsformat %%Y %s" % self.path("q.log")})
        client = await connect(self, port)
        conn_id = next(iter(server.sessions)).connection.id
        await client.command("NOOP")
        self.assertEqual((await client.command("QUIT"))[0], 221)
        await client.wait_closed()
        # a connection's lines carry its id where qpsmtpd wrote the pid of its child
        prefix = "%s %s[%s]: " % (time.strftime("%Y"), HOSTNAME, conn_id)
        lines = read(self.path("q.log")).splitlines()
        self.assertIn(prefix + "dispatching NOOP", lines)
        self.assertIn(prefix + "250 OK", lines)
        self.assertIn(prefix + "dispatching QUIT", lines)
        for line in lines:
            self.assertTrue(line.startswith(prefix) or line.endswith(
                "[%d]: cleaning up after %s" % (os.getpid(), conn_id)), line)
        server.logging_plugins[0].close_outputs()

    def test_default_timestamp_and_level(self):
        server, plugin = self.file_plugin(self.path("q.log"))
        self.assertEqual(plugin.log_threshold, codes.LOGWARN)
        txn = fake_transaction()
        plugin.hook_logging(txn, codes.LOGWARN, "rcpt", "rcpt_ok", "written")
        plugin.hook_logging(txn, codes.LOGNOTICE, "rcpt", "rcpt_ok", "too verbose")
        text = read(self.path("q.log"))  # readable at once: no buffering
        self.assertRegex(text, r"^\w{3} \w{3} \d\d \d\d:\d\d:\d\d \d{4} %s\[%s\]: written\n$"
                         % (re.escape(HOSTNAME), re.escape(txn.connection.id)))

    def test_ids(self):
        server, plugin = self.file_plugin("ids tsformat X " + self.path("q.log"))
        txn = fake_transaction()
        plugin.hook_logging(txn, codes.LOGWARN, "rcpt", "rcpt_ok", "hello")
        plugin.hook_logging(None, codes.LOGWARN, None, None, "server line")
        self.assertEqual(read(self.path("q.log")),
                         "X %s[%s]: %s (rcpt) rcpt_ok: hello\nX %s[%d]: server line\n"
                         % (HOSTNAME, txn.connection.id, txn.connection.id, HOSTNAME, os.getpid()))

    def test_strftime_path(self):
        before = time.strftime("%Y%m%d")
        server, plugin = self.file_plugin(self.path("q-%Y%m%d.log"))
        plugin.hook_logging(None, codes.LOGERROR, None, None, "dated")
        after = time.strftime("%Y%m%d")
        names = os.listdir(self.dir)
        self.assertIn(names, (["q-%s.log" % before], ["q-%s.log" % after]))

    def test_name_change_closes_previous_file(self):
        server, plugin = self.file_plugin("tsformat T " + self.path("a.log"))
        plugin.hook_logging(None, codes.LOGERROR, None, None, "one")
        plugin.output_format = self.path("b.log")  # as if the strftime expansion changed
        plugin.hook_logging(None, codes.LOGERROR, None, None, "two")
        self.assertEqual(sorted(plugin._outputs), [self.path("b.log")])
        self.assertEqual(read(self.path("a.log")), "T %s[%d]: one\n" % (HOSTNAME, os.getpid()))
        self.assertEqual(read(self.path("b.log")), "T %s[%d]: two\n" % (HOSTNAME, os.getpid()))

    def test_nosplit_keeps_a_session_in_its_file(self):
        server, plugin = self.file_plugin("nosplit tsformat T " + self.path("a.log"))
        first, second = fake_transaction("192.0.2.1"), fake_transaction("192.0.2.2")
        plugin.hook_logging(first, codes.LOGERROR, None, None, "first 1")
        plugin.output_format = self.path("b.log")
        plugin.hook_logging(second, codes.LOGERROR, None, None, "second 1")
        plugin.hook_logging(first, codes.LOGERROR, None, None, "first 2")
        self.assertEqual(sorted(plugin._outputs), [self.path("a.log"), self.path("b.log")])
        plugin.hook_post_connection(first)
        self.assertEqual(sorted(plugin._outputs), [self.path("b.log")])
        stamp = "T %s[%s]: " % (HOSTNAME, first.connection.id)
        self.assertEqual(read(self.path("a.log")), stamp + "first 1\n" + stamp + "first 2\n")
        self.assertEqual(read(self.path("b.log")),
                         "T %s[%s]: second 1\n" % (HOSTNAME, second.connection.id))

    def test_without_nosplit_a_session_follows_the_name(self):
        server, plugin = self.file_plugin("tsformat T " + self.path("a.log"))
        first = fake_transaction()
        plugin.hook_logging(first, codes.LOGERROR, None, None, "first 1")
        plugin.output_format = self.path("b.log")
        plugin.hook_logging(first, codes.LOGERROR, None, None, "first 2")
        stamp = "T %s[%s]: " % (HOSTNAME, first.connection.id)
        self.assertEqual(read(self.path("a.log")), stamp + "first 1\n")
        self.assertEqual(read(self.path("b.log")), stamp + "first 2\n")

    async def test_one_file_per_session(self):
        server, port = start_server(
            self, [], {"logging": "logging/file loglevel LOGINFO %s" % self.path("s-%i.log")})
        plugin = server.logging_plugins[0]
        self.addCleanup(plugin.close_outputs)
        one = await connect(self, port)
        two = await connect(self, port)
        await one.command("NOOP")
        await two.command("RSET")
        ids = sorted(s.connection.notes["logging-session-id"] for s in server.sessions)
        self.assertEqual(len(ids), 2)
        for session in server.sessions:
            self.assertRegex(session.connection.notes["logging-session-id"],
                             r"^\d{8,}-\d{4,}-%s$" % re.escape(session.connection.id))
        await one.command("QUIT")
        await two.command("QUIT")
        await one.wait_closed()
        await two.wait_closed()
        for _ in range(100):  # the server side may see the close a little later
            if not server.sessions:
                break
            await deferLater(reactor, 0.01, lambda: None)
        files = sorted("s-%s.log" % sid for sid in ids)
        # the end of each session is a line outside the connections: in the "parent" file
        self.assertEqual(sorted(os.listdir(self.dir)), sorted(files + ["s-parent.log"]))
        texts = [read(self.path(name)) for name in files]
        self.assertEqual(sorted(("dispatching NOOP" in t, "dispatching RSET" in t) for t in texts),
                         [(False, True), (True, False)])
        # the sessions' files were closed at post-connection
        self.assertEqual(list(plugin._outputs), [self.path("s-parent.log")])
        plugin.hook_logging(None, codes.LOGERROR, None, None, "outside")
        parent = read(self.path("s-parent.log"))
        self.assertIn("outside", parent)
        self.assertEqual(parent.count("cleaning up after"), 2)

    def test_line_after_post_connection_leaves_nothing_open(self):
        server, plugin = self.file_plugin(self.path("s-%i.log"))
        txn = fake_transaction()
        plugin.hook_connect(txn)
        plugin.hook_logging(txn, codes.LOGERROR, None, None, "during")
        self.assertEqual(len(plugin._outputs), 1)
        plugin.hook_post_connection(txn)
        self.assertEqual(plugin._outputs, {})
        plugin.hook_logging(txn, codes.LOGERROR, None, None, "after")
        self.assertEqual(plugin._outputs, {})
        sid = txn.connection.notes["logging-session-id"]
        text = read(self.path("s-%s.log" % sid))
        self.assertIn("during", text)
        self.assertIn("after", text)

    def test_reopen_method_follows_rotation(self):
        server, plugin = self.file_plugin("tsformat T " + self.path("q.log"))
        plugin.hook_logging(None, codes.LOGERROR, None, None, "before rotation")
        os.rename(self.path("q.log"), self.path("q.log.1"))
        plugin.hook_logging(None, codes.LOGERROR, None, None, "still old file")
        self.assertFalse(os.path.exists(self.path("q.log")))
        plugin.reopen()
        plugin.hook_logging(None, codes.LOGERROR, None, None, "after rotation")
        stamp = "T %s[%d]: " % (HOSTNAME, os.getpid())
        self.assertEqual(read(self.path("q.log.1")),
                         stamp + "before rotation\n" + stamp + "still old file\n")
        self.assertEqual(read(self.path("q.log")), stamp + "after rotation\n")

    def test_sighup_reopens_and_chains(self):
        keep_signal_handlers(self)
        calls = []
        signal.signal(signal.SIGHUP, lambda signum, frame: calls.append(signum))
        server, plugin = self.file_plugin("tsformat T " + self.path("q.log"))
        plugin.hook_logging(None, codes.LOGERROR, None, None, "before rotation")
        os.rename(self.path("q.log"), self.path("q.log.1"))
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):  # the Python-level handler runs at the next bytecode boundary
            if calls:
                break
            time.sleep(0.01)
        self.assertEqual(calls, [signal.SIGHUP])
        plugin.hook_logging(None, codes.LOGERROR, None, None, "after rotation")
        stamp = "T %s[%d]: " % (HOSTNAME, os.getpid())
        self.assertEqual(read(self.path("q.log.1")), stamp + "before rotation\n")
        self.assertEqual(read(self.path("q.log")), stamp + "after rotation\n")

    def test_reopen_option_reopens_once_per_session(self):
        server, plugin = self.file_plugin("reopen tsformat T " + self.path("q.log"))
        plugin.hook_logging(None, codes.LOGERROR, None, None, "server")
        os.unlink(self.path("q.log"))
        txn = fake_transaction()
        plugin.hook_logging(txn, codes.LOGERROR, None, None, "session 1")
        os.unlink(self.path("q.log"))
        plugin.hook_logging(txn, codes.LOGERROR, None, None, "session 2")  # not reopened again
        self.assertFalse(os.path.exists(self.path("q.log")))
        other = fake_transaction()
        plugin.hook_logging(other, codes.LOGERROR, None, None, "other session")
        self.assertEqual(read(self.path("q.log")),
                         "T %s[%s]: other session\n" % (HOSTNAME, other.connection.id))

    def test_without_reopen_option_the_file_stays_open(self):
        server, plugin = self.file_plugin(self.path("q.log"))
        plugin.hook_logging(None, codes.LOGERROR, None, None, "server")
        os.unlink(self.path("q.log"))
        plugin.hook_logging(fake_transaction(), codes.LOGERROR, None, None, "session")
        self.assertFalse(os.path.exists(self.path("q.log")))

    async def test_pipe(self):
        server, plugin = self.file_plugin("tsformat T |cat >> %s" % self.path("piped.log"))
        txn = fake_transaction()
        plugin.hook_logging(txn, codes.LOGERROR, None, None, "through a pipe")
        plugin.hook_logging(txn, codes.LOGWARN, None, None, "second line")
        await plugin.close_outputs()
        stamp = "T %s[%s]: " % (HOSTNAME, txn.connection.id)
        self.assertEqual(read(self.path("piped.log")),
                         stamp + "through a pipe\n" + stamp + "second line\n")

    def test_undecodable_bytes_written_back(self):
        server, plugin = self.file_plugin("tsformat T " + self.path("q.log"))
        plugin.hook_logging(None, codes.LOGERROR, None, None,
                            b"dispatching HELO \xff".decode("utf-8", "surrogateescape"))
        with open(self.path("q.log"), "rb") as f:
            self.assertTrue(f.read().endswith(b"dispatching HELO \xff\n"))

    def test_bad_arguments(self):
        for args in ("", "loglevel", "loglevel LOGNOISE /tmp/x", "reopen nosplit"):
            self.assertRaises(StartupError, make_server, self, [],
                              {"logging": ("logging/file " + args).strip()})


class SighupReloadTests(unittest.TestCase):
    """Each SIGHUP reload makes a new instance; the old ones must neither pile up handlers
    (each chained to the one before: recursion past ~1000 reloads) nor be kept alive by them."""

    def test_reloaded_instances_add_no_handler_and_are_released(self):
        import gc
        import weakref
        keep_signal_handlers(self)
        directory = self.mktemp()
        os.makedirs(directory)
        handlers, refs = set(), []
        for n in range(30):
            server = server_with(self, [], {"logging": "logging/file "
                                            + os.path.join(directory, "r.log")})
            plugin = server.logging_plugins[0]
            handlers.add(signal.getsignal(signal.SIGHUP))
            refs.append(weakref.ref(plugin))
            plugin.stop()
            del server, plugin
        gc.collect()
        self.assertEqual(len(handlers), 1)
        self.assertEqual([r for r in refs if r() is not None], [])
