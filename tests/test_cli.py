"""The ``qpsmtpd-tx`` command line, run as a real process (``python -m qpsmtpd_tx``)."""

import os
import subprocess
import sys

from twisted.trial import unittest

from tests.support.harness import write_config
from tests.support.processes import CHECKOUT, server_env


def run_cli(args, **kwargs):
    """Run ``python -m qpsmtpd_tx ARGS`` from the checkout; the CompletedProcess."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "qpsmtpd_tx"] + list(args), cwd=CHECKOUT,
                          env=server_env(), timeout=60, **kwargs)


class BrokenPipeTests(unittest.TestCase):
    """``qpsmtpd-tx plugins doc X | head``: the reader going away is not an error to report."""

    def run_into_closed_pipe(self, args):
        read_end, write_end = os.pipe()
        os.close(read_end)   # as `head` does once it has its lines: every write now fails
        try:
            return run_cli(args, stdout=write_end)
        finally:
            os.close(write_end)

    def test_doc_into_closed_pipe(self):
        result = self.run_into_closed_pipe(["plugins", "doc", "aliases"])
        self.assertEqual(result.stderr, b"")
        self.assertNotEqual(result.returncode, 0)

    def test_listing_into_closed_pipe(self):
        result = self.run_into_closed_pipe(["plugins"])
        self.assertEqual(result.stderr, b"")


class CheckConfigTests(unittest.TestCase):
    """``qpsmtpd-tx check-config``: every problem, without starting and without creating anything."""

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.config = os.path.join(self.dir, "config")
        self.maildir = os.path.join(self.dir, "maildir")

    def test_good_config(self):
        write_config(self.config, ["rcpt_ok", "queue/maildir %s" % self.maildir])
        result = run_cli(["check-config", "--config", self.config])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.decode(), "qpsmtpd-tx: %s: no problems found\n" % self.config)
        # queue/maildir's init ran in check-only mode: no Maildir, no spool directory
        self.assertEqual(os.listdir(self.dir), ["config"])
        self.assertFalse(os.path.exists(os.path.join(self.config, "spool")))

    def test_every_problem_listed(self):
        write_config(self.config, ["rcpt_ok extra", "queue/maildir %s" % self.maildir,
                                   "no_such_plugin", "check_badmailfrom_patterns"],
                     {"badmailfrom_patterns": "(unclosed\n", "recipient_policy": "maybe"})
        env = dict(server_env(), QPSMTPD_CONFIG=self.config)   # as qpsmtpd: the environment
        result = subprocess.run([sys.executable, "-m", "qpsmtpd_tx", "check-config"], cwd=CHECKOUT,
                                env=env, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        lines = result.stdout.decode().splitlines()
        plugins = os.path.join(self.config, "plugins")
        self.assertEqual(len(lines), 4, lines)
        self.assertTrue(lines[0].startswith(os.path.join(self.config, "recipient_policy") + ":1: "))
        self.assertTrue(lines[1].startswith(plugins + ":1: plugin rcpt_ok: takes no arguments"))
        self.assertTrue(lines[2].startswith(plugins + ":3: plugin no_such_plugin: plugin not found"))
        self.assertTrue(lines[3].startswith(plugins + ":4: plugin check_badmailfrom_patterns: "))
        self.assertIn("badmailfrom_patterns:1", lines[3])
        self.assertEqual(result.stderr.decode(), "qpsmtpd-tx: 4 problems in %s\n" % self.config)
        self.assertFalse(os.path.exists(self.maildir))

    def test_plugins_see_check_only(self):
        plugin_dir = os.path.join(self.dir, "plugins")
        os.makedirs(plugin_dir)
        with open(os.path.join(plugin_dir, "sidefx"), "w") as f:
            f.write('"""sidefx — records how its init was called."""\n'
                    "from qpsmtpd_tx.plugin import Plugin\n"
                    "class SideEffects(Plugin):\n"
                    "    def init(self, args):\n"
                    "        with open(args[0], 'w') as f:\n"
                    "            f.write('check_only=%s' % self.server.check_only)\n")
        marker = os.path.join(self.dir, "marker")
        write_config(self.config, ["sidefx %s" % marker], {"plugin_dirs": plugin_dir})
        result = run_cli(["check-config", "--config", self.config])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        with open(marker) as f:
            self.assertEqual(f.read(), "check_only=True")

    def test_missing_directory(self):
        result = run_cli(["check-config", "--config", self.config])
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.decode(),
                         "qpsmtpd-tx: config directory %s: no such directory\n" % self.config)
