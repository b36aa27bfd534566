"""Tests of the naughty plugin (a connection-level policy plugin that carries out the rejections
other plugins deferred to it): a test plugin ``mark``, written to a temporary plugin directory,
stores the deferred rejections at connect.

Protocol-level cases use MemoryClient (a real SMTPProtocol on an in-memory transport); two
cases run over a real loopback socket (tests.support.server). Reply texts are qpsmtpd 0.94's,
read from its plugins in /usr/share/qpsmtpd/plugins and checked against the Perl server where
they differ from the documentation.
"""

import os

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT
from tests.support.connection_cases import EARLY, GREETING, MESSAGE, fake_transaction
from tests.support.harness import TEST_PLUGINS, MemoryClient, StartupErrorMixin, make_server
from tests.support.harness import loaded_plugin as plugin_of
from tests.support.server import SMTPClient, connect, start_server

MARK_PLUGIN = '''"""mark — test helper: store deferred rejections at connect.

Arguments: ``[type=T] TEXT`` — texts separated by ``|``; ``ONE`` stores the number 1.
"""
from qpsmtpd_tx.codes import DECLINED
from qpsmtpd_tx.plugin import Plugin


class Mark(Plugin):
    def init(self, args):
        if args and args[0].startswith("type="):
            self.reject_type = args[0][5:]
            args = args[1:]
        self.texts = " ".join(args).split("|") if args else []

    def hook_connect(self, transaction):
        for text in self.texts:
            if text == "ONE":
                transaction.connection.notes["naughty"] = 1
            else:
                self.store_deferred_reject(transaction, text)
        return DECLINED
'''


class NaughtyTests(StartupErrorMixin, unittest.TestCase):
    def plugin_dirs(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "mark"), "w") as f:
            f.write(MARK_PLUGIN)
        return "%s\n%s\n" % (directory, TEST_PLUGINS)

    def client(self, plugins, mark="You are naughty"):
        plugins = (["mark " + mark] if mark else []) + plugins
        return MemoryClient(make_server(self, plugins, {"plugin_dirs": self.plugin_dirs()}))

    def session(self, client, upto):
        """Run the usual dialogue up to (not including) ``upto``; return its replies."""
        steps = ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA", MESSAGE]
        replies = []
        for step in steps[:steps.index(upto)]:
            replies.append(client.send(step if step == MESSAGE else step + "\r\n"))
        return replies

    def test_default_rejects_at_rcpt_and_disconnects(self):
        client = self.client(["naughty", "rcpt_ok"])
        self.assertEqual(client.greeting, GREETING)
        self.assertEqual(self.session(client, "RCPT TO:<u@example.com>")[1],
                         "250 <a@b.example>, sender OK - how exciting to get mail from you!\r\n")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "550 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_clean_connection_passes(self):
        client = self.client(["naughty", "rcpt_ok"], mark=None)
        self.session(client, "RCPT TO:<u@example.com>")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "250 <u@example.com>, recipient ok\r\n")

    def test_reject_connect(self):
        client = self.client(["naughty reject connect"])
        self.assertEqual(client.greeting, "550 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_reject_mail(self):
        client = self.client(["naughty reject mail", "rcpt_ok"])
        client.command("HELO x")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "550 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_reject_data(self):
        client = self.client(["naughty reject data", "rcpt_ok"])
        self.session(client, "DATA")
        self.assertEqual(client.command("DATA"), "554 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_reject_data_post(self):
        client = self.client(["naughty reject data_post", "rcpt_ok"])
        self.assertEqual(self.session(client, MESSAGE)[-1], "354 go ahead\r\n")
        self.assertEqual(client.send(MESSAGE), "552 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_data_post_catches_what_an_earlier_plugin_let_through(self):
        client = self.client(["rcpt_ok", "naughty"])
        replies = self.session(client, MESSAGE)
        self.assertEqual(replies[2:], ["250 <u@example.com>, recipient ok\r\n", "354 go ahead\r\n"])
        self.assertEqual(client.send(MESSAGE), "552 You are naughty\r\n")

    def test_reject_type_argument(self):
        client = self.client(["naughty reject_type temp", "rcpt_ok"])
        self.session(client, "RCPT TO:<u@example.com>")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "450 You are naughty\r\n")
        self.assertFalse(client.closed)
        client = self.client(["naughty reject mail reject_type temp_disconnect", "rcpt_ok"])
        client.command("HELO x")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "421 You are naughty\r\n")
        self.assertTrue(client.closed)

    def test_marking_plugins_type_wins(self):
        client = self.client(["naughty reject_type perm", "rcpt_ok"], mark="type=temp_disconnect go away")
        self.session(client, "RCPT TO:<u@example.com>")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "421 go away\r\n")
        self.assertTrue(client.closed)

    def test_several_texts_make_a_multiline_reply(self):
        client = self.client(["naughty", "rcpt_ok"], mark="listed in one|listed in two")
        self.assertEqual(client.session.connection.notes["naughty"], "listed in one\r\nlisted in two")
        self.session(client, "RCPT TO:<u@example.com>")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "550-listed in one\r\n550 listed in two\r\n")

    def test_note_without_text(self):
        client = self.client(["naughty", "rcpt_ok"], mark="ONE")
        self.session(client, "RCPT TO:<u@example.com>")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "550 delivery denied\r\n")

    def test_hook_directly(self):
        server = make_server(self, ["naughty reject_type soft"])
        plugin = plugin_of(server, "naughty")
        txn = fake_transaction()
        self.assertEqual(plugin.naughty(txn), DECLINED)
        txn.connection.notes["naughty"] = "bad"
        self.assertEqual(plugin.naughty(txn), (DENYSOFT, "bad"))
        txn.connection.notes["naughty_reject_type"] = "disconnect"
        self.assertEqual(plugin.naughty(txn), (DENY_DISCONNECT, "bad"))
        txn.connection.notes["naughty_reject_type"] = "perm"
        self.assertEqual(plugin.naughty(txn), (DENY, "bad"))

    def test_registers_the_chosen_hook_and_data_post(self):
        for line, expected in (("naughty", {"rcpt", "data_post"}),
                               ("naughty reject CONNECT", {"connect", "data_post"}),
                               ("naughty reject data_post", {"data_post"})):
            server = make_server(self, [line])
            hooks = {h for h in ("connect", "mail", "rcpt", "data", "data_post")
                     if any(p.name == "naughty" for p, _ in server.hooks.handlers(h))}
            self.assertEqual(hooks, expected, line)
            self.assertEqual(len(server.hooks.handlers("data_post")), 1)

    def test_bad_arguments(self):
        self.assertStartupError(["naughty reject helo"],
                                ":1: plugin naughty: reject must be one of connect, mail, rcpt, data, data_post, got 'helo'")
        self.assertStartupError(["naughty reject_type maybe"], ":1: plugin naughty: reject_type must be one of")
        self.assertStartupError(["naughty when rcpt"], ":1: plugin naughty: unknown argument 'when'")
        self.assertStartupError(["naughty reject"], ":1: plugin naughty: arguments must be key/value pairs")

    async def test_over_tcp_with_earlytalker(self):
        server, port = start_server(self, ["earlytalker wait 30 reject naughty", "naughty reject mail"])
        client = SMTPClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(client.close)
        client.send("HELO early.example")
        self.assertEqual((await client.reply())[0], 220)
        self.assertEqual((await client.reply())[0], 250)
        self.assertEqual(await client.command("MAIL FROM:<a@b.example>"), (550, [EARLY]))
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))

    async def test_over_tcp(self):
        server, port = start_server(self, ["mark go away|and stay away", "naughty reject mail"],
                                    {"plugin_dirs": self.plugin_dirs()})
        client = await connect(self, port)
        await client.command("HELO x")
        self.assertEqual(await client.command("MAIL FROM:<a@b.example>"), (550, ["go away", "and stay away"]))
        await client.wait_closed()
