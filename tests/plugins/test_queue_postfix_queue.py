"""queue/postfix-queue against a REAL Postfix (queue/smtp-forward's tests against it are in
test_queue_smtp_forward.py).

``tests/support/postfix.py`` starts a private instance of Debian's Postfix for each test
that needs one (own config, queue and data directories under /tmp, smtpd on a free
127.0.0.1 port, every address delivered by a ``pipe`` transport into files that record the
envelope exactly as Postfix hands it over). Those tests are skipped with the reason where
Postfix cannot run (not root, package missing).

STAND-INS, only for what a real Postfix cannot be made to do on purpose: ``FakeCleanup``
is a small unix-socket server written for these tests that accepts and never answers,
answers with bytes that are not the cleanup protocol, closes half-way, or sends a status
of our choosing after recording the exact bytes it received. Every test that uses it
says so.
"""

import io
import os
import re
import tempfile
import time

from twisted.internet import defer, protocol, reactor
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from qpsmtpd_tx.address import Address
from qpsmtpd_tx.codes import DECLINED, DENY, DENYSOFT
from qpsmtpd_tx.server import StartupError
from tests.support import harness
from tests.support.harness import make_server
from tests.support.postfix import start_postfix
from tests.support.postfix_cases import (AUTH_RESULTS, BODY, HEADER, LONG, STRICT, UNSTUFFED,
                                         PostfixTestCase, wait_for)


def plugin_module():
    return harness.plugin_module("queue/postfix-queue")


def record(rtype, data):
    """A queue-file record built independently of the plugin (short and 2-byte lengths)."""
    n = len(data)
    length = bytes([n]) if n < 128 else bytes([(n & 0x7F) | 0x80, n >> 7])
    return rtype + length + data


# -- the real Postfix, through its cleanup service ---------------------------------------------

class CleanupDeliveryTests(PostfixTestCase):
    async def test_delivered_with_exact_envelope_and_body(self):
        postfix = start_postfix(self)
        # size_threshold 10: the body is spooled to a file, as big messages are
        server, port = self.start_front("queue/postfix-queue %s" % postfix.cleanup_socket,
                                        {"size_threshold": "10"})
        client = await self.session(port)
        recipients = ["u@example.com", "v w@example.com", "U.Mixed@Example.NET"]
        code, lines = await self.send(
            client, recipients=["<u@example.com>", '<"v w"@example.com>', "<U.Mixed@Example.NET>"])
        self.assertEqual(code, 250, lines)
        [line] = lines
        m = re.match(r"Queued! <pq-1@b\.example> \(Queue-Id: ([0-9A-F]{6,})\)\Z", line)
        self.assertTrue(m, line)
        queue_id = m.group(1)

        # a second message on the same connection: null sender, no Message-Id
        code, lines = await self.send(client, sender="<>", data=b"Subject: bounce\r\n\r\nbody\r\n")
        self.assertEqual(code, 250, lines)
        m2 = re.match(r"Queued! \(Queue-Id: ([0-9A-F]{6,})\)\Z", lines[0])
        self.assertTrue(m2, lines)
        self.assertNotEqual(m2.group(1), queue_id)

        await self.settle(postfix)
        deliveries = postfix.deliveries()
        first = [d for d in deliveries if d.queue_id == queue_id]
        # example.com and example.net are two next hops: two deliveries of the one message
        self.assertEqual(sorted(r for d in first for r in d.recipients), sorted(recipients))
        self.assertEqual(len(first), 2)
        for delivery in first:
            self.assertEqual(delivery.sender, "a@b.example")
            self.assert_our_message(delivery.message)
        [second] = [d for d in deliveries if d.queue_id == m2.group(1)]
        self.assertEqual((second.sender, second.recipients), ("", ["u@example.com"]))
        # Postfix adds the Message-Id, Date and From: this mail is "local" to it (see the doc)
        self.assertIn(b"\nSubject: bounce\nMessage-Id: <", second.message)
        self.assertTrue(second.message.endswith(b"\nFrom: MAILER-DAEMON\n\nbody\n"), second.message)
        self.assertEqual(len(deliveries), 3)
        self.assertIn("%s: from=<a@b.example>, size=" % queue_id, postfix.maillog())

    async def test_postfix_stopped_then_started_again(self):
        postfix = start_postfix(self)
        server, port = self.start_front("queue/postfix-queue %s" % postfix.cleanup_socket)
        postfix.stop()
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (cannot connect to %s: Connection refused)"
            % postfix.cleanup_socket]))
        postfix.start()
        code, lines = await self.send(client)
        self.assertEqual(code, 250, lines)
        await self.settle(postfix)
        # the refused attempt left nothing behind; the accepted one is there once
        [delivery] = postfix.deliveries()
        self.assertIn("(Queue-Id: %s)" % delivery.queue_id, lines[0])
        self.assert_our_message(delivery.message)

    async def test_client_leaves_before_the_reply(self):
        postfix = start_postfix(self)
        server, port = self.start_front("queue/postfix-queue %s" % postfix.cleanup_socket,
                                        {"size_threshold": "10"})
        client = await self.session(port)
        for line in ("MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"):
            await client.command(line)
        client.transport.write(HEADER + b"\r\n" + BODY + b".\r\n")
        client.transport.loseConnection()
        self.assertTrue(await wait_for(lambda: postfix.deliveries()))
        await self.settle(postfix)
        [delivery] = postfix.deliveries()
        self.assert_our_message(delivery.message)

    async def test_cleanup_over_tcp_and_the_socket_precedence(self):
        postfix = start_postfix(self, cleanup_port=True)
        tcp = "127.0.0.1:%d" % postfix.cleanup_port
        missing = os.path.join(tempfile.mkdtemp(prefix="qptx-nosock-"), "cleanup")
        self.addCleanup(os.rmdir, os.path.dirname(missing))
        # cleanup_sockets wins over the argument; a dead first entry is passed over
        server, port = self.start_front("queue/postfix-queue /nonexistent/cleanup",
                                        {"cleanup_sockets": "%s\n%s" % (missing, tcp)})
        client = await self.session(port)
        code, lines = await self.send(client)
        self.assertEqual(code, 250, lines)
        # POSTFIXQUEUE wins over everything
        self.setenv("POSTFIXQUEUE", postfix.cleanup_socket)
        server2, port2 = self.start_front("queue/postfix-queue %s" % missing,
                                          {"cleanup_sockets": missing})
        client2 = await self.session(port2)
        code2, lines2 = await self.send(client2)
        self.assertEqual(code2, 250, lines2)
        await self.settle(postfix)
        self.assertEqual(sorted(d.queue_id for d in postfix.deliveries()),
                         sorted(re.search(r"Queue-Id: (\w+)", t[0]).group(1) for t in (lines, lines2)))
        for delivery in postfix.deliveries():
            self.assert_our_message(delivery.message)


class CleanupRefusalTests(PostfixTestCase):
    """Cleanup's verdicts from a real Postfix, and what the flags change."""

    async def test_flags_decide_whether_header_checks_apply(self):
        postfix = start_postfix(self, **STRICT)
        plain, plain_port = self.start_front("queue/postfix-queue %s" % postfix.cleanup_socket)
        strict, strict_port = self.start_front(
            "queue/postfix-queue %s FLAG_MASK_EXTERNAL" % postfix.cleanup_socket)
        rejected = HEADER.replace(b"Subject: to postfix", b"Subject: reject me") + b"\r\nbody\r\n"
        deferred = HEADER.replace(b"Subject: to postfix", b"Subject: defer me") + b"\r\nbody\r\n"

        client = await self.session(strict_port)
        self.assertEqual(await self.send(client, data=rejected),
                         (552, ["5.7.1 refused by the test's header_checks"]))
        self.assertEqual(await self.send(client, data=deferred),
                         (452, ["4.7.0 deferred by the test's header_checks"]))
        await self.settle(postfix)
        self.assertEqual(postfix.deliveries(), [])

        # without FLAG_FILTER cleanup does not look at the header checks
        client = await self.session(plain_port)
        code, lines = await self.send(client, data=rejected)
        self.assertEqual(code, 250, lines)
        await self.settle(postfix)
        [delivery] = postfix.deliveries()
        self.assertIn(b"\nSubject: reject me\n", delivery.message)

    async def test_hold_flag(self):
        postfix = start_postfix(self)
        server, port = self.start_front("queue/postfix-queue %s FLAG_HOLD" % postfix.cleanup_socket)
        client = await self.session(port)
        code, lines = await self.send(client)
        self.assertEqual(code, 250, lines)
        queue_id = re.search(r"\(Queue-Id: (\w+)\)", lines[0]).group(1)
        self.assertEqual(postfix.hold_queue(), [queue_id])
        await deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(postfix.deliveries(), [])

    async def test_size_and_hop_limits(self):
        postfix = start_postfix(self, **STRICT)
        server, port = self.start_front("queue/postfix-queue %s" % postfix.cleanup_socket)
        client = await self.session(port)
        big = HEADER + b"\r\n" + (b"z" * 70 + b"\r\n") * 300        # ~21 KB > 20000
        self.assertEqual(await self.send(client, data=big),
                         (552, ["message file too big (#5.3.4)"]))
        received = b"Received: from x by y; Tue, 24 Nov 2026 10:00:00 +0000\r\n"
        # with ours, five Received fields: hopcount_limit 5 is reached
        self.assertEqual(await self.send(client, data=received * 4 + HEADER + b"\r\nhi\r\n"),
                         (552, ["too many hops (#5.4.0)"]))
        # four are fine
        code, lines = await self.send(client, data=received * 3 + HEADER + b"\r\nhi\r\n")
        self.assertEqual(code, 250, lines)
        await self.settle(postfix)
        self.assertEqual(len(postfix.deliveries()), 1)


# -- rcpt_ok in front of the real Postfix -------------------------------------------------------

#: local parts that Postfix's defaults (allow_percent_hack, swap_bangpath,
#: resolve_dequoted_address) route to evil.example although the domain is local
ROUTED_ELSEWHERE = ["<victim%evil.example@example.com>", "<evil.example!victim@example.com>",
                    '<"victim@evil.example"@example.com>']


class RoutingLocalPartTests(PostfixTestCase):
    """rcpt_ok keeps the percent hack, bang paths and quoted "@" from making an open relay."""

    async def test_postfix_routes_them_elsewhere_so_rcpt_ok_refuses_them(self):
        postfix = start_postfix(self)
        queue_line = "queue/postfix-queue %s" % postfix.cleanup_socket
        # What Postfix does with them: a relay client (which may relay anyway) hands each
        # to it through queue/postfix-queue, and Postfix delivers to victim@evil.example.
        _, relay_port = self.start_front(queue_line, {"relayclients": "127.0.0.1"},
                                         plugins=["relay"])
        client = await self.session(relay_port)
        for rcpt in ROUTED_ELSEWHERE:
            code, lines = await self.send(client, recipients=[rcpt])
            self.assertEqual(code, 250, (rcpt, lines))
        await self.settle(postfix)
        self.assertEqual([d.recipients for d in postfix.deliveries()],
                         [["victim@evil.example"]] * len(ROUTED_ELSEWHERE), postfix.maillog())

        # Any other client is refused at RCPT, and Postfix gets only the local recipient.
        _, port = self.start_front(queue_line)
        client = await self.session(port)
        self.assertEqual((await client.command("MAIL FROM:<a@b.example>"))[0], 250)
        for rcpt in ROUTED_ELSEWHERE:
            self.assertEqual(await client.command("RCPT TO:%s" % rcpt),
                             (550, ["Relaying denied (#5.7.1)"]), rcpt)
        self.assertEqual((await client.command("RCPT TO:<u@example.com>"))[0], 250)
        self.assertEqual((await client.command("DATA"))[0], 354)
        client.transport.write(HEADER + b"\r\n" + BODY + b".\r\n")
        self.assertEqual((await client.reply())[0], 250)
        await self.settle(postfix)
        self.assertEqual([d.recipients for d in postfix.deliveries()[len(ROUTED_ELSEWHERE):]],
                         [["u@example.com"]])


# -- stand-ins for a misbehaving cleanup --------------------------------------------------------

class FakeCleanup(protocol.Protocol):
    """A STAND-IN cleanup service (see the module docstring); the factory holds the script."""

    def connectionMade(self):
        self.factory.connections.append(self)
        self.received = b""
        script = self.factory.script
        if script == "silent":
            return
        if script == "smtp":
            self.transport.write(b"220 not.cleanup ESMTP\r\n")
            return
        self.transport.write(b"protocol\0cleanup_protocol\0queue_id\0FAKE1\0\0")
        if script == "close_after_queue_id":
            self.transport.loseConnection()

    def dataReceived(self, data):
        self.received += data
        if self.received.endswith(b"X\x00E\x00") and self.factory.status is not None:
            self.factory.messages.append(self.received)
            self.transport.write(b"status\0%d\0reason\0%s\0\0" % self.factory.status)
            self.transport.loseConnection()
        elif self.received.endswith(b"X\x00E\x00"):
            self.factory.messages.append(self.received)

    def connectionLost(self, reason):
        self.factory.open -= 1


class FakeCleanupFactory(protocol.Factory):
    protocol = FakeCleanup

    def __init__(self, script=None, status=None):
        self.script = script
        self.status = status
        self.connections = []
        self.messages = []
        self.open = 0

    def buildProtocol(self, addr):
        self.open += 1
        return protocol.Factory.buildProtocol(self, addr)


class StandInTests(PostfixTestCase):
    """Against FakeCleanup, a STAND-IN (not Postfix): the misbehaviour Postfix will not show."""

    def fake(self, script=None, status=None):
        factory = FakeCleanupFactory(script, status)
        path = os.path.join(tempfile.mkdtemp(prefix="qptx-fakecleanup-"), "cleanup")
        port = reactor.listenUNIX(path, factory)

        async def stop():
            for conn in factory.connections:
                conn.transport.abortConnection()
            await wait_for(lambda: factory.open == 0)
            await port.stopListening()
            os.rmdir(os.path.dirname(path))
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(stop()))
        return factory, path

    async def test_exact_bytes_on_the_wire(self):
        factory, path = self.fake(status=(0, b""))
        server, port = self.start_front("queue/postfix-queue %s FLAG_FILTER FLAG_BCC_OK" % path)
        client = await self.session(port)
        self.assertEqual(await self.send(client, recipients=["<u@example.com>", '<"v w"@example.com>']),
                         (250, ["Queued! <pq-1@b.example> (Queue-Id: FAKE1)"]))
        [received] = factory.messages
        flags, rest = received.split(b"\0\0", 1)
        self.assertEqual(flags, b"flags\x0018")
        # T: arrival time, "seconds microseconds"
        m = re.match(rb"T([\x0c-\x11])((\d{10}) \d{1,6})", rest)
        self.assertTrue(m, rest[:20])
        self.assertEqual(m.group(1)[0], len(m.group(2)))
        self.assertLess(abs(int(m.group(3)) - time.time()), 60)
        rest = rest[2 + rest[1]:]
        expected_envelope = (record(b"S", b"a@b.example") + record(b"R", b"u@example.com")
                             + record(b"R", b"v w@example.com") + record(b"M", b""))
        self.assertEqual(rest[:len(expected_envelope)], expected_envelope)
        content = rest[len(expected_envelope):]
        self.assertTrue(content.endswith(b"X\x00E\x00"))
        lines = UNSTUFFED.split(b"\n")[:-1]
        expected_message = []
        for line in lines:
            if line == LONG:
                expected_message += [record(b"L", LONG[:2048]), record(b"L", LONG[2048:4096]),
                                     record(b"N", LONG[4096:])]
            else:
                expected_message.append(record(b"N", line))
        expected_tail = b"".join(expected_message) + b"X\x00E\x00"
        self.assertTrue(content.endswith(expected_tail), content[-300:])
        # before the client's message: our Received (folded: two lines) and A-R
        ours = content[:-len(expected_tail)]
        self.assertTrue(ours.startswith(b"N"), ours)
        self.assertTrue(ours.endswith(record(b"N", AUTH_RESULTS.rstrip(b"\n"))), ours)

    async def test_never_answers(self):
        factory, path = self.fake("silent")
        server, port = self.start_front("queue/postfix-queue %s timeout 0.5" % path)
        client = await self.session(port)
        # (the reply names the 0.5 s limit: that timer, not another, ended the wait)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (%s: timed out after 0.5 seconds waiting for cleanup)" % path]))

    async def test_no_verdict_after_the_message(self):
        factory, path = self.fake()          # takes the message, never says the status
        server, port = self.start_front("queue/postfix-queue %s timeout 0.4" % path)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (timed out after 2 seconds waiting for cleanup)"]))
        self.assertEqual(len(factory.messages), 1)

    async def test_closed_half_way_and_not_the_protocol(self):
        for script, why in (
                ("close_after_queue_id", "Unable to queue message (cleanup closed the connection "
                                         "before its verdict)"),
                ("smtp", "Unable to queue message (%s: not the cleanup protocol: "
                         "b'220 not.cleanup ESMTP\\r\\n')")):
            factory, path = self.fake(script)
            server, port = self.start_front("queue/postfix-queue %s" % path)
            client = await self.session(port)
            self.assertEqual(await self.send(client), (451, [why.replace("%s", path)]), script)

    async def test_statuses(self):
        for status, reply in (((256, b""), (452, ["service unavailable (#4.7.1)"])),
                              ((4 | 256, b""), (452, ["service unavailable (#4.7.1)"])),
                              ((2, b""), (452, ["queue file write error (#4.3.0)"])),
                              ((8, b"5.7.1 go away"), (552, ["5.7.1 go away"])),
                              ((64, b""), (552, ["no recipients specified (#5.1.0)"])),
                              ((1024, b"odd"), (451, ["Unable to queue message (1024, odd)"]))):
            factory, path = self.fake(status=status)
            server, port = self.start_front("queue/postfix-queue %s" % path)
            client = await self.session(port)
            self.assertEqual(await self.send(client), reply, status)

    async def test_next_socket_when_one_does_not_answer(self):
        silent, silent_path = self.fake("silent")
        good, good_path = self.fake(status=(0, b""))
        server, port = self.start_front("queue/postfix-queue timeout 0.5",
                                        {"cleanup_sockets": "%s\n%s" % (silent_path, good_path)})
        client = await self.session(port)
        self.assertEqual(await self.send(client),
                         (250, ["Queued! <pq-1@b.example> (Queue-Id: FAKE1)"]))
        self.assertEqual((len(silent.messages), len(good.messages)), (0, 1))

    async def test_absent_socket(self):
        server, port = self.start_front("queue/postfix-queue /nonexistent/public/cleanup")
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (cannot connect to /nonexistent/public/cleanup: "
            "No such file or directory)"]))


# -- pieces ------------------------------------------------------------------------------------

class UnitTests(unittest.TestCase):
    def test_record_lengths(self):
        module = plugin_module()
        self.assertEqual(module.record(b"N", b""), b"N\x00")
        self.assertEqual(module.record(b"N", b"a" * 127), b"N\x7f" + b"a" * 127)
        self.assertEqual(module.record(b"N", b"a" * 128), b"N\x80\x01" + b"a" * 128)
        self.assertEqual(module.record(b"L", b"a" * 2048), b"L\x80\x10" + b"a" * 2048)
        self.assertEqual(module.record(b"N", b"a" * 16384)[:4], b"N\x80\x80\x01")

    def test_content_records_do_not_depend_on_chunks(self):
        module = plugin_module()
        text = b"a\n\nb" + b"c" * 4100 + b"\n" + b"d" * 2048 + b"\nend"
        whole = module.ContentEncoder()
        expected = whole.feed(text) + whole.finish()
        self.assertEqual(expected, record(b"N", b"a") + record(b"N", b"") + record(b"L", b"b" + b"c" * 2047)
                         + record(b"L", b"c" * 2048) + record(b"N", b"c" * 5)
                         + record(b"N", b"d" * 2048) + record(b"N", b"end"))
        for size in (1, 7, 2048, 2049):
            encoder = module.ContentEncoder()
            out = b"".join(encoder.feed(text[i:i + size]) for i in range(0, len(text), size))
            self.assertEqual(out + encoder.finish(), expected, size)

    def test_attribute_groups(self):
        module = plugin_module()
        self.assertEqual(module.attribute_group([("flags", 114)]), b"flags\x00114\x00\x00")
        self.assertIsNone(module.parse_group(b"queue_id\0AB"))
        self.assertIsNone(module.parse_group(b"queue"))
        self.assertEqual(module.parse_group(b"protocol\0cleanup_protocol\0queue_id\0AB12\0\0rest"),
                         ({"protocol": "cleanup_protocol", "queue_id": "AB12"}, b"rest"))
        for garbage in (b"220 mail", b"220 mail\0\0", b"x" * 70000):
            self.assertRaises(module.CleanupError, module.parse_group, garbage)

    def test_status_verdicts(self):
        verdict = plugin_module().status_verdict
        self.assertEqual(verdict(256, ""), (DENYSOFT, "service unavailable (#4.7.1)"))
        self.assertEqual(verdict(128, ""), (DENYSOFT, "queue file write error (#4.3.0)"))
        self.assertEqual(verdict(1, ""), (DENYSOFT, "internal protocol error (#4.3.0)"))
        self.assertEqual(verdict(2, "4.3.0 disk full"), (DENYSOFT, "4.3.0 disk full"))
        self.assertEqual(verdict(64, ""), (DENY, "no recipients specified (#5.1.0)"))
        self.assertEqual(verdict(16, ""), (DENY, "too many hops (#5.4.0)"))
        self.assertEqual(verdict(4, ""), (DENY, "message file too big (#5.3.4)"))
        self.assertEqual(verdict(8, ""), (DENY, "message content rejected (#5.7.1)"))
        self.assertEqual(verdict(8 | 2, ""), (DENYSOFT, "queue file write error (#4.3.0)"))
        self.assertEqual(verdict(32, "x"), (DECLINED, "Unable to queue message (32, x)"))

    def test_producer_with_a_last_line_without_its_end(self):
        # "abc" gives no record until the end: the pull producer must still go on to E
        module = plugin_module()
        cleanup = module.CleanupProtocol(5, clock=Clock())
        transport = StringTransport()
        cleanup.makeConnection(transport)
        sent = cleanup.send_message(b"HEAD", b"h: v\n\n", io.BytesIO(b"abc"))
        # as a real transport does: ask again only after something was written
        while transport.producer is not None:
            written = len(transport.value())
            transport.producer.resumeProducing()
            if len(transport.value()) == written and transport.producer is not None:
                self.fail("the producer wrote nothing and would not be asked again")
        self.assertEqual(transport.value(), b"HEAD" + record(b"N", b"h: v") + record(b"N", b"")
                         + record(b"N", b"abc") + b"X\x00E\x00")
        self.assertTrue(sent.called)

    def test_reason_text(self):
        reason_text = plugin_module().reason_text
        self.assertEqual(reason_text("5.7.1 refused  by\tchecks"), "5.7.1 refused by checks")
        self.assertEqual(reason_text("550-5.7.1 first\r\n550 5.7.1 second\r\n"),
                         "5.7.1 first\n5.7.1 second")
        self.assertEqual(reason_text(""), "")

    def test_envelope_records(self):
        module = plugin_module()
        self.assertEqual(module.envelope_records(Address.null(), [Address("p q", "example.com")],
                                                 now=1700000000.25),
                         b"T\x111700000000 250000S\x00R\x0fp q@example.com" + b"M\x00")


class ArgumentTests(PostfixTestCase):
    def plugin(self, server):
        return next(p for p in server.plugins if p.path == "queue/postfix-queue")

    def test_defaults_flags_and_sockets(self):
        self.setenv("POSTFIXQUEUE", None)
        plugin = self.plugin(make_server(self, ["queue/postfix-queue"]))
        self.assertEqual((plugin.sockets(), plugin.flags, plugin.timeout),
                         (["/var/spool/postfix/public/cleanup"], 0, 60))
        plugin = self.plugin(make_server(self, ["queue/postfix-queue FLAG_MASK_EXTERNAL FLAG_HOLD timeout 5"]))
        self.assertEqual((plugin.sockets(), plugin.flags, plugin.timeout),
                         (["/var/spool/postfix/public/cleanup"], 118, 5))
        plugin = self.plugin(make_server(self, ["queue/postfix-queue [::1]:10025 FLAG_NONE"]))
        self.assertEqual((plugin.sockets(), plugin.flags), (["[::1]:10025"], 0))
        plugin = self.plugin(make_server(self, ["queue/postfix-queue /run/c"],
                                         {"cleanup_sockets": "/a/cleanup\nmail.example:10025"}))
        self.assertEqual(plugin.sockets(), ["/a/cleanup", "mail.example:10025"])
        self.setenv("POSTFIXQUEUE", "/b/cleanup")
        plugin = self.plugin(make_server(self, ["queue/postfix-queue /run/c"],
                                         {"cleanup_sockets": "/a/cleanup"}))
        self.assertEqual(plugin.sockets(), ["/b/cleanup"])

    def test_bad_arguments_stop_start_up(self):
        self.setenv("POSTFIXQUEUE", None)
        for line, why in (("queue/postfix-queue FLAG_NOPE", "unknown cleanup flag 'FLAG_NOPE'"),
                          ("queue/postfix-queue relative/cleanup", "bad cleanup socket"),
                          ("queue/postfix-queue /a FLAG_HOLD /b", "unknown cleanup flag '/b'"),
                          ("queue/postfix-queue timeout", "timeout needs"),
                          ("queue/postfix-queue timeout 0", "timeout must be positive"),
                          ("queue/postfix-queue host:99999", "bad cleanup socket")):
            with self.assertRaises(StartupError, msg=line) as caught:
                make_server(self, [line])
            self.assertIn("plugin queue/postfix-queue", str(caught.exception))
            self.assertIn(why, str(caught.exception))
        with self.assertRaises(StartupError) as caught:
            make_server(self, ["queue/postfix-queue"], {"cleanup_sockets": "/ok\nnot a socket"})
        self.assertIn("'not a socket' is neither an absolute path nor host:port", str(caught.exception))
        self.setenv("POSTFIXQUEUE", "relative")
        self.assertRaises(StartupError, make_server, self, ["queue/postfix-queue"])
