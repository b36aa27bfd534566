"""The core's config items: one table, read through it, every bad value named by file and line,
and printed by ``qpsmtpd-tx config-items``."""

import ast
import glob
import os

from twisted.trial import unittest

from qpsmtpd_tx import codes, config_items
from qpsmtpd_tx.config import Config
from qpsmtpd_tx.server import config_problems
from tests.support.harness import MemoryClient, capture_log, make_server, write_config
from tests.test_cli import run_cli

PACKAGE = os.path.dirname(os.path.abspath(config_items.__file__))


class TableTests(unittest.TestCase):
    def test_every_item_is_documented(self):
        for name, item in config_items.ITEMS.items():
            self.assertEqual(item.name, name)
            self.assertTrue(item.doc, name)
            self.assertTrue(item.shown_default(), name)

    def test_core_modules_read_config_files_only_through_the_table(self):
        """No module of the core but the reader and the table names a config file it reads."""
        readers = {"get", "get_lines", "get_scalar", "get_int"}
        found = []
        for path in glob.glob(os.path.join(PACKAGE, "*.py")):
            if os.path.basename(path) in ("config.py", "config_items.py"):
                continue
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in readers and node.args
                        and isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[0].value, str)
                        and "config" in (getattr(node.func.value, "attr", None),
                                         getattr(node.func.value, "id", None))):
                    found.append("%s:%d: %s" % (os.path.basename(path), node.lineno,
                                                node.args[0].value))
        self.assertEqual(found, [])


class ReadTests(unittest.TestCase):
    def test_values_reach_the_server(self):
        server = make_server(self, ["rcpt_ok"], {
            "databytes": "1000", "timeoutsmtpd": "77", "timeout": "99", "spool_perms": "0750",
            "tls_before_auth": "1", "recipient_policy": "Strictest", "loglevel": "LOGINFO",
            "blocking_threads": "3", "max_recipients": "0"})
        self.assertEqual((server.databytes, server.timeout, server.spool_perms,
                          server.tls_before_auth, server.recipient_policy, server.loglevel,
                          server.blocking_threads, server.max_recipients, server.me),
                         (1000, 77, 0o750, True, "strictest", codes.LOGINFO, 3, 0,
                          "mx.example.org"))

    def test_defaults(self):
        server = make_server(self, ["rcpt_ok"])
        for name in ("databytes", "shutdown_timeout", "size_threshold", "plugin_timeout",
                     "command_deadline", "data_deadline", "auth_max_failures",
                     "auth_failure_delay", "blocking_threads", "max_recipients"):
            self.assertEqual(getattr(server, name), config_items.ITEMS[name].default, name)
        self.assertEqual((server.timeout, server.tls_before_auth, server.loglevel,
                          server.spool_perms, server.recipient_policy),
                         (1200, False, codes.LOGWARN, 0o700, "split"))

    def test_every_bad_value_is_a_problem_with_file_and_line(self):
        bad = {"databytes": "lots", "max_recipients": "-1", "spool_perms": "rwx",
               "recipient_policy": "loosest", "loglevel": "LOUD", "blocking_threads": "0",
               "timeout": "# seconds\n1200s"}
        directory = write_config(os.path.abspath(self.mktemp()), ["rcpt_ok"], bad)
        config = Config(config_dir=directory, qmail_dir=directory, environ={})
        problems = config_problems(config)
        at = lambda name, line=1: "%s:%d: " % (os.path.join(directory, name), line)  # noqa: E731
        self.assertEqual(sorted(problems), sorted([
            at("databytes") + "databytes: not an integer: 'lots'",
            at("max_recipients") + "max_recipients: must be at least 0, not -1",
            at("spool_perms") + "spool_perms must be an octal mode, got 'rwx'",
            at("recipient_policy") + "recipient_policy must be one of split, group, "
                                     "strictest, "
                                     "not 'loosest'",
            at("loglevel") + "loglevel: unknown log level 'LOUD' (0-7 or a name such as LOGWARN)",
            at("blocking_threads") + "blocking_threads: must be at least 1, not 0",
            at("timeout", 2) + "timeout: not an integer: '1200s'",
        ]))

    def test_greeting_is_read_for_each_connection(self):
        server = make_server(self, ["rcpt_ok"], {"smtpgreeting": "first greeting"})
        self.assertEqual(MemoryClient(server).greeting, "220 first greeting ESMTP\r\n")
        with open(os.path.join(server.config.config_dir, "smtpgreeting"), "w") as f:
            f.write("second ESMTP greeting\n")
        server.reload_config()
        self.assertEqual(MemoryClient(server).greeting, "220 second ESMTP greeting\r\n")

    def test_a_greeting_file_that_cannot_be_read(self):
        """At start-up, an error naming the file and line; made unreadable later (then SIGHUP),
        the default greeting, logged once (not at each connection), until it can be read."""
        directory = os.path.abspath(self.mktemp())
        write_config(directory, ["rcpt_ok"], {"smtpgreeting": "$include smtpgreeting\n"})
        problems = config_problems(Config(directory))
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("smtpgreeting:1: circular $include", str(problems[0]))
        server = make_server(self, ["rcpt_ok"], {"smtpgreeting": "first greeting"})
        log = capture_log(self, server)
        path = os.path.join(server.config.config_dir, "smtpgreeting")
        with open(path, "w") as f:
            f.write("$include smtpgreeting\n")
        server.reload_config()
        for _ in range(3):
            self.assertTrue(MemoryClient(server).greeting.startswith("220 mx.example.org ESMTP"))
        errors = [m for level, m in log if level <= codes.LOGERROR]
        self.assertEqual(len(errors), 1, log)
        self.assertTrue(errors[0].startswith(
            "using the default smtpgreeting: %s:1: circular $include" % path), errors)
        with open(path, "w") as f:
            f.write("fixed greeting\n")
        server.reload_config()
        self.assertEqual(MemoryClient(server).greeting, "220 fixed greeting ESMTP\r\n")


class CommandTests(unittest.TestCase):
    """``qpsmtpd-tx config-items``, run as a real process."""

    def test_defaults_listed(self):
        result = run_cli(["config-items"])
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        lines = result.stdout.decode().splitlines()
        self.assertEqual(lines[0].split(), ["ITEM", "DEFAULT", "DESCRIPTION"])
        self.assertEqual([line.split()[0] for line in lines[1:]], list(config_items.ITEMS))
        rows = {line.split()[0]: line.split() for line in lines}
        self.assertEqual(rows["max_recipients"][:2], ["max_recipients", "1000"])

    def test_values_of_a_config_dir_and_their_files(self):
        directory = write_config(os.path.abspath(self.mktemp()), ["rcpt_ok"],
                                 {"databytes": "# the limit\n2000"})
        result = run_cli(["config-items", "--config", directory])
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        rows = {line.split()[0]: line.split() for line in result.stdout.decode().splitlines()}
        self.assertEqual(rows["databytes"][:3],
                         ["databytes", "2000", os.path.join(directory, "databytes") + ":2"])
        self.assertEqual(rows["me"][:3], ["me", "mx.example.org",
                                          os.path.join(directory, "me") + ":1"])
        self.assertEqual(rows["max_recipients"][:3], ["max_recipients", "1000", "default"])

    def test_bad_value_reported(self):
        directory = write_config(os.path.abspath(self.mktemp()), ["rcpt_ok"],
                                 {"max_recipients": "many"})
        result = run_cli(["config-items", "--config", directory])
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.decode(), "qpsmtpd-tx: %s:1: max_recipients: not an "
                         "integer: 'many'\n" % os.path.join(directory, "max_recipients"))
        self.assertIn("default (bad value)", result.stdout.decode())
