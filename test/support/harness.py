"""Building a real SMTPServer on a temporary config dir, and talking to it without sockets.

``make_server`` writes a qpsmtpd config directory and loads it through the real config reader
and plugin loader. ``MemoryClient`` connects a real SMTPProtocol to Twisted's in-memory
StringTransport (the sans-I/O way of testing a protocol) and counts the writes.
"""

import os

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from qpsmtpd_tx.config import Config
from qpsmtpd_tx.paths import default_plugin_dirs
from qpsmtpd_tx.protocol import SMTPFactory
from qpsmtpd_tx.server import SMTPServer

TEST_PLUGINS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins")


def write_config(directory, plugins, files=None):
    """Write a config dir: ``plugins`` (list of lines) and ``files`` ({name: text})."""
    os.makedirs(directory, exist_ok=True)
    contents = {"me": "mx.example.org", "rcpthosts": "example.com",
                "spool_dir": os.path.join(directory, "spool")}
    contents.update(files or {})
    contents["plugins"] = "\n".join(plugins) + "\n"
    for name, text in contents.items():
        path = os.path.join(directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    return directory


def make_server(testcase, plugins, files=None, **kwargs):
    """An SMTPServer on a fresh config dir under the test's temp dir.

    Its hook time limits (``plugin_timeout``) run on a Clock of their own, ``server.hooks.clock``,
    which only a test that means to expire them advances: a test that leaves a hook waiting
    leaves no timer on the reactor. Set it to the reactor to have real time limits.
    """
    directory = write_config(os.path.abspath(testcase.mktemp()), plugins, files)
    config = Config(config_dir=directory, qmail_dir=directory, environ={})
    # A config that names its own plugin_dirs is used as it is; otherwise the test plugins
    # and the stock plugins are found.
    dirs = None if "plugin_dirs" in (files or {}) else [TEST_PLUGINS] + default_plugin_dirs()
    server = SMTPServer(config, plugin_dirs=dirs, **kwargs)
    server.hooks.clock = Clock()
    return server


class CountingTransport(StringTransport):
    """A StringTransport that counts write calls."""

    writes = 0

    def write(self, data):
        self.writes += 1
        StringTransport.write(self, data)


class MemoryClient:
    """A client connected to a real SMTPProtocol through an in-memory transport."""

    def __init__(self, server, remote_ip="192.0.2.1"):
        self.clock = Clock()
        self.transport = CountingTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 25),
            peerAddress=IPv4Address("TCP", remote_ip, 40000))
        self.protocol = SMTPFactory(server).buildProtocol(None)
        self.protocol.callLater = self.clock.callLater
        self.protocol.makeConnection(self.transport)
        self.greeting = self.take()

    @property
    def session(self):
        return self.protocol.session

    def take(self):
        """Everything written since the last call, as text."""
        out = self.transport.value().decode("utf-8", "surrogateescape")
        self.transport.clear()
        return out

    def send(self, data):
        """Send bytes (or text); return what the server wrote in response."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.protocol.dataReceived(data)
        return self.take()

    def command(self, line):
        """Send one command line; return the reply text."""
        return self.send(line + "\r\n")

    @property
    def closed(self):
        return self.transport.disconnecting


def codes_of(text):
    """The reply codes in ``text``, one per complete reply (multi-line replies count once)."""
    return [int(line[:3]) for line in text.split("\r\n") if len(line) > 3 and line[3] == " "]


def eventually(condition, timeout=10.0, step=0.005):
    """A Deferred firing once ``condition()`` is true, polled on the real reactor; it fails after
    ``timeout`` seconds. For waiting on asynchronous hooks without timing assumptions."""
    from twisted.internet import reactor, task

    async def poll():
        waited = 0.0
        while not condition():
            if waited > timeout:
                raise AssertionError("condition not met within %.1f s" % timeout)
            await task.deferLater(reactor, step, lambda: None)
            waited += step
    from twisted.internet.defer import Deferred
    return Deferred.fromCoroutine(poll())


def maildir_messages(maildir):
    """The messages in ``maildir/new``, as bytes, in file name order ([] if there is none)."""
    new = os.path.join(maildir, "new")
    if not os.path.isdir(new):
        return []
    out = []
    for name in sorted(os.listdir(new)):
        with open(os.path.join(new, name), "rb") as f:
            out.append(f.read())
    return out


def maildir_by_recipient(maildir, recipients):
    """``{recipient: [message bytes, …]}`` from ``maildir/<recipient>`` (queue/maildir with
    the ``%u`` pattern); a recipient without a Maildir has none."""
    return {rcpt: maildir_messages(os.path.join(maildir, rcpt)) for rcpt in recipients}
