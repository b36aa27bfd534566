"""The ``qpsmtpd-tx plugins`` command line: the listing of every plugin with its summary,
``plugins doc NAME`` (instances, aliases, unknown names), plugin files read and never run;
through cli.main in process, and once as ``python -m qpsmtpd_tx plugins``.
"""

import ast
import io
import os
import re
import subprocess
import sys

from twisted.trial import unittest

from qpsmtpd_tx import cli
from qpsmtpd_tx.loader import find_plugin_file
from qpsmtpd_tx.paths import default_plugin_dirs

PLUGIN_DIRS = default_plugin_dirs()


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
