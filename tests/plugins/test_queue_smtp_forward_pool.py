"""queue/smtp-forward's connection pool (``pool N``): many messages over one connection to the
next hop, and never a lost or duplicated message when a pooled connection breaks.

The next hop is the suite's private Postfix (``tests/support/postfix.py``): its log counts the
connections (one ``connect from`` line each) and its deliveries show each message arrived
exactly once. ``FakeHop`` (from the smtp-forward tests, a scripted SMTP server on a real
socket) stands in only where Postfix cannot be made to break a connection at a chosen
command: closing at RSET, answering 421, closing after the final dot.
"""

import os
import re
import socket

from twisted.internet import defer, threads
from twisted.trial import unittest

from qpsmtpd_tx.server import StartupError
from qpsmtpd_tx.testing import capture_log, capture_queue_notes
from tests.support.certs import make_certs
from tests.support.dovecot import start_dovecot
from tests.support.harness import make_server
from tests.support.postfix import start_postfix, tls_settings
from tests.support.processes import poll_until
from tests.support.postfix_cases import STRICT, PostfixTestCase, wait_for
from tests.support.server import TransactionMixin, start_server
from tests.plugins.test_queue_smtp_forward import start_fake_hop


def message(n):
    """Message number ``n``: its Message-Id says which one arrived."""
    return (b"From: a@b.example\r\nTo: u@example.com\r\nSubject: pooled %d\r\n"
            b"Message-Id: <pool-%d@b.example>\r\n\r\nbody %d\r\n" % (n, n, n))


def connections(postfix):
    """How many SMTP connections Postfix's smtpd has accepted so far, less the ones that sent
    nothing (the probes of tests/support/postfix.py's start, which logs ``commands=0/0``)."""
    log = postfix.maillog()
    return len(re.findall(r"smtpd\[\d+\]: connect from ", log)) - log.count(" commands=0/0")


def disconnects(postfix):
    """How many connections that said something Postfix's smtpd has seen end."""
    log = postfix.maillog()
    return log.count("disconnect from") - log.count(" commands=0/0")


def delivered_ids(postfix):
    """The Message-Id numbers of Postfix's deliveries, in delivery order (duplicates kept)."""
    return [n for n, _ in deliveries(postfix)]


def deliveries(postfix):
    """(Message-Id number, Postfix queue id) of each of Postfix's deliveries."""
    out = []
    for delivery in postfix.deliveries():
        m = re.search(rb"Message-Id: <pool-(\d+)@b\.example>", delivery.message)
        if m is None:
            raise AssertionError("a delivery that is none of the test's messages (queue id "
                                 "%s): %r" % (delivery.queue_id, delivery.message[:600]))
        out.append((int(m.group(1)), delivery.queue_id))
    return out


class PoolToPostfixTests(PostfixTestCase):
    """``pool`` with a real Postfix as the next hop."""

    def start_pooled(self, postfix, options="pool 2"):
        # the start's probe must be in the log before connections() counts
        self.assertTrue(poll_until(lambda: " commands=0/0" in postfix.maillog(), 10))
        server, port = self.start_front("queue/smtp-forward 127.0.0.1 %d %s" % (postfix.port, options))
        self.addCleanup(server.stop_plugins)
        self.log = capture_log(self, server)
        return server, port

    async def test_many_messages_and_refusals_over_one_connection(self):
        postfix = start_postfix(self, **STRICT)
        server, port = self.start_pooled(postfix)
        sent = 0
        for _ in range(2):                       # two client connections, one next-hop connection
            client = await self.session(port)
            for _ in range(6):
                code, lines = await self.send(client, data=message(sent))
                self.assertEqual(code, 250, lines)
                sent += 1
            # per message refusals of the hop (5xx, 4xx at RCPT; 5xx after the message) do
            # not cost the connection: the next message goes on it after RSET
            self.assertEqual(await self.send(client, recipients=["<refused@example.com>"]), (552, [
                "5.7.1 <refused@example.com>: Recipient address rejected: no such user here"]))
            self.assertEqual(await self.send(client, recipients=["<u@example.com>",
                                                                 "<later@example.com>"]), (451, [
                "4.7.1 <later@example.com>: Recipient address rejected: mailbox busy, try later"]))
            big = message(99).replace(b"body 99", (b"z" * 70 + b"\r\n") * 300)
            self.assertEqual(await self.send(client, data=big),
                             (552, ["5.3.4 Error: message file too big"]))
        await self.settle(postfix)
        self.assertEqual(sorted(delivered_ids(postfix)), list(range(12)))
        self.assertEqual(connections(postfix), 1, postfix.maillog()[-3000:])
        self.assertEqual(server.plugins[-1].pool.opened, 1)

    async def test_concurrent_clients_share_the_pool(self):
        postfix = start_postfix(self)
        server, port = self.start_pooled(postfix, "pool 5")

        async def client_run(first):
            client = await self.session(port)
            for n in range(first, first + 4):
                self.assertEqual((await self.send(client, data=message(n)))[0], 250)

        await defer.gatherResults([defer.Deferred.fromCoroutine(client_run(10 * c))
                                   for c in range(5)])
        await self.settle(postfix)
        self.assertEqual(sorted(delivered_ids(postfix)),
                         sorted(10 * c + n for c in range(5) for n in range(4)))
        self.assertLessEqual(connections(postfix), 5)
        # every connection is idle again, kept for the next messages
        self.assertEqual(server.plugins[-1].pool.idle_count(), connections(postfix))

    async def test_hop_closes_an_idle_connection(self):
        # Postfix's smtpd gives up on a silent client after smtpd_timeout (421, then closes)
        postfix = start_postfix(self, settings={"smtpd_timeout": "1s"})
        server, port = self.start_pooled(postfix)
        client = await self.session(port)
        self.assertEqual((await self.send(client, data=message(1)))[0], 250)
        self.assertTrue(await wait_for(lambda: disconnects(postfix) == 1))
        self.assertEqual((await self.send(client, data=message(2)))[0], 250)
        await self.settle(postfix)
        self.assertEqual(sorted(delivered_ids(postfix)), [1, 2])
        self.assertEqual(connections(postfix), 2)

    async def test_idle_time_and_messages_per_connection(self):
        postfix = start_postfix(self)
        server, port = self.start_pooled(postfix, "pool 2 pool_messages 2 pool_idle 0.5")
        pool = server.plugins[-1].pool
        client = await self.session(port)
        for n in range(5):                       # 2 + 2 + 1: three connections
            self.assertEqual((await self.send(client, data=message(n)))[0], 250)
        self.assertEqual(pool.opened, 3)
        # after pool_idle seconds the idle one is closed (QUIT: Postfix logs the disconnect)
        self.assertTrue(await wait_for(lambda: pool.idle_count() == 0))
        self.assertTrue(await wait_for(lambda: disconnects(postfix) == 3))
        self.assertEqual((await self.send(client, data=message(5)))[0], 250)
        await self.settle(postfix)
        self.assertEqual(sorted(delivered_ids(postfix)), list(range(6)))
        self.assertEqual(connections(postfix), 4)

    async def test_hop_restarts_mid_run(self):
        # Postfix stops and starts again while two clients keep sending: every message that
        # got a 250 arrives exactly once; those in flight or sent while it was down get 4xx
        # (and arrive at most once); after the restart the pool opens new connections.
        postfix = start_postfix(self)
        server, port = self.start_pooled(postfix, "pool 2 timeout 10")
        accepted, deferred_, state = [], [], {"restarted": False, "after": 0}

        async def keep_sending(first):
            client = await self.session(port)
            n = first
            while state["after"] < 6:
                code, lines = await self.send(client, data=message(n))
                self.assertIn(code // 100, (2, 4), (n, code, lines))
                (accepted if code == 250 else deferred_).append(n)
                if state["restarted"] and code == 250:
                    state["after"] += 1
                n += 1

        async def restart():
            self.assertTrue(await wait_for(lambda: len(accepted) >= 6))
            await threads.deferToThread(postfix.stop)
            await threads.deferToThread(postfix.start)
            state["restarted"] = True

        await defer.gatherResults([defer.Deferred.fromCoroutine(keep_sending(0)),
                                   defer.Deferred.fromCoroutine(keep_sending(100000)),
                                   defer.Deferred.fromCoroutine(restart())])
        await self.settle(postfix)
        # Each message reached Postfix once: one queue id each. (Postfix itself may deliver
        # one queue file twice when it is stopped between the delivery and the file's
        # removal: its own at-least-once rule, not a second copy from us.)
        queue_ids = {}
        for n, queue_id in deliveries(postfix):
            queue_ids.setdefault(n, set()).add(queue_id)
        self.assertEqual({n: q for n, q in queue_ids.items() if len(q) > 1}, {}, "sent twice")
        ids = set(queue_ids)
        self.assertTrue(set(accepted) <= ids, set(accepted) - ids)
        self.assertTrue(ids <= set(accepted) | set(deferred_))
        self.assertTrue(deferred_, "no message was in flight or sent while Postfix was down")
        self.assertGreaterEqual(connections(postfix), 2)

    async def test_starttls_connection_is_reused(self):
        certs = make_certs(os.path.abspath(self.mktemp()), "postfix.test")
        postfix = start_postfix(self, settings=tls_settings(certs.cert, certs.key))
        server, port = self.start_pooled(postfix)
        notes = capture_queue_notes(server, "smtp_forward_tls")
        client = await self.session(port)
        for n in range(3):
            self.assertEqual((await self.send(client, data=message(n)))[0], 250)
        await self.settle(postfix)
        self.assertEqual(sorted(delivered_ids(postfix)), [0, 1, 2])
        for delivery in postfix.deliveries():
            self.assertRegex(delivery.message, rb"\n\t\(using TLSv1\.[23] with cipher ")
        self.assertEqual(connections(postfix), 1)
        self.assertEqual(postfix.maillog().count("TLS connection established from"), 1)
        self.assertEqual(len(notes), 3)
        self.assertTrue(all(note and note["protocol"].startswith("TLSv1.") for note in notes), notes)


class PoolToDovecotLmtpTests(TransactionMixin, unittest.TestCase):
    """``lmtp pool``: a real Dovecot LMTP server (``tests/support/dovecot.py``)."""

    async def test_lmtp_messages_and_a_refusal_over_one_connection(self):
        dovecot = start_dovecot(self)
        server, port = start_server(self, ["rcpt_ok", "queue/smtp-forward 127.0.0.1 %d lmtp pool 2"
                                           % dovecot.port])
        self.addCleanup(server.stop_plugins)
        client = await self.session(port)
        for n in range(3):
            code, lines = await self.send(client, recipients=["<alice@example.com>"],
                                          data=message(n))
            self.assertEqual(code, 250, lines)
            self.assertRegex(lines[0], r"^2\.0\.0 <alice@example\.com> \S+ Saved$")
            if n == 1:
                self.assertEqual(await self.send(client, recipients=["<nobody@example.com>"]), (
                    552, ["5.1.1 <nobody@example.com> User doesn't exist: nobody@example.com"]))
        self.assertEqual(server.plugins[-1].pool.opened, 1)
        delivered = dovecot.delivered("alice")
        self.assertEqual(sorted(re.search(rb"Subject: pooled (\d)", m).group(1) for m in delivered),
                         [b"0", b"1", b"2"])


class PoolRetryTests(TransactionMixin, unittest.TestCase):
    """What is retried on a new connection, and what is not (scripted hop, see the docstring)."""

    def front(self, hop_port):
        server, port = start_server(self, ["rcpt_ok", "queue/smtp-forward 127.0.0.1 %d pool 2"
                                           % hop_port])
        self.addCleanup(server.stop_plugins)
        self.log = capture_log(self, server)
        return port

    async def two_messages(self, hop_port):
        client = await self.session(self.front(hop_port))
        first = await self.send(client, data=message(1))
        self.assertEqual(first[0], 250, first)
        return await self.send(client, data=message(2))

    def retried(self):
        return [m for _, m in self.log if "once more on a new one" in m]

    async def test_closed_at_rset_is_sent_again_on_a_new_connection(self):
        hop, hop_port = start_fake_hop(self)
        hop.replies["RSET"] = "close"
        self.assertEqual(await self.two_messages(hop_port), (250, ["queued as ABC123"]))
        self.assertEqual(len(hop.connections), 2)
        self.assertEqual([m.count(b"Message-Id") for m in hop.messages], [1, 1])
        self.assertIn(b"<pool-2@b.example>", hop.messages[1])
        [line] = self.retried()
        self.assertIn("connection to the next hop lost", line)

    async def test_421_at_rset_is_sent_again_on_a_new_connection(self):
        hop, hop_port = start_fake_hop(self)
        hop.replies["RSET"] = "421 4.4.2 fake.example closing"
        self.assertEqual(await self.two_messages(hop_port), (250, ["queued as ABC123"]))
        self.assertEqual(len(hop.connections), 2)
        self.assertEqual(len(hop.messages), 2)

    async def test_lost_after_the_final_dot_is_not_sent_again(self):
        # The hop may have the message: a 451 (the client retries; RFC 1047's duplicate is
        # the price), never a second copy from us.
        hop, hop_port = start_fake_hop(self)
        client = await self.session(self.front(hop_port))
        self.assertEqual((await self.send(client, data=message(1)))[0], 250)
        hop.after_data = "close"
        code, lines = await self.send(client, data=message(2))
        self.assertEqual(code, 451)
        self.assertRegex(lines[0], r"^Unable to queue message \(connection to the next hop lost")
        self.assertEqual(len(hop.connections), 1)
        self.assertEqual(len(hop.messages), 2)
        self.assertEqual(self.retried(), [])

    async def test_tcp_nodelay_on_the_connection_to_the_hop(self):
        # Without it a reused connection's small writes (commands, the final dot) wait for
        # the hop's delayed ACK: 40 ms stalls that bench/backends.py showed (p50 231 ms).
        hop, hop_port = start_fake_hop(self)
        server, port = start_server(self, ["rcpt_ok", "queue/smtp-forward 127.0.0.1 %d pool 2"
                                           % hop_port])
        self.addCleanup(server.stop_plugins)
        client = await self.session(port)
        self.assertEqual((await self.send(client, data=message(1)))[0], 250)
        [(connection, _)] = server.plugins[-1].pool._idle
        self.assertEqual(connection.transport.getHandle().getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)

    async def test_connection_of_a_cancelled_hook_is_aborted_not_reused(self):
        # The hook's own limit (timeout=1) cancels the delivery while the hop sits on the
        # message: that connection is in the middle of a transaction, so it is aborted (no
        # QUIT, which inside a message would be text) and the next message gets a new one.
        hop, hop_port = start_fake_hop(self)
        hop.after_data = "stall"
        server, port = start_server(self, ["rcpt_ok", "timeout=1 queue/smtp-forward 127.0.0.1 %d "
                                           "pool 2" % hop_port])
        self.addCleanup(server.stop_plugins)
        client = await self.session(port)
        sending = defer.Deferred.fromCoroutine(self.send(client, data=message(1)))
        self.assertTrue(await wait_for(lambda: hop.messages))
        server.hooks.clock.advance(1)           # the hook limits' clock (see make_server)
        self.assertEqual(await sending, (451, ["Timeout in processing, try again later"]))
        hop.after_data = None
        self.assertEqual((await self.send(client, data=message(2)))[0], 250)
        self.assertEqual(len(hop.connections), 2)
        self.assertEqual([c.split(" ")[0] for c in hop.commands],
                         ["EHLO", "MAIL", "RCPT", "DATA", "EHLO", "MAIL", "RCPT", "DATA"])

    async def test_a_new_connection_is_not_retried(self):
        hop, hop_port = start_fake_hop(self)
        hop.replies["MAIL"] = "close"
        client = await self.session(self.front(hop_port))
        code, lines = await self.send(client, data=message(1))
        self.assertEqual(code, 451)
        self.assertEqual(len(hop.connections), 1)
        self.assertEqual(self.retried(), [])


class PoolArgumentTests(unittest.TestCase):
    def test_arguments(self):
        server = make_server(self, ["rcpt_ok", "queue/smtp-forward h pool 3 pool_idle 2.5 "
                                               "pool_messages 7"])
        pool = server.plugins[-1].pool
        self.assertEqual((pool.max_idle, pool.idle_timeout, pool.max_uses), (3, 2.5, 7))
        server = make_server(self, ["rcpt_ok", "queue/smtp-forward h"])
        self.assertIsNone(server.plugins[-1].pool)

    def test_bad_arguments_stop_start_up(self):
        for line, why in (("h pool x", "pool must be a whole number"),
                          ("h pool -1", "pool must be a whole number >= 0"),
                          ("h pool 2 pool_idle 0", "pool_idle must be a number of seconds"),
                          ("h pool 2 pool_messages 0", "pool_messages must be a whole number >= 1"),
                          ("h pool 2 proxy", "pool cannot be combined with proxy"),
                          ("h xclient pool 2", "pool cannot be combined with xclient")):
            with self.assertRaises(StartupError, msg=line) as caught:
                make_server(self, ["rcpt_ok", "queue/smtp-forward " + line])
            self.assertIn(why, str(caught.exception))
