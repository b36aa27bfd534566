"""The shipped test kit, qpsmtpd_tx.testing: its assertions can fail, and the README's example
plugin and its test run outside the checkout, with the installed package only."""

import os
import re
import shutil
import site
import subprocess
import sys
import tempfile

from twisted.trial import unittest

from qpsmtpd_tx import testing
from qpsmtpd_tx.codes import LOGCRIT, LOGDEBUG, LOGINFO
from qpsmtpd_tx.plugin import Plugin
from tests.support.harness import TEST_PLUGINS, MemoryClient, make_server

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(CHECKOUT, "README.md")


def readme_files(section="## Writing a plugin"):
    """``{file name: text}`` of the Python blocks of a README section whose first line is
    ``# file: NAME``."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index("\n%s\n" % section)
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"^```python\n# file: (\S+)\n(.*?)^```$", text[start:end], re.S | re.M)
    return {name: body for name, body in blocks}


def clean_env():
    """The environment without PYTHONPATH or a qpsmtpd config: imports come from the install."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QPSMTPD_CONFIG")}
    return env


def installed_root(python, cwd):
    """The directory above the ``qpsmtpd_tx`` that ``python`` imports when run in ``cwd``."""
    return subprocess.run(
        [python, "-c", "import os, qpsmtpd_tx; "
                       "print(os.path.dirname(os.path.dirname(os.path.abspath(qpsmtpd_tx.__file__))))"],
        cwd=cwd, env=clean_env(), capture_output=True, text=True, check=True).stdout.strip()


def python_with_this_checkout(directory):
    """This interpreter if its installed qpsmtpd_tx is this checkout (``pip install -e .``, as
    in CI); else (a git worktree beside the checkout the venv was made from) a new venv in
    ``directory`` holding what ``pip install -e .`` would add, a ``.pth`` naming this checkout,
    and seeing this interpreter's packages (Twisted, …) the same way."""
    if os.path.realpath(installed_root(sys.executable, directory)) == os.path.realpath(CHECKOUT):
        return sys.executable
    venv = os.path.join(directory, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(purelib, "qpsmtpd_tx_checkout.pth"), "w") as f:
        f.write("\n".join([CHECKOUT] + site.getsitepackages()) + "\n")
    return python


class ReadmeExampleTests(unittest.TestCase):
    def test_readme_has_the_plugin_and_its_test(self):
        self.assertEqual(sorted(readme_files()), ["check_sender_tld.py", "test_check_sender_tld.py"])

    def test_example_runs_outside_the_checkout(self):
        # trial's own temp dir is inside the checkout: this one must not be
        directory = tempfile.mkdtemp(prefix="qptx-kit-")
        self.addCleanup(shutil.rmtree, directory, True)
        project = os.path.join(directory, "my_plugins")
        os.mkdir(project)
        for name, text in readme_files().items():
            with open(os.path.join(project, name), "w") as f:
                f.write(text)
        python = python_with_this_checkout(directory)
        self.assertEqual(os.path.realpath(installed_root(python, project)), os.path.realpath(CHECKOUT))
        run = subprocess.run([python, "-m", "twisted.trial", "test_check_sender_tld"], cwd=project,
                             env=clean_env(), capture_output=True, text=True, timeout=300)
        output = run.stdout + run.stderr
        self.assertEqual(run.returncode, 0, output)
        self.assertRegex(output, r"Ran [1-9][0-9]* tests?.*\n\s*\nPASSED", output)


class KitAssertionTests(unittest.TestCase):
    """The kit's assertions fail when they should (a test kit that cannot fail is no test)."""

    def test_startup_error_fails_when_the_server_starts(self):
        with self.assertRaises(self.failureException):
            testing.startup_error(self, ["rcpt_ok"])

    def test_assert_startup_error_checks_every_part(self):
        message = testing.assertStartupError(self, ["rcpt_ok extra"], [":1: plugin rcpt_ok: ", "takes no"])
        self.assertIn("takes no arguments", message)
        with self.assertRaises(self.failureException):
            testing.assertStartupError(self, ["rcpt_ok extra"], [":1: plugin rcpt_ok: ", "elsewhere"])

    def test_plugin_dirs_come_before_the_bundled_plugins(self):
        with self.assertRaises(self.failureException):
            testing.startup_error(self, ["scripted rcpt OK"], plugin_dirs=[TEST_PLUGINS])
        self.assertIn("plugin not found", testing.startup_error(self, ["scripted rcpt OK"]))

    def test_loaded_plugin(self):
        server = make_server(self, ["scripted connect DECLINED", "rcpt_ok"])
        self.assertIs(testing.loaded_plugin(server, "rcpt_ok"), server.plugins[1])
        self.assertRaises(LookupError, testing.loaded_plugin, server, "queue/maildir")

    def test_plugin_module_and_fake_transaction(self):
        module = testing.plugin_module("rcpt_ok")
        self.assertTrue(any(isinstance(v, type) and issubclass(v, Plugin) and v is not Plugin
                            for v in vars(module).values()))
        self.assertRaises(LookupError, testing.plugin_module, "no/such_plugin")
        txn = testing.fake_transaction("192.0.2.7", local_ip="192.0.2.25")
        self.assertEqual((txn.connection.remote_ip, txn.connection.local_ip),
                         ("192.0.2.7", "192.0.2.25"))

    async def test_wait_for(self):
        self.assertFalse(await testing.wait_for(lambda: False, timeout=0.05))
        calls = []
        self.assertTrue(await testing.wait_for(lambda: calls.append(1) or len(calls) > 2))
        with self.assertRaises(AssertionError):
            await testing.eventually(lambda: False, timeout=0.05)

    def test_capture_log(self):
        server = make_server(self, ["scripted connect DECLINED", "rcpt_ok"])
        plain = testing.capture_log(self, server)
        server.log(LOGINFO, "one")
        named = testing.capture_log(self, server, plugin_names=True)
        server.log(LOGINFO, "two", plugin=server.plugins[0])
        self.assertEqual(plain, [(LOGINFO, "one")])
        self.assertEqual(named, [(LOGINFO, "scripted", "two")])

    def test_capture_log_sees_the_hook_lines_of_a_chain_built_before_it(self):
        # the server's chain (and its hook registry) exists before the capture starts: the
        # registry's own lines (a hook's result, at LOGDEBUG; a hook that raised) are caught
        server = make_server(self, ["scripted mail DENY no thanks", "rcpt_ok"],
                             plugin_dirs=[TEST_PLUGINS])
        lines = testing.capture_log(self, server)
        client = MemoryClient(server)
        client.command("HELO c.example")
        self.assertTrue(client.command("MAIL FROM:<a@b.example>").startswith("550 "))
        self.assertIn((LOGDEBUG, "Plugin scripted, hook mail returned DENY, no thanks"), lines)

    def test_capture_log_sees_a_hook_failure_of_a_chain_built_before_it(self):
        server = make_server(self, ["scripted rcpt OK raise", "rcpt_ok"],
                             plugin_dirs=[TEST_PLUGINS])
        lines = testing.capture_log(self, server)
        client = MemoryClient(server)
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        client.command("RCPT TO:<me@example.com>")
        self.assertTrue([text for level, text in lines
                         if level == LOGCRIT and text.startswith("FATAL PLUGIN ERROR")], lines)
