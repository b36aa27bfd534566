"""The sans-I/O SMTP server core: bytes in, events out, replies queued to send.

Everything that decides the state of the SMTP dialogue lives in this module and nowhere else:
the session (which runs plugin hooks) asks the core whether a command is allowed now
(:meth:`SMTPCore.refusal`, which gives the 503 text when it is not), tells it what was accepted
through the transition methods, and the core refuses a transition that the state table does not
allow. The core never touches a socket, a clock or a plugin, so every edge case can be driven
directly in a test (``test_core.py``).

States and transitions (:data:`TRANSITIONS`)::

    CONNECTED -greet-> GREETED -helo-> READY -mail-> MAIL -rcpt-> RCPT -data-> DATA
    RCPT -rcpt-> RCPT;   MAIL, RCPT -reset-> READY;   DATA -data_end-> READY
    READY -auth-> AUTH -auth_end-> READY      (an AUTH exchange: SASL answers, not commands)
    any -close-> CLOSED

    READY -starttls-> TLS -tls_done-> GREETED (the client must say HELO/EHLO again)
    any -close-> CLOSED

STARTTLS: while the handshake runs (state TLS) no event is taken from the buffer. The session
refuses STARTTLS when anything was received after the command (:attr:`SMTPCore.buffered`,
:attr:`SMTPCore.partial_line`): those bytes came in plain text and must never run as if they
had come through TLS (the CVE-2011-0411 class). After the handshake, HELO/EHLO and AUTH are
forgotten (RFC 3207 4.2).

Input framing:

- Command mode: lines end with LF (a preceding CR is stripped). A line longer than
  ``max_line`` octets (512, RFC 5321 §4.5.3.1.4; ``max_auth_line`` = 12288 for AUTH lines and
  SASL answers, RFC 4954 §4) is dropped up to its LF and reported as :class:`LineTooLong`,
  without buffering it.
- Pipelining: the session pulls one event at a time with :meth:`next_event` and asks for the
  next only when the previous command is answered, so later lines wait in the buffer;
  :attr:`buffered` lets the transport pause reading when too much is waiting.
- After :meth:`start_data` the bytes are message text, framed by :class:`~qpsmtpd_tx.data.DataReader`.
- Replies are queued with :meth:`reply` and taken as one block by :meth:`data_to_send`, so all
  replies produced in one pass go out in a single write.
"""

import enum

import attr

from qpsmtpd_tx.data import DataReader


class State(enum.Enum):
    """Where the dialogue is."""

    # Members are singletons: hash by identity, in C (Enum's own __hash__ is a Python call,
    # and states are looked up in dicts several times per command).
    __hash__ = object.__hash__

    CONNECTED = "connected"  #: before the greeting (connect hooks running)
    GREETED = "greeted"  #: greeting sent; no HELO/EHLO accepted yet
    READY = "ready"  #: HELO/EHLO accepted; no transaction
    MAIL = "mail"  #: a sender was accepted
    RCPT = "rcpt"  #: at least one recipient was accepted
    DATA = "data"  #: 354 sent; reading the message
    AUTH = "auth"  #: an AUTH exchange is in progress (SASL answers are read, not commands)
    TLS = "tls"  #: 220 sent to STARTTLS; the TLS handshake is in progress
    CLOSED = "closed"  #: the connection is being closed; no more input is read


S = State
#: transition name → {from state: to state}
TRANSITIONS = {
    "greet": {S.CONNECTED: S.GREETED},
    "helo": {S.GREETED: S.READY},
    "mail": {S.READY: S.MAIL},
    "rcpt": {S.MAIL: S.RCPT, S.RCPT: S.RCPT},
    "data": {S.RCPT: S.DATA},
    "data_end": {S.DATA: S.READY},
    "reset": {S.MAIL: S.READY, S.RCPT: S.READY},
    "auth": {S.READY: S.AUTH},
    "auth_end": {S.AUTH: S.READY},
    "starttls": {S.READY: S.TLS},
    "tls_done": {S.TLS: S.GREETED},
}

# The 503 texts (qpsmtpd 0.94's, and RFC 4954's for AUTH in a transaction).
HELLO_FIRST = "please say hello first ..."
ALREADY_HELLO = "but you already said HELO ..."
MAIL_BEFORE_RCPT = "Use MAIL before RCPT"
MAIL_FIRST = "MAIL first"
RCPT_FIRST = "RCPT first"
ALREADY_AUTH = "but you already said AUTH ..."
AUTH_IN_TRANSACTION = "5.5.1 MAIL transaction in progress"
TLS_ACTIVE = "5.5.1 TLS already active"

#: the command states: where the session reads command lines
COMMAND_STATES = (S.GREETED, S.READY, S.MAIL, S.RCPT)
_ANYWHERE = dict.fromkeys(COMMAND_STATES)
#: command → {state: None (allowed) or why not (the 503 text)}; a state not listed: not allowed.
#: MAIL in a transaction starts a new one (the session resets first); AUTH is allowed only
#: once per connection (see :meth:`SMTPCore.refusal`) and only after an EHLO that offered it.
ALLOWED = {
    "helo": {S.GREETED: None, S.READY: ALREADY_HELLO, S.MAIL: ALREADY_HELLO, S.RCPT: ALREADY_HELLO},
    "mail": {S.GREETED: HELLO_FIRST, S.READY: None, S.MAIL: None, S.RCPT: None},
    "rcpt": {S.GREETED: MAIL_BEFORE_RCPT, S.READY: MAIL_BEFORE_RCPT, S.MAIL: None, S.RCPT: None},
    "data": {S.GREETED: MAIL_FIRST, S.READY: MAIL_FIRST, S.MAIL: RCPT_FIRST, S.RCPT: None},
    "auth": {S.READY: None, S.MAIL: AUTH_IN_TRANSACTION, S.RCPT: AUTH_IN_TRANSACTION},
    "starttls": {S.GREETED: HELLO_FIRST, S.READY: None, S.MAIL: AUTH_IN_TRANSACTION,
                 S.RCPT: AUTH_IN_TRANSACTION},
    "rset": _ANYWHERE, "noop": _ANYWHERE, "vrfy": _ANYWHERE, "help": _ANYWHERE,
    "quit": _ANYWHERE,
}
ALLOWED["ehlo"] = ALLOWED["helo"]
#: why a command is refused in a state its row does not list (CONNECTED, DATA, AUTH, CLOSED:
#: reached only when a hook closed the connection and then let the command go on)
NOT_NOW = {"mail": HELLO_FIRST, "rcpt": MAIL_BEFORE_RCPT, "data": MAIL_FIRST}
del S, _ANYWHERE


class ProtocolStateError(Exception):
    """A transition the state table does not allow: a bug in the session, not the client."""


@attr.s(frozen=True, slots=True)
class Command:
    """One command line (without its line ending), decoded as UTF-8 with surrogate escapes."""

    line = attr.ib()


@attr.s(frozen=True, slots=True)
class LineTooLong:
    """A command line over the limit was dropped."""

    limit = attr.ib()


#: returned by next_event when more input is needed
NEED_DATA = object()


class SMTPCore:
    """One SMTP server connection's protocol state, without I/O."""

    def __init__(self, max_line=512, max_auth_line=12288):
        self.state = State.CONNECTED
        self.max_line = max_line
        self.max_auth_line = max_auth_line
        self._within_both = min(max_line, max_auth_line)
        #: the last EHLO advertised AUTH (only then is AUTH a command)
        self.auth_offered = False
        #: an AUTH exchange succeeded on this connection (since its last TLS handshake)
        self.authenticated = False
        #: the session's object for the AUTH exchange in progress (None outside state AUTH)
        self.auth_exchange = None
        #: the TLS handshake after STARTTLS has completed (or the connection began in TLS)
        self.tls = False
        self._buf = bytearray()
        self._out = []
        self._out_size = 0
        self._discarding = False
        self._data = None
        self._pending = []

    @property
    def expect_auth_line(self):
        """True while an AUTH exchange runs: the next line is a SASL answer, not a command."""
        return self.state is State.AUTH

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data):
        """Add bytes received from the client."""
        if self.state is not State.CLOSED:
            self._buf += data

    @property
    def buffered(self):
        """How many received bytes wait to be processed."""
        return len(self._buf)

    @property
    def partial_line(self):
        """True while a command line has begun but its LF has not arrived (command mode)."""
        return self._discarding or (bool(self._buf) and self._buf[-1] != 10)

    @property
    def command_waiting(self):
        """True while a complete command line waits in the buffer (a pipelined command that
        will be handled without further input from the client)."""
        return self.state in COMMAND_STATES and not self._discarding and b"\n" in self._buf

    def first_line(self):
        """The first buffered line (without its line end) once its LF has arrived, else None;
        it stays buffered (a PROXY header is looked at before the greeting)."""
        i = self._buf.find(b"\n")
        if i < 0 or self._discarding:
            return None
        end = i - 1 if i and self._buf[i - 1] == 13 else i
        return bytes(self._buf[:end]).decode("utf-8", "surrogateescape")

    def peek(self, size):
        """Up to ``size`` buffered bytes, left in the buffer (a PROXY header is parsed from them)."""
        return bytes(self._buf[:size])

    def discard(self, size):
        """Drop the first ``size`` buffered bytes (a PROXY header that was read)."""
        del self._buf[:size]

    def next_event(self):
        """The next event from the buffered input, or ``NEED_DATA``.

        In DATA state: :class:`~qpsmtpd_tx.data.Headers`, :class:`~qpsmtpd_tx.data.Body`,
        :class:`~qpsmtpd_tx.data.DataEnd` or :class:`~qpsmtpd_tx.data.BadDataEnd`; otherwise
        :class:`Command` or :class:`LineTooLong`.
        """
        if self.state in (State.CLOSED, State.TLS):
            return NEED_DATA
        if self.state is State.DATA:
            return self._next_data_event()
        return self._next_command()

    def _line_limit(self):
        if self.state is State.AUTH or self._buf[:5].upper() == b"AUTH ":
            return self.max_auth_line
        return self.max_line

    def _next_command(self):
        buf = self._buf
        while True:
            i = buf.find(b"\n")
            if self._discarding:
                if i < 0:
                    del buf[:]
                    return NEED_DATA
                del buf[:i + 1]
                self._discarding = False
                continue
            # (a line within both limits, the usual one, needs no look at which applies)
            limit = self.max_line if 0 <= i < self._within_both else self._line_limit()
            if i < 0:
                if len(buf) > limit:
                    del buf[:]
                    self._discarding = True
                    return LineTooLong(limit)
                return NEED_DATA
            if i + 1 > limit:
                del buf[:i + 1]
                return LineTooLong(limit)
            end = i - 1 if i and buf[i - 1] == 13 else i
            line = bytes(buf[:end])
            del buf[:i + 1]
            return Command(line.decode("utf-8", "surrogateescape"))

    def _next_data_event(self):
        if not self._pending:
            self._pending.extend(self._data.consume(self._buf))
            if not self._pending:
                return NEED_DATA
        return self._pending.pop(0)

    # -- sequencing ------------------------------------------------------------------------

    def refusal(self, command, has_sender=True, has_recipients=True):
        """``None`` if ``command`` (a lower-case verb) is allowed now, else why not (a 503 text).

        Only sequencing is judged here; the session checks the arguments first where qpsmtpd
        does (a RCPT syntax error is reported before a missing MAIL). For DATA the session also
        says whether the transaction still has a sender and recipients: as qpsmtpd, DATA looks
        at the transaction, which a plugin may have changed since MAIL and RCPT.
        """
        if command == "auth" and self.authenticated:
            return ALREADY_AUTH
        if command == "starttls" and self.tls:
            return TLS_ACTIVE
        if command == "data" and not has_sender:
            return MAIL_FIRST
        allowed = ALLOWED[command]
        if self.state not in allowed:
            return NOT_NOW.get(command) or "%s not allowed in state %s" % (
                command.upper(), self.state.value)
        if allowed[self.state] is None and command == "data" and not has_recipients:
            return RCPT_FIRST
        return allowed[self.state]

    # -- transitions -----------------------------------------------------------------------

    def _go(self, name):
        try:
            self.state = TRANSITIONS[name][self.state]
        except KeyError:
            raise ProtocolStateError("%s not allowed in state %s" % (name, self.state.value))

    def greet(self):
        """The greeting was sent."""
        self._go("greet")

    def helo(self, auth_offered=False):
        """HELO or EHLO was accepted; ``auth_offered``: its reply advertised AUTH."""
        self._go("helo")
        self.auth_offered = auth_offered

    def mail(self):
        """A sender was accepted (a new transaction)."""
        self._go("mail")

    def rcpt(self):
        """A recipient was accepted."""
        self._go("rcpt")

    def start_data(self, max_size=0, max_partial=65536):
        """``354`` is being sent: the following bytes are message text."""
        self._go("data")
        self._data = DataReader(max_size=max_size, max_partial=max_partial)
        self._pending = []

    def data_end(self):
        """The message was read to its end and answered."""
        self._go("data_end")
        self._data = None

    def reset(self):
        """The transaction was dropped (RSET, a new MAIL, a refused DATA or VRFY)."""
        self._go("reset")

    def auth(self, exchange=None):
        """An AUTH exchange begins: lines are SASL answers (longer ones allowed) until it ends.

        ``exchange`` is kept as :attr:`auth_exchange` until then.
        """
        self._go("auth")
        self.auth_exchange = exchange

    def auth_end(self, success=False):
        """The AUTH exchange ended; ``success``: the client is now authenticated."""
        self._go("auth_end")
        self.auth_exchange = None
        self.authenticated = self.authenticated or success

    def starttls(self):
        """``220`` is being sent to STARTTLS: no command is read until :meth:`tls_done`.

        Raises :class:`ProtocolStateError` if input is waiting: the session must refuse then.
        """
        if self._buf or self._discarding:
            raise ProtocolStateError("STARTTLS with %d bytes pipelined after it" % len(self._buf))
        self._go("starttls")

    def tls_done(self):
        """The handshake completed: the dialogue starts over (RFC 3207 4.2), HELO/EHLO first,
        and an AUTH before it no longer counts."""
        self._go("tls_done")
        self.tls = True
        self.auth_offered = False
        self.authenticated = False

    def close(self):
        """No more input is processed; pending replies may still be sent."""
        self.state = State.CLOSED
        self.auth_exchange = None
        del self._buf[:]

    # -- output ----------------------------------------------------------------------------

    def reply(self, code, lines):
        """Queue a reply: ``code`` with one or more text lines (a multi-line reply).

        ``code`` must be an int from 200 to 599 (ValueError otherwise): a 1xx or a code of
        other than three digits would break the client's reply parsing.
        """
        if type(code) is not int or not 200 <= code <= 599:
            raise ValueError("not an SMTP reply code: %r" % (code,))
        lines = [line for line in lines if line] or [""]
        text = "%d %s\r\n" % (code, lines[-1])
        if len(lines) > 1:
            dash = "%d-" % code
            text = "".join([dash + line + "\r\n" for line in lines[:-1]]) + text
        out = text.encode("utf-8", "surrogateescape")     # one bytes object per reply
        self._out.append(out)
        self._out_size += len(out)

    @property
    def output_size(self):
        """How many reply bytes are queued and not yet taken by :meth:`data_to_send`."""
        return self._out_size

    def data_to_send(self):
        """Everything queued since the last call, as one bytes object."""
        out = b"".join(self._out)
        del self._out[:]
        self._out_size = 0
        return out
