"""The thin Twisted layer: a Protocol that feeds bytes to an SMTPSession, and its factory."""

import functools

from twisted.internet import reactor, tcp
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (IHalfCloseableProtocol, IHandshakeListener,
                                         IOpenSSLServerConnectionCreator)
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from zope.interface import implementer

from qpsmtpd_tx.codes import LOGWARN
from qpsmtpd_tx.dns.names import parse_ip
from qpsmtpd_tx.idle import IdleSweeper
from qpsmtpd_tx.objects import Connection
from qpsmtpd_tx.proxy_reader import EndpointProxy
from qpsmtpd_tx.session import SMTPSession
from qpsmtpd_tx.tls_transport import StartTLSTransport


@functools.lru_cache(maxsize=4096)
def _plain_ip(host):
    """``::ffff:192.0.2.1`` → ``192.0.2.1``; other addresses unchanged (remembered for the last
    few thousand: ``str`` of an address costs more than the rest of this)."""
    ip = parse_ip(host)
    return host if ip is None else str(ip)


def _addresses(transport):
    """``(remote ip, remote port, local ip, local port)`` of a new connection.

    A plain IPv4 TCP connection's come from the socket's tuples: ``getPeer`` and ``getHost``
    would build two address objects (an attrs class with a validator) to be read once. Other
    transports (IPv6, whose scope Twisted adds to the address; UNIX; wrappers) ask them.
    """
    if type(transport) is tcp.Server and len(transport.client) == 2:
        local_ip, local_port = transport.socket.getsockname()
        return transport.client[0], transport.client[1], local_ip, local_port
    peer, host = transport.getPeer(), transport.getHost()
    return (getattr(peer, "host", ""), getattr(peer, "port", 0),
            getattr(host, "host", ""), getattr(host, "port", 0))


def _no_delay(transport):
    """Turn Nagle's algorithm off on a TCP connection (TLS and PROXY wrappers pass the call to
    the socket's transport; other transports are left alone).

    Replies are written once per pass; with Nagle a reply written while an earlier one waits
    for its ACK is held until the client's delayed ACK comes (~40 ms on Linux).
    """
    try:
        transport.setTcpNoDelay(True)
    except (AttributeError, NotImplementedError, OSError):
        pass     # not TCP (a UNIX socket, a test's in-memory transport)


@implementer(IHandshakeListener, IHalfCloseableProtocol)
class SMTPProtocol(Protocol):
    """One client connection: transport events in, session out; idle timeout (the factory's
    :class:`~qpsmtpd_tx.idle.IdleSweeper` watches it)."""

    session = None
    #: the session's transport, which does STARTTLS (None on SMTPS: Twisted's TLS from the start)
    _tls_layer = None
    #: the clock's time of the client's last bytes (see IdleSweeper)
    idle_since = 0.0

    def callLater(self, seconds, func, *args):
        """The session's timers (deadlines, TLS): the reactor's, unless a test gives its
        Clock's ``callLater``."""
        return reactor.callLater(seconds, func, *args)

    def connectionMade(self):
        server = self.factory.server
        server.metrics.connection()
        if server.draining:
            server.metrics.connection_refused("shutting_down")
            # a client that got through before the listening socket closed
            self.transport.write(("421 %s\r\n" % server.shutdown_reply()).encode("utf-8", "surrogateescape"))
            self.transport.loseConnection()
            return
        if server.max_connections and len(server.sessions) >= server.max_connections:
            # As qpsmtpd-forkserver's -c, but the client is told instead of left waiting.
            server.metrics.connection_refused("limit_connections")
            server.log(LOGWARN, "refusing a connection from %s: %d connections already"
                       % (getattr(self.transport.getPeer(), "host", "?"), len(server.sessions)))
            self.transport.write(("421 %s Too many connections, try again later\r\n"
                                  % server.me).encode("utf-8", "surrogateescape"))
            self.transport.loseConnection()
            return
        _no_delay(self.transport)
        remote_ip, remote_port, local_ip, local_port = _addresses(self.transport)
        connection = Connection(remote_ip=_plain_ip(remote_ip), remote_port=remote_port,
                                local_ip=_plain_ip(local_ip), local_port=local_port)
        proxy = self.factory.proxy
        if proxy is not None and not proxy.trusts(connection):
            # a --listen-proxy endpoint: only the proxies may connect, and they expect no reply
            server.log(LOGWARN, "refusing a connection from %s on a PROXY endpoint: not in "
                       "proxy_trusted" % (connection.remote_ip,))
            self.transport.loseConnection()
            return
        transport = self.transport
        if not self.factory.implicit_tls:
            transport = self._tls_layer = StartTLSTransport(self.transport, self)
        self.session = SMTPSession(server, transport, connection)
        self.session.call_later = self.callLater
        self.session.listener_proxy = proxy
        self.session.on_answered = self._answered
        server.sessions.add(self.session)
        server.sessions_by_ip.add(self.session)
        server.metrics.session_opened()
        self.factory.idle_sweeper.add(self)
        if self.factory.implicit_tls:
            self.session.wait_for_handshake()    # SMTPS: the session starts once TLS is up
        else:
            self.session.start()

    def dataReceived(self, data):
        if self.session is None:
            return   # refused at connect: ignore what the client still sends
        self.idle_since = self.factory.idle_sweeper.clock.seconds()
        if self._tls_layer is not None:
            self._tls_layer.received(data)
        else:
            self.session.data_received(data)

    def _answered(self):
        # a hook of ours answered: the client's silence counts from now (as qpsmtpd's
        # timeout, which starts when it reads the next command)
        self.idle_since = self.factory.idle_sweeper.clock.seconds()

    def tls_data_received(self, data):
        """Plain text from the STARTTLS layer (all of one read, decrypted once TLS is on)."""
        self.session.data_received(data)

    def idle_limit(self):
        """Seconds of silence before the session times out: ``timeout`` (or ``timeoutsmtpd``)."""
        return self.factory.server.timeout

    def idle_expired(self):
        """The client has been silent for ``idle_limit()``: True once the session has timed
        out, False while a hook of ours is busy (looked at again a whole limit later)."""
        return self.session.timeout()

    def handshakeCompleted(self):
        """The TLS handshake (STARTTLS or SMTPS) is done."""
        if self.session is not None:
            self.session.tls_handshake_done(self.session.transport.getHandle())
            if not self.session.started:
                self.session.start()     # SMTPS: the session starts once TLS is up

    def readConnectionLost(self):
        """The client half-closed: its commands are answered before we close."""
        if self._tls_layer is not None:
            self._tls_layer.input_ended()
        if self.session is None:
            self.transport.loseConnection()
        else:
            self.session.input_ended()

    def writeConnectionLost(self):
        """Never asked for (we close both ways at once)."""

    def connectionLost(self, reason):
        self.factory.idle_sweeper.discard(self)
        if self.session is not None and self.session.handshake_pending:
            failure = self._tls_layer is not None and self._tls_layer.failure
            self.session.tls_handshake_failed(Failure(ConnectionLost(failure)) if failure
                                              else reason)
        if self.session is not None:
            self.factory.server.sessions.discard(self.session)
            self.factory.server.sessions_by_ip.discard(self.session)
            self.factory.server.metrics.session_closed()
            self.session.connection_lost()
        if self._tls_layer is not None:
            self._tls_layer.connection_lost()
        # The session (its timers and callbacks are this protocol's methods) and the TLS
        # layer refer back to this protocol: let go of them, so that the connection's objects
        # are freed when the session ends, not by the garbage collector.
        self.session = self._tls_layer = None


class SMTPFactory(Factory):
    """Builds an SMTPProtocol per connection, all sharing one SMTPServer."""

    protocol = SMTPProtocol
    noisy = False

    def __init__(self, server, implicit_tls=False, proxy=None):
        self.server = server
        #: the idle timeouts of this listener's connections (a test may give one on its Clock)
        self.idle_sweeper = IdleSweeper(reactor)
        #: SMTPS (RFC 8314): the connection is TLS from its first byte
        self.implicit_tls = implicit_tls
        #: a ``--listen-proxy`` endpoint's :class:`~qpsmtpd_tx.proxy_reader.EndpointProxy`
        self.proxy = proxy


@implementer(IOpenSSLServerConnectionCreator)
class CurrentChainTLS:
    """The TLS context of the server's current plugin chain, for each new SMTPS connection
    (so a SIGHUP with a new certificate applies to the next client)."""

    def __init__(self, server):
        self.server = server

    def serverConnectionForTLS(self, tls_protocol):
        """A connection on the current chain's context."""
        return self.server.chain.tls.serverConnectionForTLS(tls_protocol)


def proxy_factory(server):
    """The factory for a ``--listen-proxy`` endpoint: a PROXY header (v1 or v2) from a
    ``proxy_trusted`` peer first, then the SMTP session as usual."""
    return SMTPFactory(server, proxy=EndpointProxy(server))


def proxy_tls_factory(server):
    """The factory for a ``--listen-proxy-tls`` endpoint: a PROXY header from a
    ``proxy_trusted`` peer, then the client's TLS handshake (SMTPS), then the SMTP session."""
    return SMTPFactory(server, proxy=EndpointProxy(server, tls=True))


def smtps_factory(server):
    """The factory for an SMTPS endpoint: TLS first, then the SMTP session as usual."""
    return TLSMemoryBIOFactory(CurrentChainTLS(server), False, SMTPFactory(server, implicit_tls=True))
