"""A test kit for plugins: a real server on a temporary config, and a client without sockets.

For plugin authors and for qpsmtpd-tx's own suite; it works from any directory, with
``twisted.trial`` (or any ``unittest.TestCase`` that has ``mktemp``, ``patch`` and
``addCleanup``, as trial's has)::

    import os
    from twisted.trial import unittest
    from qpsmtpd_tx.testing import MemoryClient, make_server

    HERE = os.path.dirname(os.path.abspath(__file__))   # where my_plugin is

    class MyPluginTests(unittest.TestCase):
        def test_refuses_the_sender(self):
            server = make_server(self, ["my_plugin arg", "rcpt_ok"], plugin_dirs=[HERE])
            client = MemoryClient(server)
            client.command("HELO client.example")
            self.assertEqual(client.command("MAIL FROM:<a@b.test>"), "550 refused\\r\\n")

The README's "Writing a plugin" has a complete example.

- :func:`make_server` writes a qpsmtpd config directory under the test's temporary directory
  and starts a real :class:`~qpsmtpd_tx.server.SMTPServer` on it (the real config reader and
  plugin loader); ``plugin_dirs`` are searched before the bundled plugins.
- :class:`MemoryClient` connects a real SMTP protocol to Twisted's in-memory
  ``StringTransport`` and returns the server's replies as text.
- :func:`capture_log` records what the server logs, at every level (:func:`log_every_level`
  for a test that patches ``server.log`` itself); :func:`startup_error` and
  :func:`assertStartupError` check that a bad ``plugins`` line or config file stops start-up
  with a clear message; :func:`wait_for` and :func:`eventually` wait for an asynchronous hook
  without timing assumptions; :func:`codes_of` and the Maildir readers help read results.
- For unit tests of a plugin's hooks: :func:`loaded_plugin` (the instance a server loaded),
  :func:`fake_transaction` (a transaction to call a hook with) and :func:`plugin_module` (the
  plugin file's module, for its functions).
"""

import os
import time
import weakref

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport

from qpsmtpd_tx.codes import DECLINED
from qpsmtpd_tx.config import Config
from qpsmtpd_tx.idle import IdleSweeper
from qpsmtpd_tx.loader import find_plugin_file, load_plugin_module
from qpsmtpd_tx.objects import Connection, Transaction
from qpsmtpd_tx.plugin import Plugin
from qpsmtpd_tx.paths import default_plugin_dirs
from qpsmtpd_tx.protocol import SMTPFactory
from qpsmtpd_tx.server import SMTPServer, StartupError
from qpsmtpd_tx.syncer import SYNCER

__all__ = ["write_config", "make_server", "loaded_plugin", "plugin_module", "fake_transaction",
           "startup_error", "assertStartupError",
           "StartupErrorAssertions", "log_every_level", "capture_log", "CountingTransport", "MemoryClient",
           "codes_of", "wait_for", "eventually", "maildir_messages", "maildir_by_recipient",
           "capture_queue_notes"]


def write_config(directory, plugins, files=None):
    """Write a config dir: ``plugins`` (list of lines) and ``files`` ({name: text}); return it.

    ``me`` is ``mx.example.org``, ``rcpthosts`` is ``example.com`` and the spool is inside the
    directory, unless ``files`` says otherwise. A name with a ``/`` makes the subdirectory.
    """
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


def make_server(testcase, plugins, files=None, plugin_dirs=(), **kwargs):
    """An SMTPServer on a fresh config dir (:func:`write_config`) under the test's temp dir.

    Plugins are looked up in ``plugin_dirs`` (your own plugins), then among the bundled ones;
    a config that names its own ``plugin_dirs`` file is used as it is instead. Other keyword
    arguments go to :class:`~qpsmtpd_tx.server.SMTPServer`. Raises
    :class:`~qpsmtpd_tx.server.StartupError` as a real start-up would.

    The hook time limits (``plugin_timeout``) run on a Clock of their own,
    ``server.hooks.clock``, which only a test that means to expire them advances: a test that
    leaves a hook waiting leaves no timer on the reactor. Set it to the reactor to have real
    time limits. The server's DNS resolver, if a plugin made one, is closed when the test ends,
    and so is the Maildir delivery child process, if queue/maildir started one.
    """
    directory = write_config(os.path.abspath(testcase.mktemp()), plugins, files)
    config = Config(config_dir=directory, qmail_dir=directory, environ={})
    dirs = None if "plugin_dirs" in (files or {}) else list(plugin_dirs) + default_plugin_dirs()
    server = SMTPServer(config, plugin_dirs=dirs, **kwargs)
    server.hooks.clock = Clock()
    # DNS sockets and timers must not outlive the test; held weakly, so that a test may check
    # that a server it dropped is released
    server_ref = weakref.ref(server)
    testcase.addCleanup(lambda: server_ref() is not None and server_ref().close_dns())
    testcase.addCleanup(SYNCER.close)     # (runs after the cleanups registered later)
    return server


def loaded_plugin(server, name):
    """The one plugin instance ``server`` loaded for ``name`` (its escaped name, e.g.
    ``queue/maildir``): to reach its attributes, or call its hooks directly."""
    found = [p for p in server.plugins if p.name == name]
    if len(found) != 1:
        raise LookupError("%d plugins named %s: %s" % (len(found), name,
                                                       [p.name for p in server.plugins]))
    return found[0]


def fake_transaction(remote_ip="192.0.2.1", **connection):
    """A Transaction on a Connection from ``remote_ip`` (other Connection fields as keyword
    arguments), with no session behind it: for calling a hook method directly."""
    return Transaction(connection=Connection(remote_ip=remote_ip, **connection))


def plugin_module(name, plugin_dirs=()):
    """The module of plugin ``name`` (as written in ``plugins``, e.g. ``queue/maildir``), found
    in ``plugin_dirs`` or among the bundled plugins: for unit tests of its functions. A plugin
    file is run once; every call returns the same module."""
    path = find_plugin_file(name, list(plugin_dirs) + default_plugin_dirs())
    if path is None:
        raise LookupError("no plugin %s in %s" % (name, list(plugin_dirs) + default_plugin_dirs()))
    return load_plugin_module(path)


def startup_error(testcase, plugins, files=None, **kwargs):
    """The text of the StartupError that :func:`make_server` raises for this config; the test
    fails if the server starts. Arguments as for :func:`make_server`."""
    with testcase.assertRaises(StartupError, msg="no start-up error for %r" % (plugins,)) as caught:
        make_server(testcase, plugins, files, **kwargs)
    return str(caught.exception)


def assertStartupError(testcase, plugins, expected, files=None, **kwargs):
    """Start-up fails with a message containing ``expected`` (a string, or a list of strings
    that must all be in it); returns the message. Arguments as for :func:`make_server`."""
    message = startup_error(testcase, plugins, files, **kwargs)
    for part in ([expected] if isinstance(expected, str) else expected):
        testcase.assertIn(part, message)
    return message


class StartupErrorAssertions:
    """A TestCase mixin: ``self.assertStartupError(plugins, expected, files=None)`` as in
    :func:`assertStartupError`, looking for plugins in the class attribute
    ``plugin_search_dirs``."""

    #: the plugin directories searched before the bundled plugins
    plugin_search_dirs = ()

    def assertStartupError(self, plugins, expected, files=None):
        """See :func:`assertStartupError`."""
        return assertStartupError(self, plugins, expected, files, plugin_dirs=self.plugin_search_dirs)


def log_every_level(testcase, server):
    """Until the test ends, ``server.log`` gets lines at every level, whatever ``loglevel``
    says (the server itself still drops those above it).

    The server and its plugins do not even format a line that nobody would see (they ask
    ``server.log_enabled`` first): a test that patches ``server.log`` to see such lines
    calls this, as :func:`capture_log` does. The server's plugin chains, built before with
    the server's methods of then, follow ``server.log`` and ``server.log_enabled`` from now
    on, so that they see such a patch too.
    """
    testcase.patch(server, "log_enabled", lambda level: True)
    _follow_server_log(testcase, server)


def _follow_server_log(testcase, server):
    """Until the test ends, the chains of ``server`` log through whatever ``server.log`` and
    ``server.log_enabled`` are at each line: they were given the server's methods when they
    were built, so the lines of their hook registry (a hook's result, a hook that failed or
    timed out) would miss a ``server.log`` patched later."""
    for chain in server.chains_in_use():
        testcase.addCleanup(chain.use_log, chain.log, chain.hooks.log_enabled)
        chain.use_log(lambda *args, **kwargs: server.log(*args, **kwargs),
                      lambda level: server.log_enabled(level))


def capture_log(testcase, server, plugin_names=False):
    """A list that receives every line ``server`` logs from now on (until the test ends).

    Each line is ``(level, message)``, or with ``plugin_names`` ``(level, name, message)``
    where ``name`` is the escaped name of the plugin that logged it (None for the core).
    The lines go only to the list, not to the server's usual log. Lines at every level are
    captured, whatever the server's ``loglevel``: while capturing, ``server.log_enabled`` is
    true for all levels (see :func:`log_every_level`). The hook registry's own lines (a
    hook's result at LOGDEBUG, a hook that failed or timed out) are captured too, of the
    chains built before the capture as of those built (SIGHUP) while it lasts.
    """
    lines = []
    log_every_level(testcase, server)

    def log(level, message, plugin=None, transaction=None, hook=None):
        if plugin_names:
            lines.append((level, plugin.name if plugin is not None else None, message))
        else:
            lines.append((level, message))

    testcase.patch(server, "log", log)
    return lines


class CountingTransport(StringTransport):
    """A StringTransport that counts write calls (``writes``)."""

    writes = 0

    def write(self, data):
        """Record ``data`` and count the call."""
        self.writes += 1
        StringTransport.write(self, data)


class MemoryClient:
    """A client connected to a real SMTP protocol of ``server`` through an in-memory transport.

    The connection comes from ``remote_ip`` to 127.0.0.1:25; ``greeting`` is what the server
    said first. The protocol's own timers (the idle timeout, the session's deadlines) run on
    ``clock``, a Clock the test advances.
    """

    def __init__(self, server, remote_ip="192.0.2.1"):
        self.clock = Clock()
        self.transport = CountingTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 25),
            peerAddress=IPv4Address("TCP", remote_ip, 40000))
        factory = SMTPFactory(server)
        factory.idle_sweeper = IdleSweeper(self.clock)
        self.protocol = factory.buildProtocol(None)
        self.protocol.callLater = self.clock.callLater
        self.protocol.makeConnection(self.transport)
        # (the protocol lets go of its session when the connection is lost)
        self._session = self.protocol.session
        self.greeting = self.take()

    @property
    def session(self):
        """The server's session object of this connection (also once it has ended)."""
        return self._session

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
        """True once the server has closed (or is closing) the connection."""
        return self.transport.disconnecting


def codes_of(text):
    """The reply codes in ``text``, one per complete reply (multi-line replies count once)."""
    return [int(line[:3]) for line in text.split("\r\n") if len(line) > 3 and line[3] == " "]


async def wait_for(condition, timeout=10.0, step=0.02):
    """Poll ``condition()`` on the running reactor every ``step`` seconds until it is true or
    ``timeout`` seconds have passed; returns its last value (``await`` it in an async test)."""
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await deferLater(reactor, step, lambda: None)
    return condition()


def eventually(condition, timeout=10.0, step=0.005):
    """A Deferred firing once ``condition()`` is true, polled on the real reactor; it fails after
    ``timeout`` seconds. For waiting on asynchronous hooks without timing assumptions."""
    async def check():
        if not await wait_for(condition, timeout, step):
            raise AssertionError("condition not met within %.1f s" % timeout)
    return Deferred.fromCoroutine(check())


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


def capture_queue_notes(server, note):
    """A list that receives transaction note ``note`` of every message ``server`` queued (a
    ``queue_post`` handler registered on it, which declines)."""
    seen = []
    plugin = Plugin()
    plugin.name = plugin.path = "capture_queue_notes"
    plugin.server = server

    def queue_post(transaction):
        seen.append(transaction.notes.get(note))
        return DECLINED
    server.hooks.register("queue_post", plugin, queue_post)
    return seen
