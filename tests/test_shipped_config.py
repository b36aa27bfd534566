"""The shipped ``etc/``: it starts with no other service, and its ``plugins`` file names every
plugin there is (loaded, or commented out in the group of what it needs)."""

import os
import re

from twisted.internet.task import Clock
from twisted.trial import unittest

from qpsmtpd_tx.config import Config
from qpsmtpd_tx.paths import SOURCE_ROOT, default_plugin_dirs
from qpsmtpd_tx.server import SMTPServer
from qpsmtpd_tx.syncer import SYNCER
from tests.support.harness import MemoryClient, codes_of, eventually

ETC = os.path.join(SOURCE_ROOT, "etc")


def plugin_names():
    """Every plugin file under our plugin directory, as a ``plugins`` line names it."""
    root = default_plugin_dirs()[0]
    names = []
    for directory, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py") and not name.startswith((".", "_")):
                names.append(os.path.relpath(os.path.join(directory, name[:-3]), root))
    return sorted(names)


class ShippedPluginsTests(unittest.TestCase):
    async def test_loads_and_answers_without_other_services(self):
        # The shipped config, with its relative Maildir and spool under the test's directory.
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        cwd = os.getcwd()
        os.chdir(work)
        self.addCleanup(os.chdir, cwd)
        config = Config(config_dir=ETC, qmail_dir=work, environ={})
        config.get_scalar("me")
        server = SMTPServer(config)
        server._spool_dir = os.path.join(work, "spool")
        server.load_plugins()
        self.addCleanup(SYNCER.close)        # the Maildir delivery child
        server.hooks.clock = Clock()         # no hook time limit left on the reactor
        self.assertTrue(server.core_limits_ip)            # --max-from-ip works without hosts_allow
        client = MemoryClient(server, remote_ip="127.0.0.1")
        self.assertEqual(codes_of(client.greeting), [220])
        replies = client.send(b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\n"
                              b"DATA\r\n")
        self.assertEqual(codes_of(replies), [250, 250, 250, 354])
        client.send(b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n")      # queue/maildir's child writes it
        await eventually(lambda: b"221 " in client.transport.value())
        self.assertEqual(codes_of(client.take()), [250, 221])
        self.assertEqual(len(os.listdir(os.path.join(work, "var", "maildir", "new"))), 1)
        # a plugin that fails while deciding on a message refuses it for now (plugin_errors)
        self.assertTrue(server.hooks.defer_on_error)

    def test_every_plugin_is_named(self):
        with open(os.path.join(ETC, "plugins")) as f:
            text = f.read()
        named = set(re.findall(r"^#? ?([a-z_]+(?:/[a-z0-9_-]+)?)(?=\s|$)", text, re.M))
        named |= set(re.findall(r"\b(logging/[a-z_]+)", text))
        named |= set(re.findall(r"old name: ([a-z_]+)", text))
        if "async/NAME plugin names" in text:
            named |= {name for name in plugin_names() if name.startswith("async/")}
        missing = [name for name in plugin_names() if name not in named]
        self.assertEqual(missing, [])
