"""queue/smtp-forward over real sockets: SMTP to a second qpsmtpd-tx and to a real Postfix, LMTP
to a real Dovecot.

The next hops:
  - a second qpsmtpd-tx instance (``start_server``: ``rcpt_ok`` + ``queue/maildir``, with the
    ``scripted`` test plugin to make it refuse), whose Maildir is checked byte for byte;
  - Debian's Dovecot LMTP server (``dovecot-lmtpd``), started privately by
    ``tests/support/dovecot.py`` (skipped with the reason where it cannot run: not root, not
    installed);
  - a private instance of Debian's Postfix (``tests/support/postfix.py``, its smtpd on a free
    127.0.0.1 port; skipped with the reason where Postfix cannot run), whose deliveries record
    the envelope exactly as Postfix hands it over;
  - ``FakeHop``, a small scripted SMTP/LMTP server written for these tests, only where a real
    server cannot be made to misbehave on purpose: never greeting, stalling after the message,
    dropping the connection, advertising XCLIENT, answering per recipient on demand. The
    bytes it receives are checked exactly (CRLF, dot-stuffing).
"""

import os
import re

from twisted.internet import defer, protocol, reactor
from twisted.internet.task import deferLater
from twisted.protocols.basic import LineReceiver
from twisted.trial import unittest

from qpsmtpd_tx.server import StartupError
from qpsmtpd_tx.testing import capture_queue_notes
from tests.support.dovecot import start_dovecot
from tests.support import harness
from tests.support.harness import maildir_messages, make_server, wait_for
from tests.support.postfix import start_postfix
from tests.support.postfix_cases import HEADER as POSTFIX_HEADER, STRICT, PostfixTestCase
from tests.support.processes import free_port
from tests.support.server import TransactionMixin, start_server

HEADER = (b"From: a@b.example\r\nTo: u@example.com\r\nSubject: forward\r\n"
          b"Message-Id: <fw-1@b.example>\r\n")
# already dot-stuffed, as a client sends it
BODY = (b"first\r\n..leading dot\r\n...two dots\r\n..\tdot tab\r\n\r\ncr\rinside\r\n"
        b"8bit \xc3\xa9\r\n" + b"y" * 998 + b"\r\nlast\r\n")
UNSTUFFED_LF = (HEADER + b"\r\n" + BODY).replace(b"\r\n.", b"\r\n").replace(b"\r\n", b"\n")


def forward_module():
    return harness.plugin_module("queue/smtp-forward")


class FakeHop(LineReceiver):
    """A scripted SMTP/LMTP server (see the module docstring); its factory holds the script."""

    delimiter = b"\r\n"

    def connectionMade(self):
        self.factory.connections.append(self)
        self.in_data = False
        self.data = []
        self.rcpts = 0
        if not self.factory.stall_greeting:
            self.send(self.factory.greeting)

    def connectionLost(self, reason):
        self.factory.open_connections -= 1

    def send(self, reply):
        self.transport.write(reply.replace("\n", "\r\n").encode() + b"\r\n")

    def lineReceived(self, line):
        if self.in_data:
            if line != b".":
                self.data.append(line + b"\r\n")
                return
            self.in_data = False
            self.factory.messages.append(b"".join(self.data))
            if self.factory.after_data == "stall":
                return
            if self.factory.after_data == "close":
                self.transport.loseConnection()
                return
            replies = self.factory.data_replies or ["250 2.0.0 Ok: queued as ABC123"]
            for reply in replies[:self.rcpts if self.factory.lmtp else 1]:
                self.send(reply)
            return
        text = line.decode("utf-8", "replace")
        self.factory.commands.append(text)
        verb = text.split(" ")[0].upper()
        script = self.factory.replies.get(verb)
        if script == "close":
            self.transport.loseConnection()
            return
        if script == "stall":
            return
        if isinstance(script, list):
            reply = script.pop(0) if len(script) > 1 else script[0]
        else:
            reply = script or {"EHLO": "250 fake.example", "LHLO": "250 fake.example",
                               "HELO": "250 fake.example", "DATA": "354 go on",
                               "QUIT": "221 bye"}.get(verb, "250 ok")
        if verb == "RCPT" and reply.startswith("2"):
            self.rcpts += 1
        if verb == "DATA" and reply.startswith("354"):
            self.in_data = True
            self.data = []
        self.send(reply)
        if verb == "QUIT":
            self.transport.loseConnection()


class FakeHopFactory(protocol.Factory):
    protocol = FakeHop

    def __init__(self, lmtp=False):
        self.lmtp = lmtp
        self.greeting = "220 fake.example ESMTP"
        self.stall_greeting = False
        self.replies = {}
        self.after_data = None
        self.data_replies = []
        self.connections = []
        self.commands = []
        self.messages = []
        self.open_connections = 0

    def buildProtocol(self, addr):
        self.open_connections += 1
        return protocol.Factory.buildProtocol(self, addr)


def start_fake_hop(testcase, lmtp=False):
    factory = FakeHopFactory(lmtp)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")

    async def stop():
        for conn in factory.connections:
            conn.transport.abortConnection()
        await wait_for(lambda: factory.open_connections == 0)
        await port.stopListening()

    testcase.addCleanup(lambda: defer.Deferred.fromCoroutine(stop()))
    return factory, port.getHost().port


class ForwardTestCase(TransactionMixin, unittest.TestCase):
    default_message = HEADER + b"\r\n" + BODY

    def start_hop(self, plugins=(), files=None):
        """A second qpsmtpd-tx delivering to a Maildir; returns (server, port, maildir)."""
        maildir = os.path.abspath(self.mktemp())
        server, port = start_server(self, list(plugins) + ["rcpt_ok", "queue/maildir %s" % maildir],
                                    files)
        return server, port, maildir

    def start_front(self, args, files=None, plugins=()):
        return start_server(self, list(plugins) + ["rcpt_ok", "queue/smtp-forward %s" % args], files)



class SecondInstanceTests(ForwardTestCase):
    """Forward to another qpsmtpd-tx: the delivered bytes and the passed-on refusals."""

    async def test_delivered_bytes(self):
        # the hop has its own name: it removes Authentication-Results fields bearing its own
        hop, hop_port, maildir = self.start_hop(files={"size_threshold": "10",
                                                       "me": "hop.example.org"})
        front, port = self.start_front("127.0.0.1 %d" % hop_port, {"size_threshold": "10"})
        client = await self.session(port)
        code, lines = await self.send(client, recipients=["<u@example.com>", '<"v w"@example.com>'])
        self.assertEqual((code, lines), (250, ["queued as <fw-1@b.example>"]))
        [message] = maildir_messages(maildir)
        head, sep, rest = message.partition(b"\nAuthentication-Results: hop.example.org; auth=none\n")
        # The hop's own headers: Return-Path, Delivered-To, its Received (from us, by EHLO
        # name mx.example.org) and Authentication-Results.
        self.assertTrue(head.startswith(b"Return-Path: <a@b.example>\nDelivered-To: u@example.com\n"
                                        b'Delivered-To: "v w"@example.com\nReceived: from '), head)
        self.assertIn(b"(HELO mx.example.org) (127.0.0.1)", head)
        # Then ours (the front's Received and A-R), then the client's message unchanged
        # (LF line endings in the Maildir, dots unstuffed).
        head2, sep2, original = rest.partition(b"\nAuthentication-Results: mx.example.org; auth=none\n")
        self.assertTrue(sep2, rest[:400])
        self.assertIn(b"(HELO client.example) (127.0.0.1)", head2)
        self.assertEqual(original, UNSTUFFED_LF)

    async def test_null_sender_and_several_messages_on_one_connection(self):
        hop, hop_port, maildir = self.start_hop()
        front, port = self.start_front("127.0.0.1 %d" % hop_port)
        client = await self.session(port)
        for n in range(3):
            code, lines = await self.send(client, sender="<>",
                                          data=b"Subject: %d\r\n\r\nbody %d\r\n" % (n, n))
            self.assertEqual(code, 250)
            # the hop (queue/maildir) answers "250 Queued!" without a Message-Id: last word
            self.assertEqual(lines, ["queued as Queued!"])
        messages = maildir_messages(maildir)
        self.assertEqual(len(messages), 3)
        self.assertTrue(all(m.startswith(b"Return-Path: <>\n") for m in messages))
        self.assertEqual(sorted(m.rsplit(b"\n\n", 1)[1] for m in messages),
                         [b"body 0\n", b"body 1\n", b"body 2\n"])

    async def test_5xx_for_a_recipient_is_passed_on(self):
        hop, hop_port, maildir = self.start_hop(["scripted rcpt DENY no such user"])
        front, port = self.start_front("127.0.0.1 %d" % hop_port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (552, ["no such user"]))
        self.assertEqual(maildir_messages(maildir), [])

    async def test_one_refused_recipient_refuses_the_whole_message(self):
        # The front accepts other.example, the hop does not: nothing is delivered to anyone.
        hop, hop_port, maildir = self.start_hop()
        front, port = self.start_front("127.0.0.1 %d" % hop_port,
                                       {"rcpthosts": "example.com\nother.example"})
        client = await self.session(port)
        code, lines = await self.send(client, recipients=["<u@example.com>", "<x@other.example>"])
        self.assertEqual(code, 552)
        self.assertRegex(lines[0], "(?i)relaying denied")
        self.assertEqual(maildir_messages(maildir), [])

    async def test_4xx_is_passed_on(self):
        hop, hop_port, maildir = self.start_hop(["scripted rcpt DENYSOFT mailbox busy, try later"])
        front, port = self.start_front("127.0.0.1 %d" % hop_port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, ["mailbox busy, try later"]))
        self.assertEqual(maildir_messages(maildir), [])

    async def test_refusals_at_mail_and_after_the_message(self):
        for plugin, reply in (("scripted mail DENY sender blocked", (552, ["sender blocked"])),
                              ("scripted mail DENYSOFT greylisted", (451, ["greylisted"])),
                              ("scripted data_post DENY spam\\ndetected",
                               (552, ["spam", "detected"])),
                              ("scripted data_post DENYSOFT scanner down",
                               (451, ["scanner down"]))):
            hop, hop_port, maildir = self.start_hop([plugin])
            front, port = self.start_front("127.0.0.1 %d" % hop_port)
            client = await self.session(port)
            self.assertEqual(await self.send(client), reply, plugin)
            self.assertEqual(maildir_messages(maildir), [], plugin)

    async def test_4xx_lets_a_later_queue_plugin_take_the_message(self):
        hop, hop_port, maildir = self.start_hop(["scripted rcpt DENYSOFT busy"])
        front, port = start_server(self, ["rcpt_ok", "queue/smtp-forward 127.0.0.1 %d" % hop_port,
                                          "scripted queue OK fallback"])
        client = await self.session(port)
        self.assertEqual(await self.send(client), (250, ["fallback"]))

    async def test_client_gone_message_still_forwarded_once(self):
        # The hop takes 0.5 s to accept MAIL; meanwhile our client has left (its FIN may be
        # a half-close, as Exim's after a pipelined QUIT: the front answers once the plugin
        # is done, then ends the session).
        hop, hop_port, maildir = self.start_hop(["scripted mail OK delay 0.5"])
        front, port = self.start_front("127.0.0.1 %d" % hop_port, {"size_threshold": "10"})
        client = await self.session(port)
        for line in ("MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"):
            await client.command(line)
        client.transport.write(HEADER + b"\r\n" + BODY + b".\r\n")
        client.transport.loseConnection()
        self.assertEqual(maildir_messages(maildir), [])
        self.assertTrue(await wait_for(lambda: maildir_messages(maildir)))
        self.assertTrue(await wait_for(lambda: not front.sessions))
        [message] = maildir_messages(maildir)
        self.assertTrue(message.endswith(UNSTUFFED_LF))
        await deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(len(maildir_messages(maildir)), 1)


class FailureInjectionTests(ForwardTestCase):
    async def test_next_hop_down(self):
        closed = free_port()
        front, port = self.start_front("127.0.0.1 %d" % closed)
        client = await self.session(port)
        code, lines = await self.send(client)
        self.assertEqual(code, 451)
        self.assertRegex(lines[0], r"^Unable to queue message \(cannot connect to 127\.0\.0\.1:%d: "
                         r".*[Cc]onnection refused\)$" % closed)

    async def test_next_hop_never_greets(self):
        hop, hop_port = start_fake_hop(self)
        hop.stall_greeting = True
        front, port = self.start_front("127.0.0.1 %d timeout 0.5" % hop_port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (the next hop did not answer within 0.5 seconds)"]))
        self.assertEqual(hop.messages, [])

    async def test_next_hop_slow_at_rcpt(self):
        hop, hop_port, maildir = self.start_hop(["scripted rcpt OK delay 1.5"])
        front, port = self.start_front("127.0.0.1 %d timeout 0.5" % hop_port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (the next hop did not answer within 0.5 seconds)"]))
        # let the hop's delayed answer fire (scripted's callLater), then nothing was delivered
        self.assertTrue(await wait_for(lambda: not any(
            getattr(call.func, "__name__", "") == "callback" for call in reactor.getDelayedCalls())))
        self.assertEqual(maildir_messages(maildir), [])

    async def test_next_hop_silent_after_the_message(self):
        # The reply to the final dot may take five times the timeout; then 451. (A real next
        # hop that accepted the message later would get it again on the client's retry: the
        # duplicate of RFC 1047, which no SMTP relay can rule out.)
        hop, hop_port = start_fake_hop(self)
        hop.after_data = "stall"
        front, port = self.start_front("127.0.0.1 %d timeout 0.2" % hop_port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (the next hop did not answer within 1 seconds)"]))
        self.assertEqual(len(hop.messages), 1)

    async def test_next_hop_drops_the_connection(self):
        for where, setup in (("RCPT", lambda h: h.replies.update(RCPT="close")),
                             ("end of data", lambda h: setattr(h, "after_data", "close"))):
            hop, hop_port = start_fake_hop(self)
            setup(hop)
            front, port = self.start_front("127.0.0.1 %d" % hop_port)
            client = await self.session(port)
            code, lines = await self.send(client)
            self.assertEqual(code, 451, where)
            self.assertRegex(lines[0], r"^Unable to queue message \(connection to the next hop lost",
                             where)

    async def test_garbled_and_unexpected_replies(self):
        hop, hop_port = start_fake_hop(self)
        hop.replies["MAIL"] = "hello there"
        front, port = self.start_front("127.0.0.1 %d" % hop_port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (garbled reply from the next hop: 'hello there')"]))
        hop.replies["MAIL"] = "250 ok"
        hop.replies["DATA"] = "250 no data for you"
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (unexpected reply to DATA: 250 no data for you)"]))

    async def test_greeting_refused_is_temporary(self):
        hop, hop_port = start_fake_hop(self)
        hop.greeting = "554 go away"
        front, port = self.start_front("127.0.0.1 %d" % hop_port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (the next hop greets with 554 go away)"]))

    async def test_ehlo_refused_falls_back_to_helo(self):
        hop, hop_port = start_fake_hop(self)
        hop.replies["EHLO"] = "502 what?"
        front, port = self.start_front("127.0.0.1 %d" % hop_port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (250, ["queued as ABC123"]))
        self.assertEqual(hop.commands[:2], ["EHLO mx.example.org", "HELO mx.example.org"])


class WireTests(ForwardTestCase):
    """The exact bytes and commands the next hop receives."""

    async def test_commands_crlf_and_dot_stuffing(self):
        hop, hop_port = start_fake_hop(self)
        front, port = self.start_front("127.0.0.1 %d" % hop_port)
        client = await self.session(port)
        self.assertEqual(await self.send(client, recipients=["<u@example.com>", '<"p q"@example.com>']),
                         (250, ["queued as ABC123"]))
        # (the client's 250 may arrive before our QUIT reaches the hop)
        self.assertTrue(await wait_for(lambda: "QUIT" in hop.commands))
        self.assertEqual(hop.commands, ["EHLO mx.example.org", "MAIL FROM:<a@b.example>",
                                        "RCPT TO:<u@example.com>", 'RCPT TO:<"p q"@example.com>',
                                        "DATA", "QUIT"])
        [data] = hop.messages
        received, sep, rest = data.partition(b"\r\nAuthentication-Results: mx.example.org; auth=none\r\n")
        self.assertTrue(received.startswith(b"Received: from "))
        # Exactly what the client sent: same CRLFs, same dot-stuffing, the bare CR kept.
        self.assertEqual(rest, HEADER + b"\r\n" + BODY)

    def test_encoder_across_chunks(self):
        module = forward_module()
        out, start = b"", True
        for chunk in (b"a\n", b".b", b"\n.", b".c\n", b"d"):
            encoded, start = module.encode_message(chunk, start)
            out += encoded
        self.assertEqual(out, b"a\r\n..b\r\n...c\r\nd")
        self.assertFalse(start)

    async def test_xclient(self):
        hop, hop_port = start_fake_hop(self)
        hop.replies["EHLO"] = ["250-fake.example\n250-XCLIENT NAME ADDR PORT PROTO HELO\n250 8BITMIME",
                               "250 fake.example"]
        hop.replies["XCLIENT"] = "220 fake.example ESMTP"
        front, port = self.start_front("127.0.0.1 %d xclient" % hop_port)
        client = await self.session(port, helo="EHLO odd+name=x.example")
        self.assertEqual(await self.send(client), (250, ["queued as ABC123"]))
        self.assertEqual(hop.commands[0], "EHLO mx.example.org")
        self.assertRegex(hop.commands[1], r"^XCLIENT NAME=\S+ ADDR=127\.0\.0\.1 PORT=\d+ "
                         r"HELO=odd\+2Bname\+3Dx\.example PROTO=ESMTP$")
        self.assertEqual(hop.commands[2], "EHLO odd+name=x.example")
        self.assertEqual(hop.commands[3], "MAIL FROM:<a@b.example>")

    async def test_xclient_not_advertised_or_refused(self):
        hop, hop_port = start_fake_hop(self)
        front, port = self.start_front("127.0.0.1 %d xclient" % hop_port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (Server does not advertise XCLIENT support)"]))
        hop.replies["EHLO"] = "250-fake.example\n250 XCLIENT ADDR"
        hop.replies["XCLIENT"] = "550 not authorized"
        self.assertEqual(await self.send(client), (451, ["Unable to queue message (XCLIENT failed)"]))
        self.assertEqual(hop.messages, [])

    async def test_ipv6_literal(self):
        factory = FakeHopFactory()
        try:
            listening = reactor.listenTCP(0, factory, interface="::1")
        except Exception as e:
            raise unittest.SkipTest("no IPv6 loopback: %s" % e)
        self.addCleanup(listening.stopListening)
        front, port = self.start_front("[::1] %d" % listening.getHost().port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (250, ["queued as ABC123"]))
        await wait_for(lambda: factory.open_connections == 0)


class FakeLmtpTests(ForwardTestCase):
    """LMTP decisions with scripted per-recipient replies (Dovecot below does it for real)."""

    async def lmtp(self, data_replies, recipients):
        hop, hop_port = start_fake_hop(self, lmtp=True)
        hop.data_replies = data_replies
        front, port = self.start_front("127.0.0.1 %d lmtp" % hop_port,
                                       {"rcpthosts": "example.com"})
        client = await self.session(port)
        reply = await self.send(client, recipients=recipients)
        return hop, front, reply

    async def test_all_delivered(self):
        hop, _, reply = await self.lmtp(["250 2.0.0 <u@example.com> ok", "250 2.0.0 <v@example.com> ok"],
                                        ["<u@example.com>", "<v@example.com>"])
        self.assertEqual(reply, (250, ["2.0.0 <u@example.com> ok", "2.0.0 <v@example.com> ok"]))
        self.assertEqual(hop.commands[0], "LHLO mx.example.org")

    async def test_partial_temporary_failure_is_250_and_logged(self):
        hop, hop_port = start_fake_hop(self, lmtp=True)
        hop.data_replies = ["250 2.0.0 <u@example.com> ok", "452 4.2.2 <v@example.com> mailbox full"]
        front, port = start_server(self, ["rcpt_ok", "queue/smtp-forward 127.0.0.1 %d lmtp" % hop_port],
                                   {"loglevel": "7"})
        notes = capture_queue_notes(front, "lmtp_failed_recipients")
        logged = []
        original = front.log

        def log(level, message, **kwargs):
            logged.append((level, message))
            return original(level, message, **kwargs)
        front.log = log
        client = await self.session(port)
        reply = await self.send(client, recipients=["<u@example.com>", "<v@example.com>"])
        self.assertEqual(reply, (250, [
            "delivered to 1 of 2 recipients",
            "not delivered to <v@example.com>: 452 4.2.2 <v@example.com> mailbox full"]))
        self.assertEqual(len(hop.messages), 1)
        self.assertIn((3, "partial delivery: NOT delivered to <v@example.com> (452 4.2.2 "
                          "<v@example.com> mailbox full); the sender gets 250 for the others "
                          "and no bounce"), logged)
        # the failed recipients are in the transaction note, for queue_post plugins
        self.assertEqual(notes, [[("v@example.com", 452, "4.2.2 <v@example.com> mailbox full")]])

    async def test_none_delivered(self):
        _, _, reply = await self.lmtp(["550 5.1.1 <u@example.com> no", "552 5.2.2 <v@example.com> full"],
                                      ["<u@example.com>", "<v@example.com>"])
        self.assertEqual(reply, (552, ["5.1.1 <u@example.com> no", "5.2.2 <v@example.com> full"]))
        _, _, reply = await self.lmtp(["550 5.1.1 <u@example.com> no", "452 4.2.2 <v@example.com> full"],
                                      ["<u@example.com>", "<v@example.com>"])
        self.assertEqual(reply, (451, ["5.1.1 <u@example.com> no", "4.2.2 <v@example.com> full"]))

    async def test_missing_replies_are_temporary_failures(self):
        hop, hop_port = start_fake_hop(self, lmtp=True)
        hop.data_replies = ["250 2.0.0 <u@example.com> ok"]   # then silence
        front, port = self.start_front("127.0.0.1 %d lmtp timeout 0.1" % hop_port)
        client = await self.session(port)
        code, lines = await self.send(client, recipients=["<u@example.com>", "<v@example.com>"])
        self.assertEqual(code, 250)
        self.assertEqual(lines[:1], ["delivered to 1 of 2 recipients"])
        self.assertRegex(lines[1], r"^not delivered to <v@example\.com>: 451 Unable to queue "
                         r"message \(the next hop did not answer within 0\.5 seconds\)$")


class DovecotLmtpTests(ForwardTestCase):
    """LMTP to a real Dovecot (``dovecot-lmtpd``), started privately for each test."""

    def setUp(self):
        self.dovecot = start_dovecot(self)

    async def test_delivery_over_tcp_and_unix_socket(self):
        for target in ("127.0.0.1 %d lmtp" % self.dovecot.port, "%s lmtp" % self.dovecot.socket):
            front, port = self.start_front(target)
            client = await self.session(port)
            code, lines = await self.send(client, recipients=["<alice@example.com>"])
            self.assertEqual(code, 250, lines)
            self.assertRegex(lines[0], r"^2\.0\.0 <alice@example\.com> \S+ Saved$")
        messages = self.dovecot.delivered("alice")
        self.assertEqual(len(messages), 2, self.dovecot.log())
        for message in messages:
            self.assertTrue(message.startswith(b"Return-Path: <a@b.example>\n"), message[:200])
            self.assertIn(b"\nDelivered-To: alice@example.com\n", message)
            self.assertTrue(message.endswith(UNSTUFFED_LF), message[-300:])

    async def test_unknown_user_is_refused_with_dovecots_text(self):
        front, port = self.start_front("127.0.0.1 %d lmtp" % self.dovecot.port)
        client = await self.session(port)
        self.assertEqual(await self.send(client, recipients=["<alice@example.com>", "<nobody@example.com>"]),
                         (552, ["5.1.1 <nobody@example.com> User doesn't exist: nobody@example.com"]))
        self.assertEqual(self.dovecot.delivered("alice"), [], "nothing delivered to anyone")

    async def test_failures_after_the_message(self):
        front, port = self.start_front("127.0.0.1 %d lmtp" % self.dovecot.port)
        client = await self.session(port)
        big = HEADER + b"\r\n" + b"z" * 3000 + b"\r\n"
        # bob's quota: permanent, after DATA → 552 with Dovecot's text
        self.assertEqual(await self.send(client, recipients=["<bob@example.com>"], data=big),
                         (552, ["5.2.2 <bob@example.com> Quota exceeded (mailbox for user is full)"]))
        # carol's quota, quota_full_tempfail: temporary → 451
        self.assertEqual(await self.send(client, recipients=["<carol@example.com>"], data=big),
                         (451, ["4.2.2 <carol@example.com> Quota exceeded (mailbox for user is full)"]))
        # alice + carol: delivered to alice, so 250 (no duplicate for alice on a retry), and
        # carol's failure in the reply, the log and the notes.
        code, lines = await self.send(client, recipients=["<alice@example.com>", "<carol@example.com>"],
                                      data=big)
        self.assertEqual(code, 250)
        self.assertEqual(lines[0], "delivered to 1 of 2 recipients")
        self.assertEqual(lines[1], "not delivered to <carol@example.com>: 452 4.2.2 "
                         "<carol@example.com> Quota exceeded (mailbox for user is full)")
        self.assertEqual(len(self.dovecot.delivered("alice")), 1)
        self.assertEqual(self.dovecot.delivered("carol"), [])
        self.assertEqual(self.dovecot.delivered("bob"), [])

    async def test_dovecot_stopped(self):
        front, port = self.start_front("127.0.0.1 %d lmtp" % self.dovecot.port)
        client = await self.session(port)
        self.assertEqual((await self.send(client, recipients=["<alice@example.com>"]))[0], 250)
        self.dovecot.process.terminate()
        self.dovecot.process.wait(10)
        code, lines = await self.send(client, recipients=["<alice@example.com>"])
        self.assertEqual(code, 451)
        self.assertRegex(lines[0], r"^Unable to queue message \(cannot connect to 127\.0\.0\.1:%d: "
                         % self.dovecot.port)
        self.assertEqual(len(self.dovecot.delivered("alice")), 1)


# -- to the real Postfix's smtpd -----------------------------------------------------------------

class ForwardToPostfixTests(PostfixTestCase):
    async def test_forwarded_with_exact_envelope_and_body(self):
        postfix = start_postfix(self)
        server, port = self.start_front("queue/smtp-forward 127.0.0.1 %d" % postfix.port,
                                        {"size_threshold": "10"})
        client = await self.session(port)
        code, lines = await self.send(client, recipients=["<u@example.com>", '<"v w"@example.com>'])
        self.assertEqual(code, 250, lines)
        m = re.match(r"queued as ([0-9A-F]{6,})\Z", lines[0])
        self.assertTrue(m, lines)
        code, lines = await self.send(client, sender="<>", data=b"Subject: n\r\n\r\nnull\r\n")
        self.assertEqual(code, 250, lines)
        await self.settle(postfix)
        first, second = sorted(postfix.deliveries(), key=lambda d: d.queue_id != m.group(1))
        self.assertEqual((first.queue_id, first.sender, sorted(first.recipients)),
                         (m.group(1), "a@b.example", ["u@example.com", "v w@example.com"]))
        # Postfix's smtpd put its Received on top of ours
        head, sep, rest = first.message.partition(b"\nReceived: from ")
        self.assertRegex(head, rb"\AReceived: from mx\.example\.org \(unknown \[127\.0\.0\.1\]\)\n"
                               rb"\tby postfix\.test \(Postfix\) with ESMTP id " + m.group(1).encode())
        self.assert_our_message(b"Received: from " + rest)
        self.assertEqual((second.sender, second.recipients), ("", ["u@example.com"]))
        self.assertIn(b"\nSubject: n\n", second.message)
        self.assertTrue(second.message.endswith(b"\n\nnull\n"), second.message)
        self.assertEqual(len(postfix.deliveries()), 2)

    async def test_refusals_are_passed_on(self):
        postfix = start_postfix(self, **STRICT)
        server, port = self.start_front("queue/smtp-forward 127.0.0.1 %d" % postfix.port)
        client = await self.session(port)
        self.assertEqual(await self.send(client, recipients=["<refused@example.com>"]), (552, [
            "5.7.1 <refused@example.com>: Recipient address rejected: no such user here"]))
        self.assertEqual(await self.send(client, recipients=["<u@example.com>", "<later@example.com>"]), (451, [
            "4.7.1 <later@example.com>: Recipient address rejected: mailbox busy, try later"]))
        rejected = POSTFIX_HEADER.replace(b"Subject: to postfix", b"Subject: reject me") + b"\r\nbody\r\n"
        self.assertEqual(await self.send(client, data=rejected),
                         (552, ["5.7.1 refused by the test's header_checks"]))
        big = POSTFIX_HEADER + b"\r\n" + (b"z" * 70 + b"\r\n") * 300
        self.assertEqual(await self.send(client, data=big),
                         (552, ["5.3.4 Error: message file too big"]))
        await self.settle(postfix)
        self.assertEqual(postfix.deliveries(), [])


class ArgumentTests(unittest.TestCase):
    def plugin(self, line):
        server = make_server(self, ["rcpt_ok", line])
        return server.plugins[-1]

    def test_arguments(self):
        p = self.plugin("queue/smtp-forward mail.example")
        self.assertEqual((p.address.host, p.address.port, p.xclient, p.lmtp, p.timeout),
                         ("mail.example", 25, False, False, 60))
        p = self.plugin("queue/smtp-forward 10.2.2.2 9025 xclient")
        self.assertEqual((p.address.host, p.address.port, p.xclient), ("10.2.2.2", 9025, True))
        p = self.plugin("queue/smtp-forward 10.2.2.2 lmtp timeout 5")
        self.assertEqual((p.address.port, p.lmtp, p.timeout), (24, True, 5))
        p = self.plugin("queue/smtp-forward [2001:db8::25] 2525")
        self.assertEqual((p.address.host, p.address.port, str(p.address)),
                         ("2001:db8::25", 2525, "[2001:db8::25]:2525"))
        p = self.plugin("queue/smtp-forward /run/dovecot/lmtp lmtp")
        self.assertEqual((p.address.path, str(p.address)), ("/run/dovecot/lmtp", "/run/dovecot/lmtp"))

    def test_bad_arguments_stop_start_up(self):
        for line in ("queue/smtp-forward", "queue/smtp-forward bad/host", "queue/smtp-forward [nope]",
                     "queue/smtp-forward h 25 xclinet", "queue/smtp-forward h 70000",
                     "queue/smtp-forward h timeout x", "queue/smtp-forward /sock 24"):
            with self.assertRaises(StartupError, msg=line):
                make_server(self, ["rcpt_ok", line])
