"""HTTP answers of bounded size, for plugins that ask a back end over HTTP (``rspamd``,
``qmail_deliverable``, ``http_config``).

Twisted's HTTP client keeps every header line of a response (each at most 16 KiB, but any
number of them) and ``treq.content`` every byte of its body: a back end gone wrong, or
anything else listening on its port, could fill our memory before the request's time limit.
:func:`bounded_agent` gives an Agent whose connections are aborted as soon as one response
has brought more than ``max_answer`` bytes (status line, header and body together); the
request then fails with a :class:`twisted.web.client.ResponseFailed` (or
``ResponseNeverReceived``) whose reasons hold an :class:`AnswerTooLong`: :func:`too_long`
finds it.
"""

from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer


class AnswerTooLong(Exception):
    """A response brought more bytes than allowed."""


def too_long(error):
    """The :class:`AnswerTooLong` behind a failed request's ``error``, or None."""
    if isinstance(error, AnswerTooLong):
        return error
    for reason in getattr(error, "reasons", None) or ():
        if isinstance(reason.value, AnswerTooLong):
            return reason.value
    return None


class _Counting(ProtocolWrapper):
    """Counts the bytes of the current response; aborts the connection past the limit."""

    received = 0
    exceeded = None

    def write(self, data):
        self.received = 0       # a new request on this connection: its answer starts afresh
        ProtocolWrapper.write(self, data)

    def writeSequence(self, data):
        self.received = 0
        ProtocolWrapper.writeSequence(self, data)

    def dataReceived(self, data):
        if self.exceeded is not None:
            return
        self.received += len(data)
        if self.received > self.factory.max_answer:
            self.exceeded = AnswerTooLong("answer longer than %d bytes" % self.factory.max_answer)
            self.transport.abortConnection()
            return
        ProtocolWrapper.dataReceived(self, data)

    def connectionLost(self, reason):
        if self.exceeded is not None:
            reason = Failure(self.exceeded)
        ProtocolWrapper.connectionLost(self, reason)


class _CountingFactory(WrappingFactory):
    protocol = _Counting

    def __init__(self, wrapped, max_answer):
        WrappingFactory.__init__(self, wrapped)
        self.max_answer = max_answer


class _BoundedEndpoint:
    def __init__(self, endpoint, max_answer):
        self._endpoint = endpoint
        self._max_answer = max_answer

    def connect(self, factory):
        # the Agent's pool talks to the HTTP protocol itself, not to our wrapper around it
        d = self._endpoint.connect(_CountingFactory(factory, self._max_answer))
        return d.addCallback(lambda wrapper: wrapper.wrappedProtocol)


@implementer(IAgentEndpointFactory)
class _BoundedEndpoints:
    def __init__(self, reactor, max_answer, tls_policy):
        self._reactor = reactor
        self._max_answer = max_answer
        self._tls_policy = tls_policy

    def endpointForURI(self, uri):
        endpoint = HostnameEndpoint(self._reactor, uri.host, uri.port)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self._tls_policy.creatorForNetloc(uri.host, uri.port),
                                     endpoint)
        return _BoundedEndpoint(endpoint, self._max_answer)


def bounded_agent(reactor, pool, max_answer):
    """An Agent (for ``treq.request(..., agent=...)``) using ``pool``, whose responses may
    bring at most ``max_answer`` bytes each."""
    endpoints = _BoundedEndpoints(reactor, max_answer, BrowserLikePolicyForHTTPS())
    return Agent.usingEndpointFactory(reactor, endpoints, pool=pool)
