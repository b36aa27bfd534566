"""What the tests of the content filters spamassassin and virus/clamdscan share: a server on a
loopback socket with the filter and a queue plugin that takes everything, the transactions a
client runs against it (:class:`FilterTestCase`, :class:`Outcome`), and daemons that are down,
hang or answer garbage."""

import os
import re
import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from qpsmtpd_tx.message import Header
from tests.support.harness import assertStartupError, log_every_level
from tests.support.server import connect, start_server

SENDER = "<sender@client.example>"


def message(body, subject="offer", extra=""):
    """A message as the client sends it (CRLF), without the final dot."""
    return ("From: sender@client.example\r\nTo: someone@example.com\r\nSubject: %s\r\n%s\r\n%s\r\n"
            % (subject, extra, body))


class Outcome:
    """What one transaction got: ``rcpts`` [(code, text)], ``data`` (code, text) for the end of
    the message, ``queued`` the queued message (bytes) or None, ``header`` its Header."""

    def __init__(self, rcpts, data, queued):
        self.rcpts = rcpts
        self.data = data
        self.queued = queued
        self.header = None
        if queued is not None:
            self.header = Header.parse(queued.split(b"\n\n", 1)[0] + b"\n")

    def top(self, count):
        """The first ``count`` header fields as text lines (folded values kept folded)."""
        return [raw.decode().rstrip("\n") for _, raw in self.header.fields[:count]]


class FilterTestCase(unittest.TestCase):
    """Runs SMTP transactions against an SMTPServer on a loopback socket."""

    def serve(self, plugins, files=None):
        """Start a server with ``plugins`` (+ a queue plugin that takes everything)."""
        self.server, self.port = start_server(self, list(plugins) + ["scripted queue OK"], files)
        self.logs = []
        original = self.server.log

        def log(level, text, **kw):
            self.logs.append((level, text))
            return original(level, text, **kw)

        log_every_level(self, self.server)
        self.patch(self.server, "log", log)
        return self.server

    async def open(self):
        client = await connect(self, self.port)
        self.assertEqual((await client.command("EHLO client.example"))[0], 250)
        return client

    async def transaction(self, client, rcpts, text):
        """MAIL, RCPTs, DATA and ``text``; an Outcome. DATA is skipped if no RCPT was taken."""
        self.assertEqual((await client.command("MAIL FROM:%s" % SENDER))[0], 250)
        replies = []
        for rcpt in rcpts:
            code, lines = await client.command("RCPT TO:<%s>" % rcpt)
            replies.append((code, lines[-1]))
        if not any(code == 250 for code, _ in replies):
            return Outcome(replies, None, None)
        self.assertEqual((await client.command("DATA"))[0], 354)
        port = client.transport.getHost().port
        session = next(s for s in self.server.sessions if s.connection.remote_port == port)
        session.connection.notes.pop("scripted_message", None)
        client.send(text + ".")
        code, lines = await client.reply()
        return Outcome(replies, (code, lines[-1]), session.connection.notes.get("scripted_message"))

    async def send(self, text, rcpts=("alice@example.com",)):
        client = await self.open()
        return await self.transaction(client, rcpts, text)

    def record_answers(self, plugin_name, hook="data_post"):
        """A list that gets, for each answer of ``plugin_name``'s ``hook``, whether it was a
        Deferred (a check at once from the DNS cache makes none)."""
        handlers = self.server.hooks.registered[hook]
        [index] = [i for i, (plugin, _) in enumerate(handlers) if plugin.name == plugin_name]
        plugin, method = handlers[index]
        answers = []

        def recording(transaction, *args):
            result = method(transaction, *args)
            answers.append(isinstance(result, defer.Deferred))
            return result
        handlers[index] = (plugin, recording)
        return answers

    def logged(self, level, pattern):
        """The log lines at ``level`` that match ``pattern`` (a regular expression)."""
        return [text for lvl, text in self.logs if lvl == level and re.search(pattern, text)]

    def assertLogged(self, level, pattern):
        """Exactly one line was logged at ``level`` matching ``pattern``."""
        self.assertEqual(len(self.logged(level, pattern)), 1, (pattern, self.logs))

    def assertStartupError(self, line, expected, files=None):
        """Start-up with ``line`` (and rcpt_ok) fails with a message containing ``expected``."""
        assertStartupError(self, [line, "rcpt_ok"], expected, files)


def record_calls(testcase, obj, name, what):
    """Wrap method ``name`` of ``obj`` for the test: each call appends ``what(*args)`` to the
    returned list, then runs the method (to count a filter's scans)."""
    calls = []
    method = getattr(obj, name)

    def recording(*args):
        calls.append(what(*args))
        return method(*args)

    testcase.patch(obj, name, recording)
    return calls


def short_socket_path(testcase):
    """A unix socket path nobody listens on (short: trial's temp paths exceed 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="qptx-")
    testcase.addCleanup(shutil.rmtree, directory, True)
    return os.path.join(directory, "nobody.sock")


def hanging_server(testcase):
    """A 127.0.0.1 port that accepts connections and never answers."""
    listening = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    testcase.addCleanup(listening.stopListening)
    return listening.getHost().port


class _Talker(Protocol):
    def connectionMade(self):
        self.transport.write(self.factory.answer)
        self.transport.loseConnection()


def answering_server(testcase, answer):
    """A 127.0.0.1 port that answers every connection with ``answer`` and closes it."""
    factory = Factory.forProtocol(_Talker)
    factory.answer = answer
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testcase.addCleanup(listening.stopListening)
    return listening.getHost().port
