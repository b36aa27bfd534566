"""The waiting and timing of the queue plugins' clients (queue/smtp-forward, queue/postfix-queue).

Such a client reads items from its server (SMTP/LMTP replies, the cleanup service's attribute
groups) and sends it a message. Every wait — for the next item, for the message to be written
— has a time limit (Twisted's :class:`~twisted.protocols.policies.TimeoutMixin`), which bytes
arriving and the message being pulled restart. The first failure (a timeout, a garbled answer,
the connection lost) fails the one waiter and every later wait, and aborts the connection.
"""

from collections import deque

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IPullProducer
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from qpsmtpd_tx.streaming import message_chunks

#: bytes read from the message per write
CHUNK = 65536


class TimedClient(TimeoutMixin):
    """Mixin for a client Protocol (put it first among the bases): timed waits for items.

    The protocol parses what it receives and hands each item to :meth:`item_arrived`; callers
    wait with :meth:`next_item` and send with :meth:`send_with`. Subclasses define
    :meth:`timeout_error` and :meth:`lost_error`, the errors their callers see.
    """

    def __init__(self, timeout, clock=reactor):
        self.timeout = timeout
        self.clock = clock
        self._items = deque()
        self._waiter = None
        self._doing = None
        #: the error every wait fails with, once something went wrong
        self.error = None
        self.closed = False

    def callLater(self, period, func):
        """TimeoutMixin's timer, on our clock (tests give a Clock)."""
        return self.clock.callLater(period, func)

    def timeout_error(self, seconds, doing):
        """The error for a wait that took more than ``seconds`` (``doing`` from the caller)."""
        raise NotImplementedError

    def lost_error(self, reason):
        """The error for the connection lost (``reason``, a Failure) before anything failed."""
        raise NotImplementedError

    def item_arrived(self, item):
        """Give ``item`` to the waiter, or keep it for the next :meth:`next_item`."""
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            self.setTimeout(None)
            waiter.callback(item)
        else:
            self._items.append(item)

    def next_item(self, timeout=None, doing=None):
        """A Deferred firing with the next item, failing after ``timeout`` s (default: ours)."""
        if self._items:
            return defer.succeed(self._items.popleft())
        if self.error is not None:
            return defer.fail(self.error)
        self._waiter = defer.Deferred()
        self._start_timer(timeout or self.timeout, doing)
        return self._waiter

    def send_with(self, producer, doing=None):
        """Let pull ``producer`` (a :class:`MessageProducer`) write; its ``done``, timed."""
        self._start_timer(self.timeout, doing)
        done = producer.done            # registering may write it all and fire it at once
        self.transport.registerProducer(producer, False)
        return done.addBoth(self._sent)

    def _sent(self, result):
        self.setTimeout(None)
        return result

    def touch(self):
        """Progress: restart the running time limit."""
        self.resetTimeout()

    def _start_timer(self, seconds, doing):
        self._doing = doing
        self.setTimeout(seconds)

    def timeoutConnection(self):
        """TimeoutMixin's call when a wait took too long: fail with :meth:`timeout_error`."""
        self.fail(self.timeout_error(self.timeOut, self._doing))

    def fail(self, error):
        """Give up on this connection with ``error``."""
        if self.error is None:
            self.error = error
        self._fail_waiter()
        if not self.closed:
            self.transport.abortConnection()

    def connectionLost(self, reason):
        """Fail the waiter (and every later wait) with :meth:`lost_error`, unless failed already."""
        self.closed = True
        self.setTimeout(None)
        if self.error is None:
            self.error = self.lost_error(reason)
        self._fail_waiter()

    def _fail_waiter(self):
        """Fail the pending :meth:`next_item` with ``error``, if one waits."""
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.errback(self.error)


@implementer(IPullProducer)
class MessageProducer:
    """Writes a message to a :class:`TimedClient`, a chunk per request; ``done`` fires at the end.

    Subclasses define :meth:`produce` (write the next piece, or the end and :meth:`finish`)
    and :meth:`stopped_error` (the error when the transport stops pulling before the end).
    """

    def __init__(self, client, header, body):
        self.client = client
        self._chunks = message_chunks(header, body, CHUNK)
        self.done = defer.Deferred()

    def read(self):
        """The header (once), then the body, at most :data:`CHUNK` bytes a call; ``b""`` at the end."""
        return next(self._chunks, b"")

    def produce(self):
        """Write the next piece of the message; at the end write the ending and :meth:`finish`."""
        raise NotImplementedError

    def stopped_error(self):
        """The error ``done`` fails with when the connection ends before the message is sent."""
        raise NotImplementedError

    def finish(self, error=None):
        """Stop producing; ``done`` fires (fails with ``error`` if given)."""
        self.client.transport.unregisterProducer()
        done, self.done = self.done, None
        if error is None:
            done.callback(None)
        else:
            done.errback(error)

    def resumeProducing(self):
        """The transport wants more: restart the client's time limit and write a piece."""
        if self.done is None:
            return
        self.client.touch()
        self.produce()

    def stopProducing(self):
        """The connection ended: ``done`` fails (with the client's error, if it had one)."""
        if self.done is not None:
            done, self.done = self.done, None
            done.errback(self.client.error or self.stopped_error())
