"""Plugins from installed packages (entry points ``qpsmtpd_tx.plugins``), end to end.

The example package ``tests/packages/qptx_example`` (the one the README's "Publishing a plugin"
shows) and ``tests/packages/qptx_twin`` (names that clash) are really built and installed with
pip, into directories of their own (``pip install --target``): the shared virtualenv is not
changed. The build uses the virtualenv's setuptools when it can build wheels (``wheel``
installed, or setuptools 70.1 and later: ``--no-build-isolation --no-index``); otherwise pip
fetches the build back end from the configured package index, as in any ``pip install`` of a
source tree. Then the real command line and a real ``twistd`` run
with those directories on PYTHONPATH.
"""

import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
from importlib.util import find_spec

from twisted.trial import unittest

from tests.support.harness import write_config
from tests.support.processes import CHECKOUT, start_twistd
from tests.test_cli import run_cli

PACKAGES = os.path.join(CHECKOUT, "tests", "packages")


def _offline_build_options():
    """pip options that build with the virtualenv's own setuptools, if it can build wheels."""
    try:
        can_build = find_spec("wheel") or find_spec("setuptools.command.bdist_wheel")
    except ImportError:
        can_build = None
    return ["--no-build-isolation", "--no-index"] if can_build else []


def pip_install(name, target):
    """Build and install ``tests/packages/NAME`` into ``target`` (built from a copy: a build
    writes into its source tree)."""
    with tempfile.TemporaryDirectory(prefix="qptx-build-") as build:
        source = shutil.copytree(os.path.join(PACKAGES, name), os.path.join(build, name))
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
             "--disable-pip-version-check", "--target", target, source]
            + _offline_build_options(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    if result.returncode:
        raise RuntimeError("pip install %s failed:\n%s" % (name, result.stdout.decode()))


class PackagedPluginTests(unittest.TestCase):
    #: where the packages were installed, once per test run (under trial's temporary directory)
    installed = {}

    def setUp(self):
        if not self.installed:
            root = os.path.abspath("qptx-packages")
            for name in ("qptx_example", "qptx_twin"):
                pip_install(name, os.path.join(root, name))
                self.installed[name] = os.path.join(root, name)
        self.example = self.installed["qptx_example"]
        self.twin = self.installed["qptx_twin"]

    def use_packages(self, *directories):
        """Put ``directories`` on the PYTHONPATH of the processes this test starts."""
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(directories + ((old,) if old else ()))
        if old is None:
            self.addCleanup(os.environ.pop, "PYTHONPATH", None)
        else:
            self.addCleanup(os.environ.__setitem__, "PYTHONPATH", old)

    def check_config(self, plugins, files=None):
        directory = write_config(os.path.abspath(self.mktemp()), plugins, files)
        result = run_cli(["check-config", "--config", directory])
        return result.returncode, result.stdout.decode(), os.path.join(directory, "plugins")

    def test_listed_beside_the_bundled_plugins(self):
        self.use_packages(self.example)
        result = run_cli(["plugins"])
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        rows = {line.split()[0]: line for line in result.stdout.decode().splitlines()}
        self.assertRegex(rows["sender_tld"], r"^sender_tld +\[qptx-example 0\.1\] refuse senders "
                                             r"whose domain ends in one of the given top-level")
        self.assertIn("rcpt_ok", rows)

    def test_documentation(self):
        self.use_packages(self.example)
        result = run_cli(["plugins", "doc", "sender_tld"])
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        text = result.stdout.decode()
        self.assertTrue(text.startswith("sender_tld: plugin of package qptx-example 0.1 "
                                        "(qptx_example:SenderTld)\n\nsender_tld — refuse"), text)
        self.assertIn("Arguments: the TLDs to refuse", text)

    def test_loaded_by_name_in_a_real_server(self):
        self.use_packages(self.example)
        config = os.path.abspath(self.mktemp())
        maildir = os.path.join(config, "maildir")
        write_config(config, ["sender_tld invalid test", "rcpt_ok", "queue/maildir %s" % maildir])
        _, port, _ = start_twistd(self, config)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example")
            self.assertEqual(client.mail("a@host.invalid"),
                             (550, b"mail from .invalid domains is refused"))
            self.assertEqual(client.mail("a@b.example")[0], 250)
            self.assertEqual(client.rcpt("u@example.com")[0], 250)
            self.assertEqual(client.data(b"Subject: t\r\n\r\nhi\r\n")[0], 250)
        self.assertEqual(len(os.listdir(os.path.join(maildir, "new"))), 1)

    def test_a_name_taken_twice_is_a_startup_error_naming_both(self):
        self.use_packages(self.example, self.twin)
        status, out, plugins = self.check_config(["sender_tld invalid", "rcpt_ok"])
        self.assertEqual(status, 1)
        lines = out.splitlines()
        self.assertEqual(lines[0], (
            "%s:1: plugin sender_tld: 2 plugins are named sender_tld: package qptx-example 0.1 "
            "(qptx_example:SenderTld) and package qptx-twin 0.2 (qptx_twin:Twin); uninstall a "
            "package, or load a package's plugin by its Python path (module.Class) instead"
            % plugins))
        self.assertRegex(lines[1], r"^%s:2: plugin rcpt_ok: 2 plugins are named rcpt_ok: the "
                                   r"plugin file /\S+/plugins/rcpt_ok(\.py)? and package qptx-twin "
                                   r"0\.2 \(qptx_twin:Twin\); " % plugins)
        self.assertEqual(len(lines), 2)
        # the listing says so too, and the documentation names both
        listing = run_cli(["plugins"]).stdout.decode()
        self.assertIn("[qptx-twin 0.2] NAME TAKEN TWICE, cannot be loaded by this name; ", listing)
        doc = run_cli(["plugins", "doc", "sender_tld"])
        self.assertEqual(doc.returncode, 1)
        self.assertIn(b"2 plugins are named sender_tld: package qptx-example", doc.stderr)

    def test_a_package_replaces_a_perl_plugin_of_the_same_name(self):
        self.use_packages(self.twin)
        perl_dir = os.path.abspath(self.mktemp())
        os.makedirs(perl_dir)
        with open(os.path.join(perl_dir, "perl_only"), "w") as f:
            f.write("#!perl -w\nuse strict;\nsub register { }\n")
        status, out, _ = self.check_config(["perl_only", "sender_tld"],
                                           {"plugin_dirs": perl_dir})
        self.assertEqual((status, out.splitlines()[-1]), (0, "qpsmtpd-tx: %s: no problems found"
                                                          % os.path.dirname(_)))
        # and the listing does not call the name taken twice (the loader's rule)
        listing = run_cli(["plugins", "--plugin-dir", perl_dir]).stdout.decode()
        row = [line for line in listing.splitlines()
               if line.startswith("perl_only ") and "[qptx-twin 0.2] " in line]
        self.assertEqual(len(row), 1, listing)
        self.assertNotIn("NAME TAKEN TWICE", row[0])


class ReadmeTests(unittest.TestCase):
    def test_readme_shows_the_example_package_as_it_is(self):
        """The README's "Publishing a plugin" shows the two files of the tested package."""
        with open(os.path.join(CHECKOUT, "README.md")) as f:
            readme = f.read()
        section = readme.split("\n## Publishing a plugin\n", 1)[1].split("\n## ", 1)[0]
        blocks = re.findall(r"^```(\w+)\n(.*?)^```$", section, re.M | re.S)
        files = {"toml": "pyproject.toml", "python": "qptx_example.py"}
        self.assertEqual([kind for kind, _ in blocks], ["toml", "python"])
        for kind, text in blocks:
            with open(os.path.join(PACKAGES, "qptx_example", files[kind])) as f:
                self.assertEqual(text, f.read(), files[kind])
