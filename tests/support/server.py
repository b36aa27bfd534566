"""A real SMTPServer listening on a loopback socket, and a small SMTP client to talk to it.

``start_server`` builds the server from a temporary config dir (see ``harness.make_server``),
listens on 127.0.0.1 (or ``::1``) on a free port and registers the cleanups: wait until every
server-side session is gone (aborting stragglers), stop listening, restore the SIGHUP handler
a plugin may have installed. ``connect`` opens a client connection and returns an
:class:`SMTPClient` that has already read the greeting; it is closed at the end of the test.

    async def test_something(self):
        server, port = start_server(self, ["rcpt_ok"], {"rcpthosts": "example.com"})
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(await client.command("HELO x"), (250, ["mx.example.org Hi ..."]))
"""

import signal
from collections import deque

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.protocols.basic import LineOnlyReceiver

from qpsmtpd_tx.protocol import SMTPFactory
from tests.support.harness import make_server

#: seconds a test waits for one reply before failing
REPLY_TIMEOUT = 10.0


class ConnectionClosed(Exception):
    """The server closed the connection while a reply was expected."""


def keep_signal_handlers(testcase, signums=(signal.SIGHUP,)):
    """Restore the handlers of ``signums`` at the end of the test (plugins may install some)."""
    for signum in signums:
        testcase.addCleanup(signal.signal, signum, signal.getsignal(signum))


async def wait_sessions_closed(server, timeout=5.0):
    """Wait until ``server`` has no live session; abort the connections still open then."""
    for _ in range(int(timeout / 0.01)):
        if not server.sessions:
            return
        await deferLater(reactor, 0.01, lambda: None)
    for session in list(server.sessions):
        session.transport.abortConnection()
    for _ in range(100):
        if not server.sessions:
            return
        await deferLater(reactor, 0.01, lambda: None)


def start_server(testcase, plugins_lines, files=None, interface="127.0.0.1", factory=SMTPFactory,
                 **server_kwargs):
    """Build an SMTPServer and listen on ``interface``; return ``(server, port_number)``.

    ``factory(server)`` makes the listener's factory (e.g. ``protocol.proxy_factory``).

    ``plugins_lines`` are the lines of the ``plugins`` file; ``files`` maps other config file
    names (``logging``, ``relayclients``, ``me``…) to their text. ``me`` defaults to
    ``mx.example.org`` and ``rcpthosts`` to ``example.com``.
    """
    keep_signal_handlers(testcase)
    server = make_server(testcase, list(plugins_lines), files, **server_kwargs)
    listening = reactor.listenTCP(0, factory(server), interface=interface)
    testcase.addCleanup(listening.stopListening)
    testcase.addCleanup(lambda: defer.Deferred.fromCoroutine(wait_sessions_closed(server)))
    return server, listening.getHost().port


class SMTPClient(LineOnlyReceiver):
    """Sends command lines and collects replies as ``(code, [text lines])``."""

    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def __init__(self):
        self.greeting = None
        self.closed = False
        self.when_closed = defer.Deferred()
        self._lines = []
        self._replies = deque()
        self._waiters = deque()

    def lineReceived(self, line):
        text = line.decode("utf-8", "surrogateescape")
        self._lines.append(text[4:])
        if text[3:4] == "-":
            return
        reply = (int(text[:3]), self._lines)
        self._lines = []
        if self._waiters:
            self._waiters.popleft().callback(reply)
        else:
            self._replies.append(reply)

    def connectionLost(self, reason):
        self.closed = True
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            waiter.errback(ConnectionClosed("connection closed before a reply"))
        self.when_closed.callback(None)

    def reply(self):
        """A Deferred firing with the next reply (fails on timeout or if the connection closes)."""
        if self._replies:
            return defer.succeed(self._replies.popleft())
        if self.closed:
            return defer.fail(ConnectionClosed("connection closed"))
        waiter = defer.Deferred(lambda d: d in self._waiters and self._waiters.remove(d))
        self._waiters.append(waiter)
        return waiter.addTimeout(REPLY_TIMEOUT, reactor)

    def send(self, line):
        """Send one line (CRLF appended)."""
        self.transport.write(line.encode("utf-8", "surrogateescape") + b"\r\n")

    def command(self, line):
        """Send one line; a Deferred firing with its reply."""
        self.send(line)
        return self.reply()

    def wait_closed(self):
        """A Deferred firing when the server has closed the connection (times out)."""
        if self.closed:
            return defer.succeed(None)
        waiting = defer.Deferred()
        self.when_closed.addBoth(lambda r: waiting.called or waiting.callback(None))
        return waiting.addTimeout(REPLY_TIMEOUT, reactor)

    def close(self):
        """Close from our side; a Deferred firing once the connection is gone."""
        if self.closed:
            return defer.succeed(None)
        self.transport.loseConnection()
        return self.wait_closed()


async def connect(testcase, port, host="127.0.0.1", source=None):
    """Connect an SMTPClient to ``host``:``port`` and read the greeting into ``greeting``.

    ``source``: the client's own address (e.g. ``127.0.5.9``: any 127/8 address is ours), so
    that a test can give its client a reverse DNS of its own."""
    endpoint_class = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
    client = SMTPClient()
    bind = {"bindAddress": (source, 0)} if source else {}
    await connectProtocol(endpoint_class(reactor, host, port, **bind), client)
    testcase.addCleanup(client.close)
    client.greeting = await client.reply()
    return client


class Transcript:
    """A conversation of ``client`` (an :class:`SMTPClient`) written down as it goes:
    ``lines`` holds one ``"COMMAND -> CODE last reply line"`` string per command."""

    def __init__(self, client):
        self.client = client
        self.lines = []

    async def say(self, line, label=None):
        """Send ``line``, write down its reply, return the reply code. With ``label`` (the end
        of a message), the line is written as ``label`` and a ``<queue id>`` is cut off."""
        code, text = await self.client.command(line)
        last = text[-1] if label is None else text[-1].split(" <")[0]
        self.lines.append("%s -> %d %s" % (label or line, code, last))
        return code

    async def deliver_retrying(self, recipients, message, label, sender="sender@client.example"):
        """Send ``message`` (without the final dot) from ``sender`` to ``recipients`` as an
        RFC 5321 client does: a recipient refused with ``452`` is tried again in the next
        transaction, until every recipient has had its turn."""
        pending = list(recipients)
        while pending:
            await self.say("MAIL FROM:<%s>" % sender)
            retry = []
            for rcpt in pending:
                if await self.say("RCPT TO:<%s>" % rcpt) == 452:
                    retry.append(rcpt)
            await self.say("DATA")
            self.client.send(message)
            await self.say(".", label)
            pending = retry


class TransactionMixin:
    """For a TestCase whose tests talk to a server over TCP: :meth:`session` opens a
    connection that has said EHLO, :meth:`send` runs one transaction on it."""

    #: what :meth:`send` sends between DATA and the final dot when given nothing (dot-stuffed)
    default_message = b"Subject: test\r\n\r\nbody\r\n"

    async def session(self, port, helo="EHLO client.example"):
        """A client connected to 127.0.0.1:``port`` whose ``helo`` got a 250."""
        client = await connect(self, port)
        reply = await client.command(helo)
        self.assertEqual(reply[0], 250, reply)
        return client

    async def send(self, client, sender="<a@b.example>", recipients=("<u@example.com>",),
                   data=None):
        """One transaction on an open connection, whose MAIL and RCPTs must get a 250; returns
        the reply to the final dot."""
        self.assertEqual((await client.command("MAIL FROM:%s" % sender))[0], 250)
        for rcpt in recipients:
            reply = await client.command("RCPT TO:%s" % rcpt)
            self.assertEqual(reply[0], 250, (rcpt, reply))
        self.assertEqual((await client.command("DATA"))[0], 354)
        client.transport.write((self.default_message if data is None else data) + b".\r\n")
        return await client.reply()
