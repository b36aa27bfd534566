"""The session's transport for a plain-text connection that may switch to TLS (STARTTLS).

Until ``startTLS`` it passes everything to the TCP transport. After it, the connection's bytes
go through an OpenSSL connection on memory BIOs, and this layer hands the session *all* the
text decrypted from one socket read in one call, so a client that sends a pipelined group or a
message as several TLS records costs the session one pass, not one per record. Twisted's own
``startTLS`` delivers each record on its own, merges writes with a ``callLater(0)`` per write,
and copies each of the TCP transport's interfaces onto its TLS protocol one by one (measured in
``bench/README.md``); this layer does none of that. SMTPS connections (TLS from the first
byte) keep Twisted's TLS transport.

Closing: ``loseConnection`` sends our ``close_notify`` and closes the TCP connection once the
client has answered with its own (or closed), as Twisted does; the session bounds that wait.
A connection whose handshake has not completed is aborted instead (nothing to shut down).
"""

from OpenSSL import SSL

from qpsmtpd_tx.socket_write import lose_now, write_now

#: the most plain text OpenSSL returns from one record
_RECORD = 16384


class StartTLSTransport:
    """Wraps the TCP transport ``tcp`` of ``protocol`` (an SMTPProtocol) for its session.

    The protocol passes every received chunk to :meth:`received`; this layer calls the
    protocol's ``tls_data_received(data)`` with plain text and ``handshakeCompleted()``.
    """

    def __init__(self, tcp, protocol):
        self.tcp = tcp
        self.protocol = protocol
        #: the OpenSSL connection once startTLS was called, else None
        self.tls = None
        self.handshake_done = False
        #: why the connection failed in TLS (an OpenSSL error message), if it did
        self.failure = None
        self._closing = False
        self._lost = False
        #: the client has closed its sending side (TCP): no close_notify can come any more
        self._input_ended = False
        self._unsent = []

    # -- the transport the session uses ---------------------------------------------------

    def write(self, data):
        """Send ``data`` (encrypted once TLS is on)."""
        if self._lost:
            return
        if self.tls is None:
            write_now(self.tcp, data)
        elif not self._closing and self.failure is None:
            self._send(data)
            self._flush()

    def writeSequence(self, chunks):
        """Send the chunks as one write."""
        self.write(b"".join(chunks))

    def loseConnection(self):
        """Close after what was written; on TLS, after a close_notify exchange. True when the
        close completes on the next reactor turn whatever the client does (see
        :func:`~qpsmtpd_tx.socket_write.lose_now`)."""
        if self._lost:
            return
        if self.tls is None:
            return lose_now(self.tcp)
        if self._closing:
            return
        self._closing = True
        if not self.handshake_done or self.failure is not None:
            self.tcp.abortConnection()
            return
        self._shutdown()

    def abortConnection(self):
        """Drop the connection at once."""
        self.tcp.abortConnection()

    def startTLS(self, creator):
        """Switch to TLS as the server, with a connection from ``creator``
        (an ``IOpenSSLServerConnectionCreator``); the handshake starts with the next bytes."""
        self.tls = creator.serverConnectionForTLS(None)
        self.tls.set_accept_state()

    def getHandle(self):
        """The OpenSSL connection once TLS has started, else the socket."""
        return self.tls if self.tls is not None else self.tcp.getHandle()

    # The two calls of every connection are passed on without __getattr__ (a Python-level
    # fallback after a failed lookup: hasattr pays it too).

    def registerProducer(self, producer, streaming):
        """The TCP transport's ``registerProducer``."""
        return self.tcp.registerProducer(producer, streaming)

    def unregisterProducer(self):
        """The TCP transport's ``unregisterProducer``."""
        return self.tcp.unregisterProducer()

    def __getattr__(self, name):
        # getPeer, getHost, pauseProducing, resumeProducing, ...
        return getattr(self.tcp, name)

    def input_ended(self):
        """The client closed its sending side: a TLS close waiting for its close_notify
        closes the TCP connection now (most clients close TCP after QUIT's 221 without one)."""
        self._input_ended = True
        if self._closing and self.tls is not None and not self._lost:
            self.tcp.loseConnection()

    def connection_lost(self):
        """The TCP connection is gone: let the OpenSSL connection go at once (its buffers
        would otherwise wait for the garbage collector: the session and this layer refer to
        each other through the protocol)."""
        self._lost = True
        self.tls = None

    # -- bytes from the client -------------------------------------------------------------

    def received(self, data):
        """Bytes from the TCP connection."""
        if self.tls is None:
            self.protocol.tls_data_received(data)
            return
        if self.failure is not None:
            return
        closing = self._closing
        self.tls.bio_write(data)
        if not self.handshake_done and not self._handshake():
            return
        text = self._read()
        if self._unsent:
            unsent, self._unsent = self._unsent, []
            for chunk in unsent:
                self._send(chunk)
        self._flush()
        if text and not closing:
            # (what came before a close_notify in this read still counts, as with Twisted)
            self.protocol.tls_data_received(text)

    def _handshake(self):
        """Advance the handshake; True once it is complete."""
        try:
            self.tls.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return False
        except SSL.Error as e:
            self._fail(e)
            return False
        self.handshake_done = True
        self._flush()
        self.protocol.handshakeCompleted()
        return not self._closing

    def _read(self):
        """All the plain text the buffered records hold."""
        chunks = []
        while True:
            try:
                chunks.append(self.tls.recv(_RECORD))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                # the client's close_notify: answer it and close
                self._closing = True
                self._shutdown()
                break
            except SSL.Error as e:
                self._fail(e)
                break
        return b"".join(chunks)

    # -- bytes to the client ---------------------------------------------------------------

    def _send(self, data):
        view = memoryview(data)
        while view:
            try:
                sent = self.tls.send(view)
            except SSL.WantReadError:
                # a renegotiation waits for the client: send the rest after its next bytes
                self._unsent.append(bytes(view))
                return
            except SSL.Error as e:
                self._fail(e)
                return
            view = view[sent:]

    def _flush(self):
        """Write what OpenSSL has produced to the TCP connection."""
        while True:
            try:
                out = self.tls.bio_read(65536)
            except SSL.WantReadError:
                return
            write_now(self.tcp, out)

    def _shutdown(self):
        try:
            done = self.tls.shutdown()
        except SSL.Error:
            done = True
        self._flush()
        if done or self._input_ended:
            self.tcp.loseConnection()

    def _fail(self, error):
        """A TLS error (a bad handshake, a bad record): drop the connection."""
        self.failure = str(error) or error.__class__.__name__
        self.tcp.abortConnection()
