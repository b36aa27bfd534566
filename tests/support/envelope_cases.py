"""What the tests of more than one envelope plugin share (tests/plugins/test_helo.py,
test_badmailfrom.py, test_badmailfromto.py, test_bogus_bounce.py,
test_dont_require_anglebrackets.py, test_parse_addr_withhelo.py, test_badrcptto.py,
test_rcpt_regexp.py, test_rcpt_map.py, test_rcpt_ok.py): qpsmtpd 0.94's replies, a test case
with a client on a fresh server (in memory) and one with sessions over a loopback socket, and
the recipients whose local part routes the mail elsewhere.
"""

from twisted.trial import unittest

from tests.support.harness import MemoryClient, StartupErrorMixin, log_every_level, make_server
from tests.support.server import connect, start_server

MESSAGE = "Subject: x\r\n\r\nbody\r\n.\r\n"
QUEUED = "250 Queued\r\n"


def mail_ok(address):
    return "250 %s, sender OK - how exciting to get mail from you!\r\n" % address


def rcpt_ok(address):
    return "250 %s, recipient ok\r\n" % address


class PluginTestCase(StartupErrorMixin, unittest.TestCase):
    """Helpers: a client on a fresh server, a log recorder, start-up error checks."""

    def client(self, plugins, files=None, remote_ip="192.0.2.1"):
        return MemoryClient(make_server(self, plugins, files), remote_ip=remote_ip)

    def recording_server(self, plugins, files=None):
        """A loaded server whose plugin log lines (start-up included) are kept in ``records``.

        Each record is ``(level, plugin name, message)``, kept whatever the log level.
        """
        server = make_server(self, plugins, files, load=False)
        records = []
        original = server.log

        def log(level, message, plugin=None, transaction=None, hook=None):
            records.append((level, plugin.name if plugin is not None else None, message))
            original(level, message, plugin=plugin, transaction=transaction, hook=hook)

        server.log = log
        log_every_level(self, server)
        server.load_plugins()
        return server, records

    def assertConfigLineError(self, plugins, files, name, lineno, expected):
        """A bad line of config file ``name`` stops start-up, naming that file and line."""
        message = self.assertStartupError(plugins, expected, files)
        self.assertRegex(message, r"^/\S+/plugins:1: plugin ")
        self.assertIn("/%s:%d: " % (name, lineno), message)

    def send_message(self, client, message=MESSAGE):
        self.assertEqual(client.command("DATA"), "354 go ahead\r\n")
        return client.send(message)


class EndToEndTestCase(unittest.TestCase):
    """One session per plugin (and per old name) through a loopback TCP connection."""

    async def talk(self, plugins, files, lines):
        """Send ``lines`` one by one; return the client and the replies (code, [texts])."""
        _, port = start_server(self, plugins, files)
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        replies = []
        for line in lines:
            replies.append(await client.command(line))
        return client, replies


#: local parts a mail router sends elsewhere (Postfix's defaults: percent hack, bang path,
#: dequoted "@"); tests/plugins/test_queue_postfix_queue.py shows a real Postfix doing it
ROUTING_RECIPIENTS = [
    ("<victim%evil.example@example.com>", "%"),
    ("<evil.example!victim@example.com>", "!"),
    ('<"victim@evil.example"@example.com>', "@"),
    ('<"victim%evil.example"@example.com>', "%"),
    ('<"evil.example!victim"@Example.COM>', "!"),
    ("<victim%evil.example@mx.example.org>", "%"),
]
DENIED = "550 Relaying denied (#5.7.1)\r\n"
