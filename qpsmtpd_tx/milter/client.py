"""The thin Twisted layer under a milter :class:`~qpsmtpd_tx.milter.state.Conversation`:
one connection to the milter, bytes in and out, and the time limits.

:func:`open_milter` connects (within the connect timeout) and negotiates; :meth:`MilterClient.run`
sends one step and waits for its verdict within a reply timeout, which a ``progress`` reply
starts again. Anything that goes wrong — the milter cannot be reached, closes the connection,
breaks the protocol or does not answer in time — raises :class:`MilterUnavailable` with the
reason, and the connection is dropped.
"""

from twisted.internet import defer, reactor
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from qpsmtpd_tx.endpoints import describe_failure
from qpsmtpd_tx.milter import codec
from qpsmtpd_tx.milter.state import Conversation, Progress, verdict_without_reply


class MilterUnavailable(Exception):
    """The milter could not be used; the text says why."""


@implementer(IPushProducer)
class MilterClient(Protocol):
    """One connection to a milter, carrying one :class:`Conversation` (``conversation``)."""

    def __init__(self, conversation, clock=reactor):
        self.conversation = conversation
        self.clock = clock
        self._waiter = None
        self._timer = None
        self._timeout = None
        self._error = None
        self._paused = False
        self._drained = None
        self.closed = False

    # -- Protocol ---------------------------------------------------------------------------

    def connectionMade(self):
        # as a producer we learn when the socket's buffer is full (BODY without replies)
        self.transport.registerProducer(self, True)

    def dataReceived(self, data):
        try:
            events = self.conversation.receive(data)
        except codec.ProtocolError as e:
            self._fail("protocol error: %s" % e)
            return
        for event in events:
            if isinstance(event, Progress):
                self._arm()
            elif self._waiter is not None:
                waiter, self._waiter = self._waiter, None
                self._disarm()
                waiter.callback(event)

    def connectionLost(self, reason):
        self.closed = True
        self._disarm()
        self._fail(self._error or "the milter closed the connection")
        if self._drained is not None:
            drained, self._drained = self._drained, None
            drained.callback(None)

    # -- IPushProducer (the transport tells us when to wait) --------------------------------

    def pauseProducing(self):
        """The socket's buffer is full."""
        self._paused = True

    def resumeProducing(self):
        """The socket's buffer has room again."""
        self._paused = False
        if self._drained is not None:
            drained, self._drained = self._drained, None
            drained.callback(None)

    def stopProducing(self):
        """The connection is going away."""
        self._paused = False

    # -- steps ------------------------------------------------------------------------------

    def _fail(self, why):
        if self._error is None:
            self._error = why
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            self._disarm()
            waiter.errback(MilterUnavailable(why))
        if not self.closed and self.transport is not None:
            self.transport.abortConnection()

    def _arm(self):
        self._disarm()
        self._timer = self.clock.callLater(self._timeout, self._expired)

    def _disarm(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expired(self):
        self._timer = None
        self._fail("no answer within %g seconds" % self._timeout)

    def send(self, data):
        """Write bytes that await no answer (ABORT, QUIT)."""
        if data and not self.closed:
            self.transport.write(data)

    async def _awaited(self, data, timeout):
        if self._error is not None:
            raise MilterUnavailable(self._error)
        waiter = self._waiter = defer.Deferred(self._cancelled)
        self._timeout = timeout
        self.transport.write(data)
        self._arm()
        return await waiter

    def _cancelled(self, waiter):
        # the hook was cancelled (its own time limit): the answer can no longer be matched
        # to a question, so this connection is done
        if self._waiter is waiter:
            self._waiter = None
        self._disarm()
        self._error = self._error or "cancelled while waiting for an answer"
        if not self.closed and self.transport is not None:
            self.transport.abortConnection()

    async def negotiate(self, timeout):
        """Send OPTNEG and wait for the milter's answer (a codec.Negotiated)."""
        return await self._awaited(self.conversation.optneg(), timeout)

    async def run(self, step, timeout):
        """Send ``step`` (a state.Step); return its Verdict (continue when none is awaited)."""
        if self._error is not None:
            raise MilterUnavailable(self._error)
        if not step.awaits:
            if step.data:
                self.transport.write(step.data)
                if self._paused:
                    self._drained = defer.Deferred()
                    await self._drained
                if self._error is not None:
                    raise MilterUnavailable(self._error)
            return verdict_without_reply(step.stage)
        return await self._awaited(step.data, timeout)

    def close(self):
        """Say QUIT and close the connection."""
        if not self.closed and self.transport is not None:
            self.send(self.conversation.quit())
            self.transport.loseConnection()


async def open_milter(address, connect_timeout, reply_timeout, conversation=None,
                      clock=reactor):
    """Connect to the milter at ``address`` (an endpoints.ServerAddress) and negotiate;
    return the MilterClient. MilterUnavailable if that fails."""
    client = MilterClient(conversation or Conversation(), clock)
    try:
        await connectProtocol(address.endpoint(connect_timeout, clock), client)
    except Exception as e:
        raise MilterUnavailable("cannot connect to %s: %s" % (address, describe_failure(e)))
    try:
        await client.negotiate(reply_timeout)
    except MilterUnavailable as e:
        raise MilterUnavailable("negotiation with %s failed: %s" % (address, e))
    return client
