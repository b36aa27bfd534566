"""Tests of the earlytalker plugin and its old name check_earlytalker (a connection-level policy
plugin): the wait for early talkers at connect or DATA, its actions and reject types.

Protocol-level cases use MemoryClient (a real SMTPProtocol on an in-memory transport, with
Twisted's Clock for the plugin's wait); two cases run over a real loopback socket
(tests.support.server). Reply texts are qpsmtpd 0.94's, read from its plugins in
/usr/share/qpsmtpd/plugins and checked against the Perl server where they differ from the
documentation.
"""

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock
from twisted.trial import unittest

from qpsmtpd_tx.codes import DECLINED, DENY
from tests.support.connection_cases import EARLY, GREETING, HELO_OK, QUIT_REPLY, fake_transaction, run_lines
from tests.support.harness import MemoryClient, StartupErrorMixin, make_server
from tests.support.harness import loaded_plugin as plugin_of
from tests.support.server import SMTPClient, connect, start_server


class FakeSession:
    """Records ``wait_for_input`` calls; the test fires the Deferreds."""

    def __init__(self):
        self.waits = []

    def wait_for_input(self, seconds, clock=None):
        from twisted.internet.defer import Deferred
        d = Deferred()
        self.waits.append((seconds, d))
        return d


class EarlytalkerTests(StartupErrorMixin, unittest.TestCase):
    def client(self, plugins, files=None, ip="192.0.2.1"):
        """A MemoryClient on a server whose earlytalker waits on a Clock (``self.clock``)."""
        server = make_server(self, plugins, files)
        self.clock = Clock()
        for plugin in server.plugins:
            if "earlytalker" in plugin.name:
                plugin.clock = self.clock
        return MemoryClient(server, remote_ip=ip)

    def test_silent_client_is_greeted_after_the_wait(self):
        client = self.client(["earlytalker"])
        self.assertEqual(client.greeting, "")
        self.clock.advance(0.999)
        self.assertEqual(client.take(), "")
        self.clock.advance(0.001)
        self.assertEqual(client.take(), GREETING)
        self.assertNotIn("earlytalker", client.session.connection.notes)
        self.assertEqual(client.command("HELO x"), HELO_OK % "192.0.2.1")

    def test_talker_is_refused(self):
        client = self.client(["earlytalker"])
        self.assertEqual(client.send("EHLO spam.example\r\n"), "550 %s\r\n" % EARLY)
        self.assertTrue(client.closed)
        notes = client.session.connection.notes
        self.assertEqual((notes["earlytalker"], notes["karma"]), (1, -1))

    def test_wait_argument(self):
        client = self.client(["earlytalker wait 3.5"])
        self.clock.advance(3.4)
        self.assertEqual(client.take(), "")
        self.clock.advance(0.1)
        self.assertEqual(client.take(), GREETING)

    def test_reject_type_temp(self):
        client = self.client(["earlytalker reject_type temp"])
        self.assertEqual(client.send("HELO x\r\n"), "450 %s\r\n" % EARLY)
        self.assertTrue(client.closed)

    def test_action_deny(self):
        client = self.client(["earlytalker action deny"])
        self.assertEqual(client.send("HELO x\r\n"), "550 %s\r\n" % EARLY)

    def test_action_denysoft_is_temporary(self):
        # 0.94 answered 550 here (it ignored the action's type): an intended difference.
        client = self.client(["earlytalker action denysoft"])
        self.assertEqual(client.send("HELO x\r\n"), "450 %s\r\n" % EARLY)

    def test_action_log_only_notes_the_talker(self):
        client = self.client(["check_earlytalker action log"])
        self.assertEqual(client.send("HELO x\r\n"), GREETING + HELO_OK % "192.0.2.1")
        self.assertFalse(client.closed)
        self.assertEqual(client.session.connection.notes["earlytalker"], 1)

    def test_reject_0_wins_over_action(self):
        client = self.client(["earlytalker action deny reject 0"])
        self.assertEqual(client.send("HELO x\r\n"), GREETING + HELO_OK % "192.0.2.1")

    def test_defer_reject_rejects_each_mail(self):
        client = self.client(["earlytalker defer-reject 1", "rcpt_ok"])
        self.assertEqual(client.send("HELO x\r\n"), GREETING + HELO_OK % "192.0.2.1")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "450 %s\r\n" % EARLY)
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "450 %s\r\n" % EARLY)
        self.assertFalse(client.closed)
        self.assertEqual(client.session.connection.notes["karma"], -3)

    def test_defer_reject_lets_a_silent_client_send(self):
        client = self.client(["earlytalker defer-reject 1", "rcpt_ok"])
        self.clock.advance(1)
        self.assertEqual(client.take(), GREETING)
        self.assertEqual(run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>"])[1],
                         "250 <a@b.example>, sender OK - how exciting to get mail from you!\r\n")

    def test_defer_reject_with_action_deny_is_permanent(self):
        # 0.94 made every defer-reject temporary: an intended difference.
        client = self.client(["earlytalker action deny defer-reject 1"])
        client.send("HELO x\r\n")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "550 %s\r\n" % EARLY)

    def test_defer_reject_with_disconnect_type(self):
        client = self.client(["earlytalker defer-reject 1 reject_type temp_disconnect"])
        client.send("HELO x\r\n")
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "421 %s\r\n" % EARLY)
        self.assertTrue(client.closed)

    def test_reject_naughty_defers_to_naughty(self):
        client = self.client(["earlytalker reject naughty", "naughty reject mail"])
        self.assertEqual(client.send("HELO x\r\n"), GREETING + HELO_OK % "192.0.2.1")
        self.assertEqual(client.session.connection.notes["naughty"], EARLY)
        # earlytalker's reject_type (perm) travels with the note: no disconnect.
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "550 %s\r\n" % EARLY)
        self.assertFalse(client.closed)

    def test_check_at_data(self):
        client = self.client(["earlytalker check-at DATA", "rcpt_ok"])
        self.assertEqual(client.greeting, GREETING)     # no wait at connect
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"])
        self.assertEqual(client.command("DATA"), "")
        self.assertEqual(client.send("QUIT\r\n"), "554 %s\r\n%s" % (EARLY, QUIT_REPLY))

    def test_check_at_data_silent_client(self):
        client = self.client(["earlytalker check-at data wait 2", "rcpt_ok"])
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"])
        self.assertEqual(client.command("DATA"), "")
        self.clock.advance(2)
        self.assertEqual(client.take(), "354 go ahead\r\n")

    def test_check_at_data_temp(self):
        client = self.client(["earlytalker check-at DATA reject_type temp", "rcpt_ok"])
        run_lines(client, ["HELO x", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"])
        self.assertEqual(client.send("DATA\r\nSubject: x\r\n"), "451 %s\r\n500 Unrecognized command\r\n" % EARLY)

    def test_check_at_both(self):
        server = make_server(self, ["earlytalker check-at CONNECT check-at DATA"])
        hooks = {hook for hook in ("connect", "data", "mail")
                 if any(p.name == "earlytalker" for p, _ in server.hooks.handlers(hook))}
        self.assertEqual(hooks, {"connect", "data"})
        server = make_server(self, ["earlytalker defer-reject 1"])
        hooks = {hook for hook in ("connect", "data", "mail")
                 if any(p.name == "earlytalker" for p, _ in server.hooks.handlers(hook))}
        self.assertEqual(hooks, {"connect", "mail"})

    def test_wait_0(self):
        client = self.client(["earlytalker wait 0"])
        self.clock.advance(0)
        self.assertEqual(client.take(), GREETING)

    def test_relay_client_is_not_delayed(self):
        client = self.client(["relay", "earlytalker"], {"relayclients": "192.0.2.1"})
        self.assertEqual(client.greeting, GREETING)
        client = self.client(["relay", "earlytalker"], {"relayclients": "192.0.2.1"}, ip="192.0.2.2")
        self.assertEqual(client.greeting, "")

    def test_good_karma_is_not_delayed(self):
        plugin = plugin_of(make_server(self, ["earlytalker"]), "earlytalker")
        session = FakeSession()
        txn = fake_transaction(session=session)
        txn.connection.notes["karma_history"] = 6
        self.assertEqual(plugin.check_connect(txn), DECLINED)
        self.assertEqual(session.waits, [])
        txn.connection.notes["karma_history"] = 5
        d = plugin.check_connect(txn)
        self.assertEqual([s for s, _ in session.waits], [1.0])
        session.waits[0][1].callback(True)
        self.assertEqual(self.successResultOf(d), (DENY, EARLY))

    def test_alias_loads_and_works(self):
        client = self.client(["check_earlytalker"])
        self.assertEqual([p.name for p in client.session.server.plugins], ["check_earlytalker"])
        self.assertEqual(client.send("HELO x\r\n"), "550 %s\r\n" % EARLY)

    def test_bad_arguments(self):
        for args, expected in (
            ("wait", "arguments must be key/value pairs"),
            ("wait 1 action", "arguments must be key/value pairs"),
            ("delay 1", "unknown argument 'delay'"),
            ("wait soon", "wait must be a number of seconds, got 'soon'"),
            ("wait -1", "wait must be a number of seconds, got '-1'"),
            ("wait nan", "wait must be a number of seconds, got 'nan'"),
            ("check-at HELO", "check-at must be CONNECT or DATA, got 'HELO'"),
            ("action reject", "action must be deny, denysoft or log, got 'reject'"),
            ("reject 2", "reject must be 0, 1 or naughty, got '2'"),
            ("reject_type later", "reject_type must be one of"),
            ("loglevel NOISY", "bad loglevel 'NOISY'"),
        ):
            self.assertStartupError(["earlytalker " + args], ":1: plugin earlytalker: " + expected)
        self.assertStartupError(["check_earlytalker wait x"],
                                ":1: plugin check_earlytalker: wait must be a number")

    async def test_talker_over_tcp(self):
        server, port = start_server(self, ["earlytalker wait 30"])
        client = SMTPClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(client.close)
        client.send("EHLO early.example")
        self.assertEqual(await client.reply(), (550, [EARLY]))
        await client.wait_closed()

    async def test_silent_client_over_tcp(self):
        server, port = start_server(self, ["check_earlytalker wait 0.05", "rcpt_ok"])
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(await client.command("MAIL FROM:<a@b.example>"),
                         (503, ["please say hello first ..."]))
