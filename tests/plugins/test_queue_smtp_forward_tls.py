"""queue/smtp-forward's STARTTLS to the next hop.

The next hop is the suite's private Postfix (``tests/support/postfix.py``) offering STARTTLS
with a certificate made by the test (``tests/support/certs.py``), or without it; Postfix's
Received header and log say whether the message came over TLS. ``ScriptedHop`` — a few lines
of SMTP server written here — stands in only where no real server misbehaves on purpose: a
hop that sends plaintext after its 220 to STARTTLS, and one whose TLS handshake fails.
"""

import os

from twisted.internet import defer, protocol, reactor
from twisted.protocols.basic import LineReceiver
from twisted.trial import unittest

from qpsmtpd_tx.config import Config
from qpsmtpd_tx.server import SMTPServer, StartupError
from qpsmtpd_tx.testing import capture_log, capture_queue_notes, make_server, wait_for
from tests.support.certs import make_certs
from tests.support.dovecot import start_dovecot
from tests.support.postfix import start_postfix, tls_settings
from tests.support.server import TransactionMixin, start_server

#: the next hop's Received line for a message that came from us over TLS
TLS_RECEIVED = rb"(?m)^Received: from mx\.example\.org [^\n]*\n\t\(using TLSv1\.[23] with cipher "
MESSAGE = b"From: a@b.example\r\nTo: u@example.com\r\nSubject: tls\r\n\r\nover TLS\r\n"


class TlsForwardCase(TransactionMixin, unittest.TestCase):
    default_message = MESSAGE

    def setUp(self):
        self.certs = make_certs(os.path.abspath(self.mktemp()), "postfix.test")

    def start_front(self, args):
        front, port = start_server(self, ["rcpt_ok", "queue/smtp-forward %s" % args])
        self.log = capture_log(self, front)
        return port, capture_queue_notes(front, "smtp_forward_tls")

    async def forward(self, args):
        """One message through a front forwarding with ``args``: (code, lines), the TLS note."""
        port, notes = self.start_front(args)
        client = await self.session(port)
        reply = await self.send(client)
        return reply, notes


class PostfixNextHopTests(TlsForwardCase):
    """A private Postfix with STARTTLS (smtpd_tls_security_level = may) as the next hop."""

    def setUp(self):
        TlsForwardCase.setUp(self)
        self.postfix = start_postfix(self, settings=tls_settings(self.certs.cert, self.certs.key))

    def delivered_over_tls(self):
        [delivery] = self.postfix.deliveries()
        self.assertEqual(delivery.recipients, ["u@example.com"])
        self.assertTrue(delivery.message.endswith(b"\n\nover TLS\n"), delivery.message)
        self.assertRegex(delivery.message, TLS_RECEIVED)
        self.assertIn("TLS connection established from", self.postfix.maillog())

    async def test_opportunistic_by_default(self):
        (code, lines), notes = await self.forward("127.0.0.1 %d" % self.postfix.port)
        self.assertEqual(code, 250, lines)
        self.assertTrue(await wait_for(lambda: self.postfix.deliveries(), 15))
        self.delivered_over_tls()
        [note] = notes
        self.assertRegex(note["protocol"], r"^TLSv1\.[23]$")
        self.assertTrue(note["cipher"] and note["bits"] >= 128, note)
        self.assertEqual((note["verified"], note["name"]), (False, None))
        finished = [m for _, m in self.log if m.startswith("finished queueing")]
        self.assertEqual(finished, ["finished queueing: 250 2.0.0 Ok: queued as %s (%s %s (%d bits), "
                                    "certificate not verified)" % (
                                        self.postfix.deliveries()[0].queue_id, note["protocol"],
                                        note["cipher"], note["bits"])])

    async def test_verified_with_the_right_ca_and_name(self):
        for args, name in (("tls verify tls_ca %s tls_name postfix.test", "postfix.test"),
                           ("tls verify tls_ca %s", "127.0.0.1")):
            (code, lines), notes = await self.forward(
                "127.0.0.1 %d %s" % (self.postfix.port, args % self.certs.ca))
            self.assertEqual(code, 250, (args, lines))
            self.assertEqual((notes[0]["verified"], notes[0]["name"]), (True, name))
        self.assertTrue(await wait_for(lambda: len(self.postfix.deliveries()) == 2, 15))

    async def test_wrong_ca_or_name_is_451_and_nothing_sent(self):
        other = make_certs(os.path.abspath(self.mktemp()), "postfix.test", "another CA")
        for args, why in (("tls_ca %s tls_name postfix.test" % other.ca, "certificate verify failed"),
                          ("tls_ca %s tls_name wrong.example" % self.certs.ca, "wrong.example")):
            (code, lines), notes = await self.forward(
                "127.0.0.1 %d tls verify %s" % (self.postfix.port, args))
            self.assertEqual(code, 451, (args, lines))
            self.assertRegex(lines[0], r"^Unable to queue message \(TLS handshake with the next "
                             r"hop failed \(.*%s" % why)
            self.assertEqual(notes, [None])   # queue_post runs after a 451 too
        self.assertEqual(self.postfix.deliveries(), [])
        self.assertEqual(self.postfix.queued(), [])
        self.assertNotIn("from=<", self.postfix.maillog())


class PostfixXclientTests(TlsForwardCase):
    """STARTTLS first, then XCLIENT inside TLS (Postfix keeps the TLS session across it)."""

    async def test_xclient_inside_tls(self):
        settings = tls_settings(self.certs.cert, self.certs.key)
        settings["smtpd_authorized_xclient_hosts"] = "127.0.0.0/8"
        postfix = start_postfix(self, settings=settings)
        (code, lines), notes = await self.forward("127.0.0.1 %d xclient tls require" % postfix.port)
        self.assertEqual(code, 250, lines)
        self.assertTrue(await wait_for(lambda: postfix.deliveries(), 15))
        message = postfix.deliveries()[0].message
        # Postfix's Received names our client (XCLIENT HELO) and says TLS
        self.assertRegex(message, rb"(?m)^Received: from client\.example [^\n]*\n\t\(using TLSv1\.[23] ")
        self.assertRegex(notes[0]["protocol"], r"^TLSv1\.[23]$")


class PlaintextPostfixTests(TlsForwardCase):
    """A private Postfix without STARTTLS."""

    async def test_require_is_451_and_nothing_sent(self):
        postfix = start_postfix(self)
        (code, lines), notes = await self.forward("127.0.0.1 %d tls require" % postfix.port)
        self.assertEqual((code, lines), (451, [
            "Unable to queue message (the next hop does not offer STARTTLS)"]))
        self.assertEqual(postfix.deliveries(), [])
        self.assertEqual(postfix.queued(), [])
        self.assertNotIn("from=<", postfix.maillog())

    async def test_may_goes_on_in_plaintext(self):
        postfix = start_postfix(self)
        (code, lines), notes = await self.forward("127.0.0.1 %d" % postfix.port)
        self.assertEqual(code, 250, lines)
        self.assertEqual(notes, [None])
        self.assertTrue(await wait_for(lambda: postfix.deliveries(), 15))
        self.assertNotIn(b"(using TLS", postfix.deliveries()[0].message)


class DovecotLmtpTests(TlsForwardCase):
    """LMTP to a private Dovecot whose LMTP offers STARTTLS (ssl = yes, the test's certificate)."""

    async def test_lmtp_over_verified_tls(self):
        dovecot = start_dovecot(self, self.certs.cert, self.certs.key)
        port, notes = self.start_front("127.0.0.1 %d lmtp tls verify tls_ca %s tls_name postfix.test"
                                       % (dovecot.port, self.certs.ca))
        client = await self.session(port)
        code, lines = await self.send(client, recipients=["<alice@example.com>"])
        self.assertEqual(code, 250, lines)
        [message] = dovecot.delivered("alice")
        self.assertRegex(message, TLS_RECEIVED + rb"[^\n]*\n\tby \S+ with LMTPS\n")
        self.assertTrue(message.endswith(b"\n\nover TLS\n"), message)
        self.assertRegex(notes[0]["protocol"], r"^TLSv1\.[23]$")
        self.assertEqual((notes[0]["verified"], notes[0]["name"]), (True, "postfix.test"))


class ScriptedHop(LineReceiver):
    """Offers STARTTLS and answers it with its factory's ``after_starttls`` bytes, then the
    client's first bytes (its ClientHello) with ``after_hello`` and closes (None: says
    nothing and stays open); otherwise a plain
    SMTP server answering 250 (354 to DATA) that keeps the commands it got."""

    delimiter = b"\r\n"

    def connectionMade(self):
        self.in_data = False
        self.factory.connections.append([])
        self.transport.write(b"220 hop.example ESMTP\r\n")

    def lineReceived(self, line):
        if self.in_data:
            self.in_data = line != b"."
            if not self.in_data:
                self.transport.write(b"250 queued as HOP1\r\n")
            return
        self.factory.connections[-1].append(line.decode())
        verb = line.split(b" ")[0].upper()
        if verb == b"EHLO":
            self.transport.write(b"250-hop.example\r\n250 STARTTLS\r\n")
        elif verb == b"STARTTLS":
            self.transport.write(self.factory.after_starttls)
            if self.factory.after_starttls.startswith(b"220"):
                self.setRawMode()
        elif verb == b"DATA":
            self.in_data = True
            self.transport.write(b"354 go on\r\n")
        elif verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.loseConnection()
        else:
            self.transport.write(b"250 ok\r\n")

    def rawDataReceived(self, data):
        if self.factory.after_hello is None:
            return   # a handshake that never completes
        self.transport.write(self.factory.after_hello)
        self.transport.loseConnection()


class ScriptedHopTests(TlsForwardCase):

    def start_hop(self, after_starttls, after_hello=b""):
        factory = protocol.Factory.forProtocol(ScriptedHop)
        factory.after_starttls = after_starttls
        factory.after_hello = after_hello
        factory.connections = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    async def test_plaintext_after_the_220_is_not_read_inside_tls(self):
        # CVE-2011-0411 the other way round: a reply sent with the 220 must not answer EHLO.
        hop, port = self.start_hop(b"220 go ahead\r\n250 injected\r\n")
        for mode in ("may", "require"):
            (code, lines), notes = await self.forward("127.0.0.1 %d tls %s" % (port, mode))
            self.assertEqual((code, lines), (451, [
                "Unable to queue message (the next hop sent more after its 220 to STARTTLS)"]))
        self.assertEqual([c[-1] for c in hop.connections], ["STARTTLS", "STARTTLS"])

    async def test_failed_handshake(self):
        # may: once more without TLS (the message was not sent yet); require: 451
        hop, port = self.start_hop(b"220 go ahead\r\n", b"this is not TLS\r\n\r\n")
        (code, lines), notes = await self.forward("127.0.0.1 %d" % port)
        self.assertEqual((code, lines), (250, ["queued as HOP1"]))
        self.assertEqual(notes, [None])
        self.assertEqual([c[1] for c in hop.connections], ["STARTTLS", "MAIL FROM:<a@b.example>"])
        # (our QUIT to the hop may come after the client's 250)
        self.assertTrue(await wait_for(lambda: "QUIT" in hop.connections[-1]))
        del hop.connections[:]
        (code, lines), notes = await self.forward("127.0.0.1 %d tls require" % port)
        self.assertEqual(code, 451)
        self.assertRegex(lines[0], r"^Unable to queue message \(TLS handshake with the next hop failed")
        self.assertEqual(len(hop.connections), 1)
        self.assertNotIn("MAIL FROM:<a@b.example>", hop.connections[0])

    async def test_starttls_refused(self):
        # may: on in plaintext on the same connection (RFC 3207); require: 451, no MAIL
        hop, port = self.start_hop(b"454 4.7.0 TLS not available\r\n")
        (code, lines), notes = await self.forward("127.0.0.1 %d" % port)
        self.assertEqual((code, lines, notes), (250, ["queued as HOP1"], [None]))
        (code, lines), notes = await self.forward("127.0.0.1 %d tls verify" % port)
        self.assertEqual((code, lines), (451, ["Unable to queue message (the next hop refused "
                                               "STARTTLS: 454 4.7.0 TLS not available)"]))
        self.assertTrue(await wait_for(lambda: "QUIT" in hop.connections[1]))
        self.assertEqual([c[1:3] for c in hop.connections],
                         [["STARTTLS", "MAIL FROM:<a@b.example>"], ["STARTTLS", "QUIT"]])

    async def test_handshake_that_never_completes(self):
        hop, port = self.start_hop(b"220 go ahead\r\n", None)
        (code, lines), notes = await self.forward("127.0.0.1 %d timeout 0.5" % port)
        self.assertEqual((code, lines), (250, ["queued as HOP1"]))
        self.assertEqual([c[1] for c in hop.connections], ["STARTTLS", "MAIL FROM:<a@b.example>"])
        (code, lines), notes = await self.forward("127.0.0.1 %d timeout 0.5 tls require" % port)
        self.assertEqual((code, lines), (451, ["Unable to queue message (TLS handshake with the "
                                               "next hop failed (no answer within 0.5 seconds))"]))
        self.assertEqual(len(hop.connections), 3)


class TlsArgumentTests(unittest.TestCase):

    def plugin(self, args):
        return make_server(self, ["rcpt_ok", "queue/smtp-forward " + args]).plugins[-1]

    def test_arguments(self):
        self.assertEqual((self.plugin("mail.example").tls, self.plugin("mail.example").tls_name),
                         ("may", None))
        self.assertEqual(self.plugin("mail.example tls require").tls, "require")
        self.assertEqual(self.plugin("mail.example 2525 tls verify").tls_name, "mail.example")
        certs = make_certs(os.path.abspath(self.mktemp()), "mx.example")
        p = self.plugin("10.1.1.1 lmtp tls verify tls_ca %s tls_name mx.example" % certs.ca)
        self.assertEqual((p.lmtp, p.tls, p.tls_name), (True, "verify", "mx.example"))
        # a relative tls_ca is read from the config directory
        with open(certs.ca) as f:
            server = make_server(self, ["rcpt_ok", "queue/smtp-forward h tls verify tls_ca ca.pem"],
                                 {"ca.pem": f.read()})
        self.assertEqual(server.plugins[-1].tls_name, "h")
        with self.assertRaises(StartupError):
            make_server(self, ["rcpt_ok", "queue/smtp-forward h tls verify tls_ca ca.pem"])

    def test_relative_tls_ca_without_a_config_option(self):
        """No --config: a relative tls_ca is read from config/ beside the program (the first
        config directory), not from the current directory."""
        certs = make_certs(os.path.abspath(self.mktemp()), "h")
        program = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(program, "config"))
        files = {"plugins": "rcpt_ok\nqueue/smtp-forward h tls verify tls_ca ca.pem\n",
                 "spool_dir": os.path.join(program, "spool") + "\n"}
        with open(certs.ca) as f:
            files["ca.pem"] = f.read()
        for name, text in files.items():
            with open(os.path.join(program, "config", name), "w") as f:
                f.write(text)
        server = SMTPServer(Config(config_dir=None, program_dir=program))
        self.addCleanup(server.stop_plugins)
        self.assertEqual(server.plugins[-1].tls_name, "h")

    def test_bad_arguments_stop_start_up(self):
        missing = os.path.abspath(self.mktemp())
        for args, why in (("h tls sometimes", "tls must be one of"),
                          ("h tls_name x", "need 'tls verify'"),
                          ("h tls require tls_ca /etc/hostname", "need 'tls verify'"),
                          ("/run/lmtp lmtp tls verify", "needs tls_name"),
                          ("h tls verify tls_ca %s" % missing, "cannot read the CA file " + missing),
                          ("h tls verify tls_ca /etc/hostname", "no PEM certificate in the CA file")):
            with self.assertRaises(StartupError, msg=args) as caught:
                make_server(self, ["rcpt_ok", "queue/smtp-forward " + args])
            self.assertIn(why, str(caught.exception), args)
