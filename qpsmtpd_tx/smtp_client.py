"""A small SMTP/LMTP client for the queue back ends (queue/smtp-forward, queue/exim-bsmtp's
pool): send a command, wait for its reply, every wait timed (:mod:`qpsmtpd_tx.client`).

:func:`send_transaction` says RSET (for a reused connection), MAIL and RCPT — in one write
(RFC 2920 pipelining) when the server offers it — then DATA, and writes the message; the
caller reads the reply to its end. :func:`safe_to_retry` tells whether a failed transaction on a reused
connection may be sent again on a fresh one without risking a duplicate.
"""

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IHandshakeListener
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from qpsmtpd_tx.client import CHUNK, MessageProducer, TimedClient


class NextHopError(Exception):
    """The conversation with the next hop failed without a reply that says why."""


class Reply:
    """One reply of the next hop: its code and text lines."""

    def __init__(self, code, lines):
        self.code = code
        self.lines = lines

    @property
    def text(self):
        return " ".join(line for line in self.lines if line)

    def __str__(self):
        return ("%d %s" % (self.code, self.text)).strip()

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.lines)


def encode_message(data, at_line_start):
    """LF → CRLF and dot-stuffing for one chunk; returns (bytes, ends at a line start)."""
    out = data.replace(b"\n.", b"\n..")
    if at_line_start and data[:1] == b".":
        out = b"." + out
    return out.replace(b"\n", b"\r\n"), data.endswith(b"\n")


class MessageWriter(MessageProducer):
    """Writes header, body and the final dot to the next hop, a chunk per request. Pieces
    smaller than a chunk (the header, a short body) and the final dot share one write: on a
    long-lived connection a small write after an unacknowledged one waits for the peer's
    delayed ACK (Nagle), and every write is a system call."""

    def __init__(self, hop, header, body):
        MessageProducer.__init__(self, hop, header, body)
        self.at_line_start = True
        self._ahead = None

    def produce(self):
        data = self.read() if self._ahead is None else self._ahead
        self._ahead = self.read()
        while self._ahead and len(data) + len(self._ahead) <= CHUNK:
            data, self._ahead = data + self._ahead, self.read()
        encoded = b""
        if data:
            encoded, self.at_line_start = encode_message(data, self.at_line_start)
        if self._ahead:
            self.client.transport.write(encoded)
            return
        # From here on the server may have the message: no retry elsewhere (safe_to_retry).
        self.client.message_ended = True
        self.client.transport.write(encoded + (b"" if self.at_line_start else b"\r\n") + b".\r\n")
        self.finish()

    def stopped_error(self):
        return NextHopError("connection lost while sending the message")


class NextHopTimeout(NextHopError):
    """The next hop did not answer in time."""


class TlsFailed(NextHopError):
    """The TLS handshake with the next hop failed (or its certificate did not verify)."""


@implementer(IHandshakeListener)
class NextHopProtocol(TimedClient, LineReceiver):
    """A small SMTP/LMTP client: send a line, wait for the reply; every wait has a timeout."""

    delimiter = b"\n"
    MAX_LENGTH = 65536

    def __init__(self, timeout, clock=reactor):
        TimedClient.__init__(self, timeout, clock)
        self._partial = []
        #: the bytes of the lines in ``_partial``: one reply, all its lines, is at most
        #: MAX_LENGTH bytes, as one line is
        self._partial_size = 0
        self._tls_options = None
        #: "plain", "handshake" (STARTTLS accepted, handshake running) or "tls"
        self.tls_state = "plain"
        #: the EHLO/LHLO capabilities ({KEYWORD: [parameters]}), set by whoever greeted
        self.capabilities = {}
        #: what TLS gave this connection (see client_tls.session_details), None: plaintext
        self.tls_details = None
        #: the final dot of the current message was written (reset by send_transaction)
        self.message_ended = False
        #: messages this connection has carried (counted by qpsmtpd_tx.pool)
        self.uses = 0
        self._closed_waiters = []

    # -- receiving -----------------------------------------------------------------------------

    def dataReceived(self, data):
        self.touch()
        LineReceiver.dataReceived(self, data)

    def lineReceived(self, line):
        if self.error is not None:
            return
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if len(text) < 3 or not text[:3].isdigit() or text[3:4] not in ("", " ", "-"):
            self.fail(NextHopError("garbled reply from the next hop: %r" % text[:80]))
            return
        self._partial.append(text[4:])
        self._partial_size += len(line)
        if self._partial_size > self.MAX_LENGTH:
            # each continuation line restarts the timeout: without this bound a next hop
            # could keep one reply going, and growing, for ever
            self.fail(NextHopError("reply longer than %d bytes from the next hop"
                                   % self.MAX_LENGTH))
            return
        if text[3:4] == "-":
            return
        reply, self._partial = Reply(int(text[:3]), self._partial), []
        self._partial_size = 0
        if self._tls_options is not None:
            options, self._tls_options = self._tls_options, None
            if reply.code == 220:
                # Whatever came with the 220 was sent in plaintext and must not be read as
                # an answer inside TLS (CVE-2011-0411, seen from the client's side).
                if self._buffer:
                    self.fail(NextHopError("the next hop sent more after its 220 to STARTTLS"))
                    return
                self.tls_state = "handshake"
                self.transport.startTLS(options)
        self.item_arrived(reply)

    def handshakeCompleted(self):
        """IHandshakeListener: the TLS handshake is done (and the certificate verified)."""
        self.tls_state = "tls"

    def lineLengthExceeded(self, line):
        self.fail(NextHopError("reply line longer than %d bytes from the next hop" % self.MAX_LENGTH))

    def lost_error(self, reason):
        if self.tls_state == "handshake":
            return TlsFailed("TLS handshake with the next hop failed (%s)" % reason.getErrorMessage())
        return NextHopError("connection to the next hop lost (%s)" % reason.getErrorMessage())

    def timeout_error(self, seconds, doing):
        if self.tls_state == "handshake":
            return TlsFailed("TLS handshake with the next hop failed (no answer within %g seconds)"
                             % seconds)
        return NextHopTimeout("the next hop did not answer within %g seconds" % seconds)

    # -- waiting -------------------------------------------------------------------------------

    def reply(self, timeout=None):
        """A Deferred firing with the next Reply (fails on timeout or a lost connection)."""
        return self.next_item(timeout)

    def command(self, line, timeout=None):
        """Send one command line; a Deferred firing with its Reply."""
        self.transport.write(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return self.reply(timeout)

    def starttls(self, options):
        """Send STARTTLS; TLS starts (with ``options``) as its 220 arrives. Its Reply."""
        if self._items:
            return defer.fail(NextHopError("the next hop sent a reply nobody asked for"))
        self._tls_options = options
        return self.command("STARTTLS")

    def send_message(self, header, body):
        """Send the message and the final dot; a Deferred firing when all is written."""
        return self.send_with(MessageWriter(self, header, body))

    def usable(self):
        """True if an idle connection can carry another transaction: open, not failed, and
        nothing unasked for arrived meanwhile (e.g. a ``421`` before the server closes)."""
        return (not self.closed and self.error is None and not self._items
                and self._waiter is None and self.tls_state != "handshake")

    def connectionLost(self, reason):
        """The connection ended: fail the waits (TimedClient), fire :meth:`when_closed`."""
        TimedClient.connectionLost(self, reason)
        waiting, self._closed_waiters = self._closed_waiters, []
        for waiter in waiting:
            waiter.callback(None)

    def when_closed(self):
        """A Deferred firing once the connection has ended."""
        if self.closed:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._closed_waiters.append(waiter)
        return waiter

    def close(self):
        """The pool's way to end a connection: :meth:`quit` if it is :meth:`usable`, else
        abort it (it may be in the middle of a transaction, e.g. its hook was cancelled:
        a QUIT there would be read as message text); a Deferred firing once it has ended."""
        if self.usable():
            self.quit()
        else:
            self.fail(self.error or NextHopError("connection given up"))
        return self.when_closed()

    def quit(self):
        """Say QUIT, close once it is answered (or after the timeout); nobody waits for it."""
        if self.closed or self.error is not None:
            if not self.closed:
                self.transport.abortConnection()
            return
        d = self.command("QUIT")
        d.addBoth(lambda _: None if self.closed else self.transport.loseConnection())



class Refused(Exception):
    """The next hop refused with ``reply`` at ``stage``; ``temporary`` when not its decision."""

    def __init__(self, stage, reply):
        Exception.__init__(self, stage, reply)
        self.stage = stage
        self.reply = reply




def parse_capabilities(reply):
    """The EHLO/LHLO extensions of ``reply`` (its lines after the first): {KEYWORD: [params]}."""
    capabilities = {}
    for line in reply.lines[1:]:
        words = line.split()
        if words:
            capabilities[words[0].upper()] = words[1:]
    return capabilities


async def send_transaction(hop, sender, recipients, header, body, reset=False):
    """Start a transaction on ``hop`` and send the message (not waiting for the reply to its
    end): RSET first if ``reset`` (a reused connection), MAIL FROM:``sender``, RCPT
    TO:``path`` for each of ``recipients`` (SMTP paths, str), then DATA. When the server
    offers PIPELINING (RFC 2920) the commands before DATA go in one write and their replies
    are read after; else one by one. DATA waits for them: once it is accepted the message
    must follow, so a refused recipient would cost the connection. The first refusal
    raises :class:`Refused` (a ``421`` also ends the connection); lost connections and
    timeouts raise :class:`NextHopError`.
    """
    hop.message_ended = False
    commands = (["RSET"] if reset else []) + ["MAIL FROM:%s" % sender]
    commands += ["RCPT TO:%s" % path for path in recipients]
    pipelined = "PIPELINING" in hop.capabilities
    if pipelined:
        hop.transport.write("".join(c + "\r\n" for c in commands).encode("utf-8", "surrogateescape"))
    refusal = None
    for command in commands:
        reply = await (hop.reply() if pipelined else hop.command(command))
        if reply.code // 100 == 2 or refusal is not None:
            continue
        refusal = Refused(command, reply)
        if reply.code == 421:
            # the server is closing the connection: it carries nothing more
            hop.fail(NextHopError("the next hop closes the connection: %s" % reply))
            break
        if not pipelined:
            break
    if refusal is not None:
        raise refusal
    reply = await hop.command("DATA")
    if reply.code != 354:
        raise Refused("DATA", reply)
    await hop.send_message(header, body)


def safe_to_retry(hop, error):
    """True if ``error`` on the reused connection ``hop`` shows a broken connection (lost,
    garbled, or the server's ``421`` closing it) before the end of the message was written:
    the server cannot have taken the message, so it may go again on a fresh connection.
    A timeout is not retried (a slow server stays slow); nothing after the final dot is."""
    if hop.message_ended or hop.uses == 0:
        return False
    if isinstance(error, Refused):
        return error.reply is not None and error.reply.code == 421
    return isinstance(error, NextHopError) and not isinstance(error, NextHopTimeout)
