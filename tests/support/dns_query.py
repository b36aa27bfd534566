"""Asking a DNS server one question, as the tests' own client: blocking (:func:`query`, for
helpers and test set-up) or on the reactor (:func:`ask`, for tests that watch when an answer
comes). Messages are built and parsed by ``twisted.names.dns``; answers are its ``Message``
(``rCode``, ``answers``, ``trunc``, ``auth``…).
"""

import random
import socket
import struct
import time

from twisted.internet import defer, protocol, reactor
from twisted.names import dns

from tests.support.processes import recv_exactly

#: seconds a blocking query waits for its answer
QUERY_TIMEOUT = 5.0


class NoAnswer(Exception):
    """The server did not answer in time."""


def rtype_code(rtype):
    """The numeric type of ``rtype`` (a name such as ``"TXT"``, or a number)."""
    if isinstance(rtype, int):
        return rtype
    try:
        return dns.REV_TYPES[rtype.upper()]
    except KeyError:
        raise ValueError("unknown DNS record type %r" % (rtype,)) from None


def question(name, rtype="A", message_id=None):
    """``(id, wire bytes)`` of a query for ``name`` (no recursion wanted)."""
    message_id = random.randrange(1 << 16) if message_id is None else message_id
    message = dns.Message(id=message_id, recDes=0)
    message.queries = [dns.Query(name, rtype_code(rtype))]
    return message_id, message.toStr()


def parse(data):
    """A ``twisted.names.dns.Message`` from wire bytes."""
    message = dns.Message()
    message.fromStr(data)
    return message


def query(address, name, rtype="A", tcp=False, port=53, timeout=QUERY_TIMEOUT):
    """Ask ``address``:``port`` (blocking) over UDP, or TCP; return the answer ``Message``.
    Raises :class:`NoAnswer` after ``timeout`` seconds."""
    message_id, data = question(name, rtype)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        if tcp:
            with socket.create_connection((address, port), timeout=timeout) as sock:
                sock.sendall(struct.pack("!H", len(data)) + data)
                length = struct.unpack("!H", _read_exactly(sock, 2))[0]
                return parse(_read_exactly(sock, length))
        deadline = time.monotonic() + timeout
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.sendto(data, (address, port))
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                answer = sock.recv(65535)
                if answer[:2] == data[:2]:
                    return parse(answer)
    except socket.timeout:
        raise NoAnswer("no answer from %s for %s %s within %.1f s"
                       % (address, name, rtype, timeout)) from None


def _read_exactly(sock, count):
    try:
        return recv_exactly(sock, count)
    except ConnectionError:
        raise NoAnswer("the server closed the TCP connection") from None


def ask(address, name, rtype="A", tcp=False, port=53):
    """Ask ``address``:``port`` on the reactor; a Deferred firing with the answer
    ``Message`` (never timing out: cancel it, or use ``addTimeout``, to stop waiting)."""
    message_id, data = question(name, rtype)
    if tcp:
        client = _TCPQuestion(data)
        connecting = protocol.ClientCreator(reactor, lambda: client).connectTCP(address, port)
        connecting.addErrback(client.answered.errback)
        return client.answered
    client = _UDPQuestion(address, port, message_id, data)
    client.port = reactor.listenUDP(0, client, interface="::" if ":" in address else "0.0.0.0")
    return client.answered


class _UDPQuestion(protocol.DatagramProtocol):
    """Sends one query, fires ``answered`` with the reply of the same id, then closes."""

    def __init__(self, address, port, message_id, data):
        self.target = (address, port)
        self.message_id = message_id
        self.data = data
        self.port = None
        self.answered = defer.Deferred(lambda d: self._close())

    def startProtocol(self):
        self.transport.write(self.data, self.target)

    def datagramReceived(self, datagram, address):
        if datagram[:2] == self.data[:2] and not self.answered.called:
            self._close()
            self.answered.callback(parse(datagram))

    def _close(self):
        if self.port is not None:
            self.port.stopListening()
            self.port = None


class _TCPQuestion(protocol.Protocol):
    """Sends one length-prefixed query, fires ``answered`` with the first reply."""

    def __init__(self, data):
        self.data = data
        self.buffer = b""
        self.answered = defer.Deferred(lambda d: self.transport and self.transport.abortConnection())
        self.transport = None

    def connectionMade(self):
        if self.answered.called:  # cancelled while connecting
            self.transport.abortConnection()
            return
        self.transport.write(struct.pack("!H", len(self.data)) + self.data)

    def dataReceived(self, data):
        self.buffer += data
        if len(self.buffer) >= 2:
            length = struct.unpack("!H", self.buffer[:2])[0]
            if len(self.buffer) >= 2 + length and not self.answered.called:
                self.transport.loseConnection()
                self.answered.callback(parse(self.buffer[2:2 + length]))

    def connectionLost(self, reason):
        if not self.answered.called:
            self.answered.errback(NoAnswer("the server closed the TCP connection"))
