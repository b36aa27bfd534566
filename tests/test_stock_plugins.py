"""The stock plugins relay (and check_relay), count_unrecognized_commands, help,
logging/warn, logging/file, logging/devnull, and the ``qpsmtpd-tx plugins`` command line.

Most tests drive a real server over a loopback socket (tests.support.server); parsing and
matching functions are also tested directly. Reply texts are qpsmtpd 0.94's (read from
/usr/share/qpsmtpd/plugins and Qpsmtpd/SMTP.pm).
"""

import ast
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from qpsmtpd_tx import cli, codes
from qpsmtpd_tx.cdb import write_cdb
from qpsmtpd_tx.loader import find_plugin_file
from qpsmtpd_tx.paths import default_plugin_dirs
from qpsmtpd_tx.server import StartupError
from tests.support.harness import fake_transaction, make_server, plugin_module
from tests.support.server import connect, keep_signal_handlers, start_server

PLUGIN_DIRS = default_plugin_dirs()
HOSTNAME = socket.gethostname()


def server_with(testcase, plugins, files=None):
    """A loaded server that does not listen (for calling plugin hooks directly)."""
    keep_signal_handlers(testcase)
    return make_server(testcase, plugins, files)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# -- relay ------------------------------------------------------------------------------------

relay_module = plugin_module("relay")


class RelayParsingTests(unittest.TestCase):
    def test_normalize_key(self):
        table = [
            ("192.168.42.", "192.168.42."),
            ("10.", "10."),
            ("192.0.2.7", "192.0.2.7"),
            ("2001:db8:e431:ae06:", "2001:0db8:e431:ae06"),
            ("2001:0DB8:E4", "2001:0db8:e4"),
            ("2001:db8:e4", "2001:0db8:e4"),
            ("::1", "0000:0000:0000:0000:0000:0000:0000:0001"),
            ("2001:db8::", "2001:0db8:0000:0000:0000:0000:0000:0000"),
        ]
        for entry, expected in table:
            self.assertEqual(relay_module.normalize_key(entry), expected, entry)

    def test_normalize_key_rejects_garbage(self):
        for entry in ("192.168", "300.1.", "1.2.3.4.5", "mail.example.com", "2001:zz:",
                      "12345:", "1.2.3.256"):
            self.assertRaises(relay_module.BadEntry, relay_module.normalize_key, entry)

    def test_ipv4_candidates(self):
        self.assertEqual(relay_module.ip_candidates("192.0.2.7"),
                         {"192.0.2.7", "192.0.2.", "192.0.", "192."})

    def test_ipv6_candidates(self):
        found = relay_module.ip_candidates("2001:db8:e431:ae06::1")
        self.assertIn("2001:db8:e431:ae06::1", found)
        self.assertIn("2001:0db8:e431:ae06:0000:0000:0000:0001", found)
        self.assertIn("2001:0db8:e431:ae06", found)
        self.assertIn("2001:0db8:e4", found)
        self.assertIn("2", found)
        self.assertNotIn("2001:0db8:e431:ae06:", found)  # never ends in ':'
        self.assertNotIn("2001:db8:", found)
        self.assertEqual(len(found), 1 + 32)  # short form + one per hex digit

    def test_env_relayclient(self):
        self.assertTrue(relay_module.env_relayclient({"RELAYCLIENT": "1"}))
        self.assertTrue(relay_module.env_relayclient({"RELAYCLIENT": "yes"}))
        self.assertFalse(relay_module.env_relayclient({"RELAYCLIENT": "0"}))
        self.assertFalse(relay_module.env_relayclient({"RELAYCLIENT": ""}))
        self.assertFalse(relay_module.env_relayclient({}))


RELAYCLIENTS = """\
# office
192.168.42.
10.9.8.7
172.16.0.0/30
2001:db8:e431:ae06:
2001:0db8:ffff:1
2001:db8:aaaa::/48
203.0.113.5/32
"""


class RelayConnectTests(unittest.TestCase):
    """hook_connect on a loaded plugin, for many client addresses."""

    def relay_plugin(self, files, args=""):
        server = server_with(self, [("relay " + args).strip()], files)
        return server.plugins[0]

    def decide(self, plugin, ip):
        txn = fake_transaction(ip)
        self.assertEqual(plugin.hook_connect(txn), codes.DECLINED)
        return txn.connection.relay_client

    def test_relayclients_table(self):
        plugin = self.relay_plugin({"relayclients": RELAYCLIENTS})
        table = [
            ("192.168.42.1", True), ("192.168.42.255", True), ("192.168.43.1", False),
            ("192.168.4.2", False), ("10.9.8.7", True), ("10.9.8.70", False),
            ("172.16.0.0", True), ("172.16.0.3", True),  # CIDR ends included (0.94 left them out)
            ("172.16.0.4", False), ("203.0.113.5", True), ("203.0.113.6", False),
            ("2001:db8:e431:ae06::1", True), ("2001:db8:e431:ae07::1", False),
            ("2001:db8:ffff:1abc::9", True), ("2001:db8:ffff:2::9", False),
            ("2001:db8:aaaa:1234::1", True), ("2001:db8:aaab::1", False),
            ("::1", True),  # IPv6 localhost always relays, as in qpsmtpd
            ("127.0.0.1", False), ("198.51.100.1", False),
        ]
        for ip, expected in table:
            self.assertEqual(self.decide(plugin, ip), expected, ip)

    def test_norelayclients_wins(self):
        plugin = self.relay_plugin({"relayclients": RELAYCLIENTS,
                                    "norelayclients": "192.168.42.7\n2001:db8:e431:ae06::5\n::1\n"
                                                      "172.16.0.2/31\n"})
        plugin.environ = {"RELAYCLIENT": "1"}
        for ip in ("192.168.42.7", "2001:db8:e431:ae06::5", "::1", "172.16.0.3"):
            self.assertFalse(self.decide(plugin, ip), ip)
        self.assertTrue(self.decide(plugin, "192.168.42.8"))
        self.assertTrue(self.decide(plugin, "172.16.0.1"))

    def test_norelayclients_resets_relay_client(self):
        plugin = self.relay_plugin({"norelayclients": "192.0.2."})
        txn = fake_transaction("192.0.2.9")
        txn.connection.relay_client = True
        plugin.hook_connect(txn)
        self.assertFalse(txn.connection.relay_client)

    def test_relayclient_env(self):
        plugin = self.relay_plugin({})
        plugin.environ = {"RELAYCLIENT": "1"}
        self.assertTrue(self.decide(plugin, "198.51.100.1"))
        plugin.environ = {"RELAYCLIENT": "0"}
        self.assertFalse(self.decide(plugin, "198.51.100.1"))
        plugin.environ = {}
        self.assertFalse(self.decide(plugin, "198.51.100.1"))

    def test_morerelayclients_plain_file(self):
        plugin = self.relay_plugin({"morerelayclients": "198.51.100.\n2001:db8:1:\n"})
        self.assertTrue(self.decide(plugin, "198.51.100.20"))
        self.assertTrue(self.decide(plugin, "2001:db8:1::20"))
        self.assertFalse(self.decide(plugin, "198.51.101.20"))
        self.assertFalse(self.decide(plugin, "2001:db8:2::20"))

    def test_morerelayclients_cdb(self):
        server = server_with(self, ["relay"])
        config_dir = server.config.config_dir
        write_cdb(os.path.join(config_dir, "morerelayclients.cdb"),
                  [("198.51.100.", ""), ("203.0.113.9", ""), ("2001:0db8:0002", "")])
        plugin = server.plugins[0]
        self.assertTrue(self.decide(plugin, "198.51.100.20"))
        self.assertTrue(self.decide(plugin, "203.0.113.9"))
        self.assertTrue(self.decide(plugin, "2001:db8:2::1"))
        self.assertFalse(self.decide(plugin, "203.0.113.90"))
        self.assertFalse(self.decide(plugin, "2001:db8:3::1"))

    def test_relayclients_reread_when_changed(self):
        server = server_with(self, ["relay"], {"relayclients": "192.0.2.1"})
        plugin = server.plugins[0]
        self.assertFalse(self.decide(plugin, "192.0.2.2"))
        with open(os.path.join(server.config.config_dir, "relayclients"), "w") as f:
            f.write("192.0.2.2\n")
        server.config.clear_cache()
        self.assertTrue(self.decide(plugin, "192.0.2.2"))
        self.assertFalse(self.decide(plugin, "192.0.2.1"))

    def test_bad_relayclients_line_is_a_startup_error(self):
        e = self.assertRaises(StartupError, make_server, self, ["relay"],
                              {"relayclients": "192.0.2.1\n10.0.0.0/99\n"})
        self.assertIn("relayclients:2:", str(e))
        self.assertIn("10.0.0.0/99", str(e))
        e = self.assertRaises(StartupError, make_server, self, ["relay"],
                              {"norelayclients": "192.168\n"})
        self.assertIn("norelayclients:1:", str(e))

    def test_bad_arguments(self):
        self.assertRaises(StartupError, make_server, self, ["relay foo 1"])
        self.assertRaises(StartupError, make_server, self, ["relay only"])

    def test_only_registers_rcpt_hook(self):
        self.assertFalse(server_with(self, ["relay"]).hooks.has("rcpt"))
        self.assertFalse(server_with(self, ["relay only 0"]).hooks.has("rcpt"))
        self.assertTrue(server_with(self, ["relay only 1"]).hooks.has("rcpt"))


class RelaySessionTests(unittest.TestCase):
    """relay (and check_relay) in a real session from 127.0.0.1."""

    async def rcpt(self, plugins, files, recipient, host="127.0.0.1"):
        server, port = start_server(self, plugins, files, interface=host)
        client = await connect(self, port, host)
        self.assertEqual((await client.command("HELO client.example"))[0], 250)
        self.assertEqual((await client.command("MAIL FROM:<a@b.example>"))[0], 250)
        return await client.command("RCPT TO:<%s>" % recipient)

    async def test_relay_client_may_relay(self):
        reply = await self.rcpt(["relay", "rcpt_ok"], {"relayclients": "127.0.0.1"},
                                "someone@elsewhere.example")
        self.assertEqual(reply, (250, ["<someone@elsewhere.example>, recipient ok"]))

    async def test_relay_client_by_prefix(self):
        reply = await self.rcpt(["relay", "rcpt_ok"], {"relayclients": "127.0."},
                                "someone@elsewhere.example")
        self.assertEqual(reply, (250, ["<someone@elsewhere.example>, recipient ok"]))

    async def test_other_client_may_not_relay(self):
        reply = await self.rcpt(["relay", "rcpt_ok"], {"relayclients": "10.0.0.0/8"},
                                "someone@elsewhere.example")
        self.assertEqual(reply, (550, ["Relaying denied (#5.7.1)"]))  # rcpt_ok's text

    async def test_norelayclients_overrides(self):
        reply = await self.rcpt(["relay", "rcpt_ok"],
                                {"relayclients": "127.0.0.0/8", "norelayclients": "127.0.0.1"},
                                "someone@elsewhere.example")
        self.assertEqual(reply, (550, ["Relaying denied (#5.7.1)"]))

    async def test_only_denies_non_relay_clients_even_for_local_domains(self):
        reply = await self.rcpt(["relay only 1", "rcpt_ok"], {"relayclients": "10.0.0.1"},
                                "user@example.com")
        self.assertEqual(reply, (550, ["relaying denied"]))

    async def test_only_accepts_relay_clients(self):
        # relay answers OK itself: no rcpt_ok needed
        reply = await self.rcpt(["relay only 1"], {"relayclients": "127.0.0.1"},
                                "someone@elsewhere.example")
        self.assertEqual(reply, (250, ["<someone@elsewhere.example>, recipient ok"]))

    async def test_check_relay_alias(self):
        server, port = start_server(self, ["check_relay only 1"], {"relayclients": "127.0.0.1"})
        plugin = server.plugins[0]
        self.assertEqual(type(plugin).__name__, "Relay")
        self.assertEqual(plugin.name, "check_relay")
        self.assertTrue(plugin.only)
        client = await connect(self, port)
        await client.command("HELO client.example")
        await client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(await client.command("RCPT TO:<x@elsewhere.example>"),
                         (250, ["<x@elsewhere.example>, recipient ok"]))

    async def test_check_relay_alias_denies(self):
        reply = await self.rcpt(["check_relay only 1", "rcpt_ok"], {"relayclients": "10.0.0.1"},
                                "user@example.com")
        self.assertEqual(reply, (550, ["relaying denied"]))

    async def test_ipv6_localhost(self):
        if not socket.has_ipv6:
            raise unittest.SkipTest("no IPv6")
        try:
            reply = await self.rcpt(["relay only 1"], {}, "x@elsewhere.example", host="::1")
        except OSError as e:
            raise unittest.SkipTest("cannot use ::1: %s" % e)
        self.assertEqual(reply, (250, ["<x@elsewhere.example>, recipient ok"]))

    async def test_ipv6_norelayclients(self):
        if not socket.has_ipv6:
            raise unittest.SkipTest("no IPv6")
        try:
            reply = await self.rcpt(["relay only 1"], {"norelayclients": "::1"},
                                    "x@elsewhere.example", host="::1")
        except OSError as e:
            raise unittest.SkipTest("cannot use ::1: %s" % e)
        self.assertEqual(reply, (550, ["relaying denied"]))


# -- count_unrecognized_commands ----------------------------------------------------------------

class CountUnrecognizedCommandsTests(unittest.TestCase):
    async def test_default_limit_is_4(self):
        server, port = start_server(self, ["count_unrecognized_commands"])
        client = await connect(self, port)
        for n, verb in enumerate(["FOO", "BAR bar", "NOOP", "GET / HTTP/1.0"], 1):
            reply = await client.command(verb)
            if verb == "NOOP":
                self.assertEqual(reply, (250, ["OK"]))  # recognised: not counted
            else:
                self.assertEqual(reply, (500, ["Unrecognized command"]), verb)
        session = next(iter(server.sessions))
        self.assertEqual(session.connection.notes["unrec_cmd_count"], 3)
        self.assertEqual(await client.command("HOST: x"), (521, [
            "Closing connection, 4 unrecognized commands. Perhaps you should read RFC 2821?"]))
        await client.wait_closed()
        self.assertTrue(client.closed)

    async def test_argument(self):
        server, port = start_server(self, ["count_unrecognized_commands 2"])
        client = await connect(self, port)
        self.assertEqual(await client.command("XYZZY"), (500, ["Unrecognized command"]))
        self.assertEqual(await client.command("PLUGH"), (521, [
            "Closing connection, 2 unrecognized commands. Perhaps you should read RFC 2821?"]))
        await client.wait_closed()

    async def test_count_is_per_connection(self):
        server, port = start_server(self, ["count_unrecognized_commands 2"])
        first = await connect(self, port)
        self.assertEqual((await first.command("XYZZY"))[0], 500)
        second = await connect(self, port)
        self.assertEqual((await second.command("XYZZY"))[0], 500)
        self.assertEqual((await first.command("XYZZY"))[0], 521)
        self.assertEqual((await second.command("QUIT"))[0], 221)

    def test_zero_means_default(self):
        server = server_with(self, ["count_unrecognized_commands 0"])
        self.assertEqual(server.plugins[0].max, 4)

    def test_hook_directly(self):
        plugin = server_with(self, ["count_unrecognized_commands 3"]).plugins[0]
        txn = fake_transaction()
        self.assertEqual(plugin.hook_unrecognized_command(txn, "foo", ""), codes.DECLINED)
        self.assertEqual(plugin.hook_unrecognized_command(txn, "foo", ""), codes.DECLINED)
        self.assertEqual(plugin.hook_unrecognized_command(txn, "foo", ""), (
            codes.DENY_DISCONNECT,
            "Closing connection, 3 unrecognized commands. Perhaps you should read RFC 2821?"))
        self.assertEqual(txn.connection.notes["unrec_cmd_count"], 3)

    def test_bad_argument(self):
        e = self.assertRaises(StartupError, make_server, self, ["count_unrecognized_commands x"])
        self.assertIn("count_unrecognized_commands", str(e))


# -- help -------------------------------------------------------------------------------------

class HelpTests(unittest.TestCase):
    def setUp(self):
        self.help_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.help_dir)
        for name, text in {"mail": "MAIL FROM:<address>\r\n\r\nStarts a mail transaction.\r\n",
                           "empty": "", "quit.txt": "QUIT ends the session.\n"}.items():
            with open(os.path.join(self.help_dir, name), "w", newline="") as f:
                f.write(text)

    async def session(self, line):
        server, port = start_server(self, [line])
        return await connect(self, port)

    async def test_help_from_dir(self):
        client = await self.session("help help_dir %s" % self.help_dir)
        self.assertEqual(await client.command("HELP"),
                         (214, ["Try 'HELP COMMAND' for getting help on COMMAND"]))
        self.assertEqual(await client.command("HELP mail"),
                         (214, ["MAIL FROM:<address>", "Starts a mail transaction."]))
        self.assertEqual(await client.command("HELP MAIL"),
                         (214, ["MAIL FROM:<address>", "Starts a mail transaction."]))
        self.assertEqual(await client.command("HELP rcpt"),
                         (214, ["No help available for SMTP command: rcpt"]))
        self.assertEqual(await client.command("HELP empty"),
                         (214, ["No help available for SMTP command: empty"]))

    async def test_invalid_command_name(self):
        client = await self.session("help help_dir %s" % self.help_dir)
        self.assertEqual(await client.command("HELP ../../etc/passwd"),
                         (502, ["Invalid command name"]))
        self.assertEqual(await client.command("HELP mail from"), (502, ["Invalid command name"]))
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))  # still connected

    async def test_command_file_pairs(self):
        client = await self.session("help help_dir %s QUIT quit.txt DATA %s/mail"
                                    % (self.help_dir, self.help_dir))
        self.assertEqual(await client.command("HELP quit"), (214, ["QUIT ends the session."]))
        self.assertEqual(await client.command("HELP data"),
                         (214, ["MAIL FROM:<address>", "Starts a mail transaction."]))
        self.assertEqual(await client.command("HELP mail"),
                         (214, ["MAIL FROM:<address>", "Starts a mail transaction."]))

    async def test_pairs_without_help_dir(self):
        client = await self.session("help quit %s/quit.txt" % self.help_dir)
        self.assertEqual(await client.command("HELP quit"), (214, ["QUIT ends the session."]))
        self.assertEqual(await client.command("HELP mail"),  # no help_dir: not looked up
                         (214, ["No help available for SMTP command: mail"]))

    async def test_not_implemented(self):
        client = await self.session("help not_implemented 1")
        self.assertEqual(await client.command("HELP"), (502, ["Not implemented."]))
        self.assertEqual(await client.command("HELP mail"), (502, ["Not implemented."]))
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))

    async def test_not_implemented_0(self):
        client = await self.session("help not_implemented 0 help_dir %s" % self.help_dir)
        self.assertEqual(await client.command("HELP"),
                         (214, ["Try 'HELP COMMAND' for getting help on COMMAND"]))

    async def test_default_help_dir_is_cwd_help(self):
        cwd = os.getcwd()
        os.chdir(self.help_dir)
        self.addCleanup(os.chdir, cwd)
        os.makedirs("help")
        with open("help/vrfy", "w") as f:
            f.write("VRFY is not useful here.\n")
        client = await self.session("help")
        self.assertEqual(await client.command("HELP vrfy"), (214, ["VRFY is not useful here."]))

    def test_missing_pair_file_is_skipped(self):
        plugin = server_with(self, ["help help_dir %s noop nofile" % self.help_dir]).plugins[0]
        self.assertEqual(plugin.files, {})

    def test_bad_arguments(self):
        for line in ("help help_dir", "help help_dir /tmp/a;b", "help mail-from x",
                     "help quit ../x|y"):
            self.assertRaises(StartupError, make_server, self, [line])


# -- logging/warn -------------------------------------------------------------------------------

class WarnTests(unittest.TestCase):
    def test_levels(self):
        for arg, level in (("", 4), ("LOGINFO", 6), ("7", 7), ("debug", 7), ("0", 0),
                           ("LOGCRIT", 2)):
            server = server_with(self, [], {"logging": ("logging/warn " + arg).strip()})
            self.assertEqual(server.logging_plugins[0].log_threshold, level, arg)
        self.assertRaises(StartupError, make_server, self, [], {"logging": "logging/warn LOGNOISE"})
        self.assertRaises(StartupError, make_server, self, [], {"logging": "logging/warn 1 2"})

    def test_format_and_threshold(self):
        server = server_with(self, [], {"logging": "logging/warn LOGNOTICE"})
        plugin = server.logging_plugins[0]
        plugin.stream = io.StringIO()
        txn = fake_transaction()
        plugin.hook_logging(txn, codes.LOGNOTICE, "rcpt", "rcpt_ok", "fail: x not in rcpthosts")
        plugin.hook_logging(txn, codes.LOGINFO, "rcpt", "rcpt_ok", "not written")
        plugin.hook_logging(None, codes.LOGERROR, None, None, "no connection")
        plugin.hook_logging(txn, codes.LOGERROR, "connect", None, "core line in a hook")
        plugin.hook_logging(txn, codes.LOGERROR, None, "logging::warn", "its own line")
        self.assertEqual(plugin.stream.getvalue(),
                         "%s (rcpt) rcpt_ok: fail: x not in rcpthosts\n"
                         "no connection\n"
                         "%s (connect) core line in a hook\n"
                         % (txn.connection.id, txn.connection.id))
        self.assertTrue(server.log_enabled(codes.LOGNOTICE))
        self.assertFalse(server.log_enabled(codes.LOGINFO))

    async def test_session_to_stderr(self):
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        server, port = start_server(self, ["count_unrecognized_commands"],
                                    {"logging": "logging/warn LOGINFO"})
        client = await connect(self, port)
        conn_id = next(iter(server.sessions)).connection.id
        await client.command("NOOP")
        await client.command("FOO")
        lines = stderr.getvalue().splitlines()
        self.assertIn("%s dispatching NOOP" % conn_id, lines)
        self.assertIn("%s 250 OK" % conn_id, lines)
        matching = [l for l in lines if re.fullmatch(
            re.escape(conn_id) + r"( \(unrecognized_command\))? count_unrecognized_commands: "
            r"'foo', \(1\)", l)]
        self.assertEqual(len(matching), 1, lines)

    async def test_default_level_is_warn(self):
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        server, port = start_server(self, [], {"logging": "logging/warn"})
        client = await connect(self, port)
        await client.command("NOOP")
        self.assertNotIn("dispatching", stderr.getvalue())
        self.assertFalse(server.log_enabled(codes.LOGNOTICE))


# -- logging/devnull ------------------------------------------------------------------------------

class DevNullTests(unittest.TestCase):
    def collect_core_log(self):
        events = []

        def observer(event):
            if str(event.get("log_namespace", "")).startswith("qpsmtpd_tx"):
                events.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    async def run_session(self, files):
        events = self.collect_core_log()
        server, port = start_server(self, [], files)
        client = await connect(self, port)
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))
        self.assertEqual((await client.command("QUIT"))[0], 221)
        await client.wait_closed()
        return server, events

    async def test_builtin_logger_without_devnull(self):
        server, events = await self.run_session({"loglevel": "7"})
        self.assertTrue(any("dispatching NOOP" in e.get("line", "") for e in events))

    async def test_devnull_swallows_everything(self):
        server, events = await self.run_session({"loglevel": "7", "logging": "logging/devnull"})
        self.assertEqual(events, [])
        for level in range(8):
            self.assertFalse(server.log_enabled(level))
        self.assertEqual(server.logging_plugins[0].hook_logging(None, 0, None, None, "x"),
                         codes.DECLINED)

    def test_devnull_does_not_silence_other_logging_plugins(self):
        server = server_with(self, [], {"logging": "logging/devnull\nlogging/warn LOGINFO"})
        self.assertTrue(server.log_enabled(codes.LOGINFO))
        self.assertFalse(server.log_enabled(codes.LOGDEBUG))


# -- logging/file -----------------------------------------------------------------------------------

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


# -- the command line ---------------------------------------------------------------------------------

class CLITests(unittest.TestCase):
    def run_cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(list(argv), out=out, err=err)
        return status, out.getvalue(), err.getvalue()

    def plugin_names(self):
        names = []
        for directory in PLUGIN_DIRS:
            for root, dirs, files in os.walk(directory):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                for f in files:
                    if not f.endswith(".pyc"):
                        names.append(os.path.relpath(os.path.join(root, f), directory))
        return sorted(set(n[:-3] if n.endswith(".py") else n for n in names))

    def test_lists_every_plugin(self):
        status, out, err = self.run_cli("plugins")
        self.assertEqual((status, err), (0, ""))
        rows = dict(re.match(r"(\S+)\s+(.*)", line).groups() for line in out.splitlines())
        self.assertEqual(sorted(rows), self.plugin_names())
        self.assertEqual(rows["relay"], "decide at connect time whether the client may relay "
                                        "(sets ``connection.relay_client``).")
        self.assertEqual(rows["check_relay"], "alias of relay")
        self.assertEqual(rows["logging/devnull"], "discard every log line.")
        self.assertEqual(rows["count_unrecognized_commands"],
                         "disconnect a client after too many unknown commands.")

    def test_doc(self):
        status, out, err = self.run_cli("plugins", "doc", "help")
        self.assertEqual((status, err), (0, ""))
        with open(find_plugin_file("help", PLUGIN_DIRS)) as f:
            expected = ast.get_docstring(ast.parse(f.read()))
        self.assertEqual(out, expected + "\n")
        self.assertIn("502 Not implemented.", out)

    def test_doc_of_instance_name(self):
        self.assertEqual(self.run_cli("plugins", "doc", "relay:1")[:2],
                         self.run_cli("plugins", "doc", "relay")[:2])

    def test_doc_of_alias_follows_it(self):
        status, out, err = self.run_cli("plugins", "doc", "check_relay")
        self.assertEqual(status, 0)
        self.assertTrue(out.startswith("check_relay — the old name of ``relay``"))
        self.assertIn("\ncheck_relay is an alias of relay:\n\nrelay — decide at connect time", out)

    def test_unknown_plugin(self):
        status, out, err = self.run_cli("plugins", "doc", "no_such_plugin")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("no plugin 'no_such_plugin'", err)

    def test_plugins_are_not_executed(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(directory, "sub"))
        marker = os.path.join(directory, "ran")
        with open(os.path.join(directory, "sub", "boom"), "w") as f:
            f.write('"""boom — would write a file if run."""\nopen(%r, "w").close()\n' % marker)
        with open(os.path.join(directory, "nodoc.py"), "w") as f:
            f.write("x = 1\n")
        with open(os.path.join(directory, "broken"), "w") as f:
            f.write("def (:\n")
        status, out, err = self.run_cli("plugins", "--plugin-dir", directory)
        self.assertEqual(status, 0)
        self.assertEqual([line.split(None, 1) for line in out.splitlines()], [
            ["broken", "(unreadable: invalid syntax (broken, line 1))"],
            ["nodoc", "(no documentation)"],
            ["sub/boom", "would write a file if run."],
        ])
        status, out, err = self.run_cli("plugins", "--plugin-dir", directory, "doc", "sub/boom")
        self.assertEqual((status, out), (0, "boom — would write a file if run.\n"))
        self.assertFalse(os.path.exists(marker))

    def test_python_m(self):
        checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        result = subprocess.run([sys.executable, "-m", "qpsmtpd_tx", "plugins"], cwd=checkout,
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"(?m)^check_relay +alias of relay$")
        self.assertRegex(result.stdout, r"(?m)^logging/file +append log lines to a file")


class ReloadTests(unittest.TestCase):
    """SIGHUP (server.reload_config) makes rcpt_ok read a changed rcpthosts; a broken file is kept out."""

    def test_rcpthosts_reread_after_reload(self):
        import os
        from tests.support.harness import MemoryClient, make_server
        server = make_server(self, ["rcpt_ok"])
        path = server.config.path_of("rcpthosts")

        def rcpt(address):
            client = MemoryClient(server)
            client.command("HELO c.example")
            client.command("MAIL FROM:<a@b.example>")
            return client.command("RCPT TO:<%s>" % address)[:3]

        self.assertEqual(rcpt("u@new.example"), "550")
        with open(path, "w") as f:
            f.write("example.com\nnew.example\n")
        self.assertEqual(rcpt("u@new.example"), "550")       # cached until reload
        server.reload_config()
        self.assertEqual(rcpt("u@new.example"), "250")
        os.unlink(path)
        server.reload_config()
        self.assertEqual(rcpt("u@new.example"), "550")


class MoreRcptHostsTests(unittest.TestCase):
    """rcpt_ok's morercpthosts: a plain file or a morercpthosts.cdb (qmail's compiled form)."""

    def rcpt(self, server, address):
        from tests.support.harness import MemoryClient
        client = MemoryClient(server)
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        return client.command("RCPT TO:<%s>" % address)

    def test_cdb_and_plain_file(self):
        import os
        from qpsmtpd_tx.cdb import write_cdb
        from tests.support.harness import make_server
        server = make_server(self, ["rcpt_ok"], {"morercpthosts": "plain.example"})
        self.assertEqual(self.rcpt(server, "u@plain.example"), "250 <u@plain.example>, recipient ok\r\n")
        self.assertEqual(self.rcpt(server, "u@cdb.example"), "550 Relaying denied (#5.7.1)\r\n")
        server = make_server(self, ["rcpt_ok"])
        write_cdb(os.path.join(os.path.dirname(server.config.path_of("me")), "morercpthosts.cdb"),
                  [(b"cdb.example", b"")])
        self.assertEqual(self.rcpt(server, "u@CDB.example"), "250 <u@CDB.example>, recipient ok\r\n")
        self.assertEqual(self.rcpt(server, "u@sub.cdb.example"), "550 Relaying denied (#5.7.1)\r\n")
