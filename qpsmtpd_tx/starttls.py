"""STARTTLS (RFC 3207) and the start of an SMTPS connection (also behind a PROXY header), for
the session.

The ``tls`` plugin loads the certificate (:mod:`qpsmtpd_tx.tls`); this part of the session
answers STARTTLS, hands the transport to TLS, and starts the dialogue over once the handshake
is done. The rule against command injection: anything the client sent after ``STARTTLS``
before our 220 came in plain text, so STARTTLS is then refused with 421 and the connection
closed; those bytes are never executed.
"""

from twisted.internet.defer import Deferred, succeed

from qpsmtpd_tx import auth, codes
from qpsmtpd_tx.core import State
from qpsmtpd_tx.tls import session_notes

GO_AHEAD = "Go ahead with TLS"
PIPELINED_AFTER_STARTTLS = "4.5.0 Commands sent after STARTTLS before its reply; closing"
#: seconds a handshake may take when ``command_deadline`` is 0
HANDSHAKE_SECONDS = 300


class StartTLS:
    """The :class:`~qpsmtpd_tx.session.SMTPSession` part for STARTTLS and SMTPS handshakes."""

    _handshake_call = None
    #: fires True once the handshake after a PROXY header is done, False if it is not
    _handshake_waiter = None

    def cmd_starttls(self, rest):
        """STARTTLS: 220, then the handshake (the transport switches to TLS at once)."""
        if rest.strip():
            return self.respond(501, "Syntax error (no parameters allowed)")
        refusal = self.core.refusal("starttls")
        if refusal is not None:
            return self.respond(503, refusal)
        if self.core.buffered or self.core.partial_line:
            self.log(codes.LOGNOTICE, "%d bytes pipelined after STARTTLS: dropped, closing"
                     % self.core.buffered)
            self.respond(421, PIPELINED_AFTER_STARTTLS)
            return self.disconnect()
        self.core.starttls()
        self.respond(220, GO_AHEAD)
        self._write_replies()
        self.wait_for_handshake()
        self.transport.startTLS(self.chain.tls)
        return None

    def tls_after_proxy_header(self):
        """SMTPS behind a proxy (``--listen-proxy-tls``): the PROXY header has been read and
        what follows it is the client's TLS handshake. A Deferred firing True once the
        handshake is done, False if it failed, timed out or the connection was lost."""
        if self.chain.tls is None:     # a SIGHUP dropped the tls plugin
            self.log(codes.LOGERROR, "SMTPS behind a proxy needs the tls plugin; closing")
            self.disconnect()
            return succeed(False)
        early = self.core.peek(self.core.buffered)     # the ClientHello, or part of it
        self.core.discard(len(early))
        self._handshake_waiter = Deferred()
        waiter = self._handshake_waiter
        self.wait_for_handshake()
        self.transport.startTLS(self.chain.tls)
        if early:
            self.transport.received(early)
        return waiter

    def _handshake_over(self, done):
        waiter, self._handshake_waiter = self._handshake_waiter, None
        if waiter is not None:
            waiter.callback(done)

    @property
    def handshake_pending(self):
        """True from STARTTLS (or an SMTPS connect) until the handshake is done."""
        return self._handshake_call is not None

    def wait_for_handshake(self):
        """Close the connection if the handshake does not complete within ``command_deadline``."""
        seconds = self.server.command_deadline or HANDSHAKE_SECONDS
        self._handshake_call = self.call_later(seconds, lambda: self._handshake_expired(seconds))

    def _cancel_handshake_deadline(self):
        call, self._handshake_call = self._handshake_call, None
        if call is not None and call.active():
            call.cancel()

    def _handshake_expired(self, seconds):
        self._handshake_call = None
        if self._lost:
            return
        self.log(codes.LOGNOTICE, "TLS handshake not complete within %d s, closing" % seconds)
        self.transport.abortConnection()
        self._handshake_over(False)

    def tls_handshake_done(self, tls_connection):
        """The handshake completed (``tls_connection``: the OpenSSL Connection)."""
        self._cancel_handshake_deadline()
        self.server.metrics.tls_handshake("ok")
        conn = self.connection
        conn.tls = True
        conn.notes.update(session_notes(tls_connection))
        self.log(codes.LOGINFO, "TLS established: %s %s" % (conn.notes["tls_protocol"],
                                                            conn.notes["tls_cipher"]))
        if "tls_client_subject" in conn.notes:
            self.log(codes.LOGINFO, "TLS client certificate %s (%s)" % (
                conn.notes["tls_client_subject"],
                "verified" if conn.notes["tls_client_verified"] else "not verified"))
        if self.core.state is not State.TLS:
            self.core.tls = True     # SMTPS: the handshake came before the greeting
            self._handshake_over(True)
            return None
        # RFC 3207 4.2: forget what the client said before (AUTH too), keep the connection notes.
        self.core.tls_done()
        conn.hello = conn.hello_host = None
        auth.forget(self)
        self._reset_transaction()
        if not self._busy:
            self._pump()
        return None

    def tls_handshake_failed(self, reason):
        """The connection was lost before the handshake completed."""
        self._cancel_handshake_deadline()
        self.server.metrics.tls_handshake("failed")
        self.log(codes.LOGINFO, "TLS handshake failed: %s" % (reason.getErrorMessage(),))
        self._handshake_over(False)
