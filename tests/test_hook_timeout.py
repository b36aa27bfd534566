"""Hooks that never answer: every waiting hook has a time limit, after which the client gets a
451 and the connection goes on (or, before the greeting, is closed); never a hang, never a 250
for a message whose hook timed out.

Most tests drive the real server through the in-memory transport; the hook runner's clock is a
Twisted Clock (``make_server`` sets one), so the limits expire exactly when the test says; one
test runs on a real socket with the reactor as that clock.
"""

from twisted.internet import reactor
from twisted.trial import unittest

from qpsmtpd_tx.hooks import TIMEOUT_TEXT
from qpsmtpd_tx.server import StartupError
from tests.support.harness import MemoryClient, codes_of, eventually, make_server
from tests.support.server import connect, start_server

ENVELOPE = ["EHLO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"]
MESSAGE = b"Subject: hi\r\n\r\nbody\r\n.\r\n"
REPLY_451 = "451 %s\r\n" % TIMEOUT_TEXT


def client_for(testcase, plugins, files=None):
    """A connected MemoryClient whose hook time limits run on ``client.hook_clock``."""
    server = make_server(testcase, plugins, files)
    clock = server.hooks.clock         # a Clock (see make_server)
    client = MemoryClient(server)
    client.hook_clock = clock
    return client


def notes(client):
    return client.session.connection.notes


class PhaseTests(unittest.TestCase):
    def message_waits(self, hook):
        """A client whose message met a never-answering ``hook`` and got the 451 at 30 s."""
        client = client_for(self, ["rcpt_ok", "never_answer " + hook, "scripted queue OK"],
                            {"plugin_timeout": "30"})
        for line in ENVELOPE + ["DATA"]:
            client.command(line)
        self.assertEqual(client.send(MESSAGE), "")
        client.hook_clock.advance(29.9)
        self.assertEqual(client.take(), "")
        client.hook_clock.advance(0.1)
        self.assertEqual(client.take(), REPLY_451)
        return client

    def test_connect(self):
        client = client_for(self, ["timeout=5 never_answer connect"])
        self.assertEqual(client.greeting, "")
        client.hook_clock.advance(4.9)
        self.assertEqual(client.take(), "")
        self.assertFalse(client.closed)
        client.hook_clock.advance(0.2)
        self.assertEqual(client.take(), REPLY_451)
        self.assertTrue(client.closed)
        self.assertEqual(notes(client)["never_answer_cancelled"], 1)

    def test_rcpt_then_the_connection_goes_on(self):
        client = client_for(self, ["never_answer rcpt", "rcpt_ok"], {"plugin_timeout": "30"})
        for line in ENVELOPE[:2]:
            client.command(line)
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "")
        client.hook_clock.advance(30)
        self.assertEqual(client.take(), REPLY_451)
        self.assertEqual(client.command("NOOP"), "250 OK\r\n")
        self.assertEqual(client.command("RSET"), "250 OK\r\n")
        self.assertEqual(codes_of(client.command("MAIL FROM:<c@d.example>")), [250])
        self.assertEqual(codes_of(client.command("QUIT")), [221])
        self.assertEqual(notes(client)["never_answer_cancelled"], 1)

    def test_data_post_refuses_the_message_and_queue_never_runs(self):
        client = self.message_waits("data_post")
        self.assertNotIn("scripted_calls", notes(client))
        self.assertEqual(codes_of(client.command("MAIL FROM:<c@d.example>")), [250])
        self.assertEqual(codes_of(client.command("RCPT TO:<u@example.com>")), [250])

    def test_queue_never_acknowledges_and_next_message_too(self):
        client = client_for(self, ["rcpt_ok", "timeout=60 never_answer queue", "scripted queue OK"],
                            {"plugin_timeout": "1"})
        for line in ENVELOPE + ["DATA"]:
            client.command(line)
        self.assertEqual(client.send(MESSAGE), "")
        client.hook_clock.advance(59)            # the plugin's own limit wins over plugin_timeout
        self.assertEqual(client.take(), "")
        client.hook_clock.advance(1)
        self.assertEqual(client.take(), REPLY_451)
        self.assertEqual(notes(client)["never_answer_calls"], 1)
        self.assertNotIn("scripted_calls", notes(client))       # no later queue plugin says 250
        replies = client.send(b"MAIL FROM:<c@d.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n"
                              + MESSAGE + b"QUIT\r\n")
        self.assertEqual(codes_of(replies), [250, 250, 354])
        client.hook_clock.advance(60)
        self.assertEqual(codes_of(client.take()), [451, 221])
        self.assertTrue(client.closed)

    def test_data_headers_end_closes(self):
        client = self.message_waits("data_headers_end")
        self.assertTrue(client.closed)
        self.assertNotIn("scripted_calls", notes(client))

    def test_notification_hook_is_cancelled(self):
        client = client_for(self, ["timeout=3 never_answer disconnect"])
        self.assertEqual(codes_of(client.command("QUIT")), [221])
        self.assertEqual(notes(client)["never_answer_calls"], 1)
        client.hook_clock.advance(3)
        self.assertEqual(notes(client)["never_answer_cancelled"], 1)

    def test_zero_means_no_limit(self):
        client = client_for(self, ["timeout=0 never_answer helo"], {"plugin_timeout": "1"})
        self.assertEqual(client.command("HELO x"), "")
        client.hook_clock.advance(100000)
        self.assertEqual(client.take(), "")
        self.assertEqual(client.hook_clock.getDelayedCalls(), [])
        client.session.transport.abortConnection()


class RealSocketTests(unittest.TestCase):
    async def test_queue_timeout_over_a_socket(self):
        server, port = start_server(self, ["rcpt_ok", "timeout=0.2 never_answer queue"])
        server.hooks.clock = reactor
        client = await connect(self, port)
        for line in ENVELOPE:
            self.assertEqual((await client.command(line))[0], 250)
        self.assertEqual((await client.command("DATA"))[0], 354)
        client.transport.write(MESSAGE)
        self.assertEqual(await client.reply(), (451, [TIMEOUT_TEXT]))
        self.assertEqual((await client.command("NOOP"))[0], 250)
        self.assertEqual((await client.command("QUIT"))[0], 221)
        await eventually(lambda: not server.sessions)


class ConfigTests(unittest.TestCase):
    def test_bad_plugin_options_stop_start_up(self):
        for line, expected in [
            ("timeout=soon rcpt_ok", "plugins:1: timeout=soon: not a number of seconds"),
            ("retries=3 rcpt_ok", "plugins:1: unknown plugin option 'retries'"),
            ("timeout=5", "plugins:1: no plugin name after the options"),
        ]:
            with self.assertRaises(StartupError) as caught:
                make_server(self, [line])
            self.assertIn(expected, str(caught.exception))

    def test_option_with_instance_and_arguments(self):
        server = make_server(self, ["timeout=2.5 scripted:1 rcpt DENY timeout=9"])
        plugin = server.plugins[0]
        self.assertEqual((plugin.path, plugin.hook_timeout, plugin.args),
                         ("scripted:1", 2.5, ["rcpt", "DENY", "timeout=9"]))
        self.assertEqual(server.hooks.timeout_for(plugin), 2.5)

    def test_plugin_timeout_config(self):
        self.assertEqual(make_server(self, []).hooks.default_timeout, 600)
        self.assertEqual(make_server(self, [], {"plugin_timeout": "42"}).hooks.default_timeout, 42)
        with self.assertRaises(StartupError) as caught:
            make_server(self, [], {"plugin_timeout": "-1"})
        self.assertIn("plugin_timeout:1: plugin_timeout: must be at least 0, not -1",
                      str(caught.exception))
