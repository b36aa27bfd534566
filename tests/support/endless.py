"""A stand-in back end that answers and then never stops: for the tests of what a plugin
does with an answer without end (spamd, clamd, rspamd, a next hop). It is not the daemon:
it writes its script and ignores what it is sent, except to wait for the request's end."""

from twisted.internet import reactor
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer


@implementer(IPullProducer)
class _Endless(Protocol):
    def connectionMade(self):
        self.factory.connections += 1
        self.received = b""
        self.answered = False
        if self.factory.request_done is None:
            self._answer()

    def dataReceived(self, data):
        if self.answered or self.factory.request_done is None:
            return
        self.received += data
        if self.factory.request_done(self.received):
            self._answer()

    def _answer(self):
        self.answered = True
        self.transport.write(self.factory.head)
        if self.factory.more:
            self.transport.registerProducer(self, False)

    def resumeProducing(self):
        self.transport.write(self.factory.more)

    def stopProducing(self):
        pass


def endless_server(testcase, head, more, request_done=None):
    """Listen on a 127.0.0.1 port whose connections get ``head``, then ``more`` again and
    again as fast as the socket takes it (``more`` empty: nothing after ``head``). With
    ``request_done(bytes received)``, the answer starts once it returns true. Returns
    ``(port, factory)``; ``factory.connections`` counts the connections."""
    factory = Factory.forProtocol(_Endless)
    factory.head, factory.more, factory.request_done = head, more, request_done
    factory.connections = 0
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testcase.addCleanup(listening.stopListening)
    return listening.getHost().port, factory


#: HTTP answers without end, as ``(head, more)``: a header that goes on, a chunked body that
#: goes on
ENDLESS_HTTP = [(b"HTTP/1.1 200 OK\r\n", b"X-Junk: y\r\n" * 4096),
                (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                 b"10000\r\n" + b"x" * 0x10000 + b"\r\n")]


def http_request_done(received):
    """True once ``received`` holds a whole HTTP request (its header and Content-Length)."""
    head, separator, body = received.partition(b"\r\n\r\n")
    if not separator:
        return False
    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
              if line.lower().startswith(b"content-length:")]
    return not length or len(body) >= length[0]


def endless_http_servers(testcase):
    """``(port, factory)`` of an :func:`endless_server` for each of :data:`ENDLESS_HTTP`,
    answering once the request is whole."""
    return [endless_server(testcase, head, more, http_request_done) for head, more in ENDLESS_HTTP]
