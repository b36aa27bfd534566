"""Tests of the help plugin: HELP in sessions with a real server over a loopback socket
(tests.support.server), the help files written in a temp dir. Reply texts are qpsmtpd 0.94's
(read from /usr/share/qpsmtpd/plugins and Qpsmtpd/SMTP.pm).
"""

import os

from twisted.trial import unittest

from qpsmtpd_tx.server import StartupError
from tests.support.harness import make_server
from tests.support.plugin_server import server_with
from tests.support.server import connect, start_server


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
