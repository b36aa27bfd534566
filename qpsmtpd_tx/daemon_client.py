"""One request, one answer: the exchange content filters have with spamd, clamd and the like.

The request is sent chunk by chunk as the socket takes it (a pull producer, so a large message
is never all in memory), and the answer is read until the daemon closes the connection.
"""

import socket

from twisted.internet import defer
from twisted.internet.interfaces import IPullProducer, ISSLTransport
from twisted.internet.protocol import Protocol
from zope.interface import implementer


class ExchangeError(Exception):
    """The request could not be sent or the answer was unusable; the text says why."""


@implementer(IPullProducer)
class RequestExchange(Protocol):
    """Send ``chunks`` (an iterable of bytes, read lazily); collect the answer until the
    daemon closes the connection. ``done`` fires with the answer's bytes, or fails with
    ExchangeError; cancelling it aborts the connection. An answer longer than
    ``max_answer`` bytes is an error (a daemon gone wrong must not fill our memory).
    With ``half_close``, the sending side is shut down after the last chunk (a daemon that
    reads its request until end of file, as a CVM module does)."""

    def __init__(self, chunks, max_answer, half_close=False):
        self._chunks = iter(chunks)
        self._half_close = half_close
        self._sending = False
        self._received = []
        self._size = 0
        self._max_answer = max_answer
        self.error = None
        self.done = defer.Deferred(self._cancel)

    def _cancel(self, _):
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionMade(self):
        self._sending = True
        self.transport.registerProducer(self, False)

    def resumeProducing(self):
        if not self._sending:
            return
        try:
            chunk = next(self._chunks, None)
        except Exception as e:  # reading the message failed
            self.error = ExchangeError("cannot read the message: %s" % e)
            chunk = None
        if chunk is None:
            self._sending = False
            self.transport.unregisterProducer()
            if self.error is not None:
                self.transport.abortConnection()
            elif self._half_close:
                self.transport.loseWriteConnection()
            return
        self.transport.write(chunk)

    def stopProducing(self):
        if self._sending:
            self._sending = False
            self._read_what_arrived()

    def _read_what_arrived(self):
        """The connection is lost while we send. A daemon that stops reading, answers and
        closes (clamd past its StreamMaxLength) resets it; when a write of ours meets the reset
        before the reactor has read the answer, Twisted closes the socket with the answer
        unread. Twisted stops its producer before closing the socket: read the answer here."""
        handle = self.transport.getHandle()
        if ISSLTransport.providedBy(self.transport) or not isinstance(handle, socket.socket):
            return
        while self.error is None:
            try:
                data = handle.recv(65536, socket.MSG_DONTWAIT)
            except OSError:     # nothing more has arrived, or only the reset
                return
            if not data:
                return
            self._keep(data)

    def _keep(self, data):
        """Add ``data`` to the answer; False (and ``error`` set) if it is too long now."""
        self._size += len(data)
        if self._size > self._max_answer:
            self.error = ExchangeError("answer longer than %d bytes" % self._max_answer)
            return False
        self._received.append(data)
        return True

    def dataReceived(self, data):
        if not self._keep(data):
            self.transport.abortConnection()

    def connectionLost(self, reason):
        if self.done.called:
            return
        if self.error is not None:
            self.done.errback(self.error)
        else:
            self.done.callback(b"".join(self._received))
