"""Tests of loadcheck: the real /proc/loadavg and /usr/bin/uptime where the load may be any
value, and load files / uptime stand-ins (scripts printing uptime's formats) where the test
needs a load above or below the limit. Replies over real sockets."""

import os

from twisted.internet.task import Clock
from twisted.trial import unittest

from tests.support.harness import (MemoryClient, StartupErrorMixin, capture_log, loaded_plugin,
                                   make_server, plugin_module)
from tests.support.server import connect, start_server

REFUSED = (450, ["Server load too high, please try again later."])


def load_file(testcase, load):
    path = os.path.abspath(testcase.mktemp())
    write_load(path, load)
    return path


def write_load(path, load):
    with open(path, "w") as f:
        f.write("%s 1.07 0.75 2/153 5333\n" % (load,))


class LoadCheckTests(StartupErrorMixin, unittest.TestCase):
    async def greeting(self, line):
        _, port = start_server(self, [line, "rcpt_ok"])
        client = await connect(self, port)
        return client

    async def test_load_above_max_load_refuses(self):
        client = await self.greeting("loadcheck max_load 7 loadavg " + load_file(self, "7.01"))
        self.assertEqual(client.greeting, REFUSED)
        await client.wait_closed()

    async def test_load_at_max_load_accepts(self):
        client = await self.greeting("loadcheck max_load 7 loadavg " + load_file(self, "7.00"))
        self.assertEqual(client.greeting[0], 220)

    async def test_default_max_load_is_7(self):
        for load, code in (("6.99", 220), ("7.50", 450)):
            client = await self.greeting("loadcheck loadavg " + load_file(self, load))
            self.assertEqual(client.greeting[0], code, load)

    async def test_zero_means_default(self):
        client = await self.greeting("loadcheck max_load 0 loadavg " + load_file(self, "3"))
        self.assertEqual(client.greeting[0], 220)

    async def test_real_proc_loadavg(self):
        with open("/proc/loadavg") as f:
            self.assertGreaterEqual(float(f.read().split()[0]), 0)
        server, port = start_server(self, ["loadcheck max_load 100000"])
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        plugin = loaded_plugin(server, "loadcheck")
        self.assertIsInstance(plugin.load, float)

    def test_cache_time(self):
        path = load_file(self, "1.0")
        server = make_server(self, ["loadcheck cache_time 30 loadavg " + path])
        plugin = loaded_plugin(server, "loadcheck")
        plugin.clock = Clock()
        self.assertTrue(MemoryClient(server).greeting.startswith("220"))
        write_load(path, "50.0")
        plugin.clock.advance(30)
        self.assertTrue(MemoryClient(server).greeting.startswith("220"), "cached for 30 s")
        plugin.clock.advance(1)
        self.assertTrue(MemoryClient(server).greeting.startswith("450"))

    def uptime(self, text):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("#!/bin/sh\necho '%s'\n" % (text,))
        os.chmod(path, 0o755)
        return path

    async def test_uptime_when_no_load_file(self):
        """The uptime method, used when /proc/loadavg cannot be read: here the file is
        pretended missing (os.access patched), and the programs are stand-ins printing the
        three formats 0.94's plugin names, then the real /usr/bin/uptime."""
        module = plugin_module("loadcheck")
        self.patch(module, "LINUX_LOADAVG", "/nonexistent/loadavg")
        self.patch(module, "BSD_LOADAVG", "/nonexistent/kern/loadavg")
        for text, code in (
                ("10:33AM  up  2:06, 1 user, load averages: 6.55, 3.76, 2.48", 220),
                ("12:29am  2 users,  load average: 8.05, 0.05, 0.06", 450),
                ("12:30am  up 5 days, 12:43,  1 user,  load average: 0.00, 0.00, 0.00", 220)):
            client = await self.greeting("loadcheck uptime " + self.uptime(text))
            self.assertEqual(client.greeting[0], code, text)
        if os.access("/usr/bin/uptime", os.X_OK):
            client = await self.greeting("loadcheck max_load 100000")
            self.assertEqual(client.greeting[0], 220)

    def test_no_method_logs_an_error_and_accepts(self):
        module = plugin_module("loadcheck")
        self.patch(module, "LINUX_LOADAVG", "/nonexistent/loadavg")
        self.patch(module, "BSD_LOADAVG", "/nonexistent/kern/loadavg")
        server = make_server(self, ["loadcheck uptime /nonexistent/uptime"])
        self.assertTrue(MemoryClient(server).greeting.startswith("220"))

    def test_unreadable_file_later_keeps_accepting(self):
        path = load_file(self, "1.0")
        server = make_server(self, ["loadcheck loadavg " + path])
        log = capture_log(self, server)
        os.remove(path)
        self.assertTrue(MemoryClient(server).greeting.startswith("220"))
        self.assertTrue(any("cannot measure the load" in line for _, line in log), log)

    def test_parsers(self):
        module = plugin_module("loadcheck")
        self.assertEqual(module.parse_loadavg("0.50 0.40 0.30 1/2 3"), 0.5)
        self.assertEqual(module.parse_loadavg("2048 1024 512 2048", scaled=True), 1.0)
        self.assertRaises(ValueError, module.parse_uptime, "up 5 days")

    def test_bad_arguments(self):
        self.assertStartupError(["loadcheck max_load high"], ":1: plugin loadcheck: max_load must be a number, got 'high'")
        self.assertStartupError(["loadcheck cache_time -5"], ":1: plugin loadcheck: cache_time must be a number of at least 0")
        self.assertStartupError(["loadcheck max_load"], ":1: plugin loadcheck: arguments must be key/value pairs")
        self.assertStartupError(["loadcheck colour red"], ":1: plugin loadcheck: unknown argument 'colour'")


class LoadCheckPerlComparisonTests(unittest.TestCase):
    """Perl qpsmtpd 0.94 (Debian's) and our twistd with the same loadcheck lines, both reading
    the real /proc/loadavg: the same refusal above max_load, a greeting below it."""

    async def test_same_as_perl(self):
        from tests.support.perl_qpsmtpd import start_both
        with open("/proc/loadavg") as f:
            if float(f.read().split()[0]) < 0.01:
                raise unittest.SkipTest("the load average is 0: nothing above max_load 0.001")
        for line, expected in (("loadcheck max_load 0.001", REFUSED),
                               ("loadcheck max_load 100000", None)):
            perl, ours, _ = start_both(self, [line, "rcpt_ok"], {}, None, "qptx-loadcheck-")
            greetings = []
            for port in (perl, ours):
                client = await connect(self, port)
                greetings.append(client.greeting)
                await client.close()
            if expected is None:
                self.assertEqual([code for code, _ in greetings], [220, 220], line)
            else:
                self.assertEqual(greetings, [expected, expected], line)
