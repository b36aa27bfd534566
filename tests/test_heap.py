"""A connection's objects are freed when its session ends, by reference counting alone; a
started server keeps the garbage collector off the objects it was started with
(qpsmtpd_tx/heap.py) and gives them back before a reload."""

import gc
import os
import re
import signal
import smtplib
import weakref

from twisted.internet import defer, reactor, task
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial import unittest

from qpsmtpd_tx import heap
from qpsmtpd_tx.codes import DECLINED
from qpsmtpd_tx.plugin import Plugin
from tests.support.harness import TEST_PLUGINS, MemoryClient, eventually, make_server, write_config
from tests.support.processes import CHECKOUT, poll_until, start_twistd

MESSAGE = "Subject: heap\r\n\r\nbody\r\n.\r\n"


def _without_collector(testcase):
    """Turn the garbage collector off for the test: what is freed then is freed by reference
    counting."""
    if gc.isenabled():
        gc.disable()
        testcase.addCleanup(gc.enable)


def _deliver(client):
    for line in ("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.com>",
                 "DATA"):
        client.command(line)
    return client.send(MESSAGE)


def _lose_connection(client):
    """What Twisted's TCP transport does when the connection is gone: it lets go of its
    producer (the session's; StringTransport does not) and tells the protocol."""
    if client.transport.producer is not None:
        client.transport.unregisterProducer()
    client.protocol.connectionLost(Failure(ConnectionDone()))


def _connection_objects(client):
    session = client.session
    return [weakref.ref(o) for o in (client.protocol, session, session.transaction,
                                     session.connection, session.transport, session.core)]


class ConnectionObjectsTests(unittest.TestCase):
    """The protocol, session, transaction and TLS layer of an ended connection do not wait for
    the garbage collector (they referred to each other: every connection left a cycle)."""

    def setUp(self):
        _without_collector(self)
        self.server = make_server(self, ["rcpt_ok", "scripted queue OK"])

    def test_an_ended_connection_is_freed_at_once(self):
        client = MemoryClient(self.server)
        self.assertTrue(_deliver(client).startswith("250"))
        client.command("QUIT")
        refs = _connection_objects(client)
        _lose_connection(client)
        del client
        self.assertEqual([r() for r in refs], [None] * len(refs))

    def test_a_connection_lost_in_a_transaction_is_freed_at_once(self):
        client = MemoryClient(self.server)
        client.command("EHLO client.example")
        client.command("MAIL FROM:<a@example.org>")
        refs = _connection_objects(client)
        _lose_connection(client)
        del client
        self.assertEqual([r() for r in refs], [None] * len(refs))

    @defer.inlineCallbacks
    def test_a_disconnect_hook_still_working_keeps_the_session(self):
        """A disconnect hook that answers later still finds ``transaction.session``; the
        transaction lets go of the session once the hook is done."""
        seen = []
        plugin = Plugin()
        plugin.name = plugin.path = "late_disconnect"
        plugin.server = self.server

        def disconnect(transaction):
            d = defer.Deferred()

            def later():
                seen.append(transaction.session)
                d.callback(DECLINED)
            reactor.callLater(0.01, later)
            return d
        self.server.hooks.register("disconnect", plugin, disconnect)
        client = MemoryClient(self.server)
        session = client.session
        client.command("EHLO client.example")
        client.command("QUIT")
        transaction = session.transaction
        _lose_connection(client)
        yield eventually(lambda: seen)
        self.assertIs(seen[0], session)
        self.assertIsNone(transaction.session)


class StartedServerTests(unittest.TestCase):
    """A real twistd: the objects it started with are frozen (``gc.freeze``), with a young
    generation's threshold that a session's allocations do not reach; SIGHUP thaws them, and
    they are frozen again once the sessions on the old plugins have ended."""

    def _state(self, port):
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            code, text = client.docmd("XGC")
        match = re.search(r"frozen=(\d+) threshold=(\d+)", text.decode())
        self.assertIsNotNone(match, text)
        return int(match.group(1)), int(match.group(2))

    def test_frozen_when_started_thawed_by_a_reload_and_frozen_again(self):
        config = os.path.abspath(self.mktemp())
        write_config(config, ["gc_state", "rcpt_ok"],
                     {"loglevel": "6",
                      "plugin_dirs": "%s\n%s" % (TEST_PLUGINS, os.path.join(CHECKOUT, "plugins"))})
        process, port, log = start_twistd(self, config)
        frozen, threshold = self._state(port)
        self.assertGreater(frozen, 10000)
        self.assertGreaterEqual(threshold, 5000)
        # a session in progress on the old chain: nothing is frozen again until it ends
        held = smtplib.SMTP("127.0.0.1", port, timeout=30)
        self.addCleanup(held.close)
        held.ehlo("held.example")
        process.send_signal(signal.SIGHUP)
        self.assertTrue(poll_until(lambda: "plugins reloaded" in open(log, errors="replace").read(), 30))
        self.assertEqual(self._state(port)[0], 0)
        held.quit()
        self.assertTrue(poll_until(lambda: self._state(port)[0] > 10000, 30))


class ReloadTests(unittest.TestCase):
    """In one process: after a reload the old chain is collected and the rest frozen again
    once its last session has ended, not before."""

    def setUp(self):
        self.server = make_server(self, ["rcpt_ok", "scripted queue OK"])
        threshold = gc.get_threshold()
        heap.freeze_started()
        self.addCleanup(gc.set_threshold, *threshold)
        self.addCleanup(heap.forget)

    @defer.inlineCallbacks
    def test_old_chain_collected_then_frozen_again(self):
        client = MemoryClient(self.server)
        client.command("EHLO client.example")
        old_plugin = weakref.ref(self.server.chain.plugins[0])
        self.assertTrue(self.server.reload())
        yield task.deferLater(reactor, 0.02, lambda: None)  # turns of the reactor: no refreeze
        self.assertEqual(gc.get_freeze_count(), 0)
        self.assertIsNotNone(old_plugin())
        client.command("QUIT")
        _lose_connection(client)
        del client
        yield eventually(lambda: gc.get_freeze_count() > 0)
        self.assertIsNone(old_plugin())

    @defer.inlineCallbacks
    def test_frozen_again_at_once_without_sessions(self):
        self.assertTrue(self.server.reload())
        self.assertEqual(gc.get_freeze_count(), 0)
        yield eventually(lambda: gc.get_freeze_count() > 0)
