"""The sans-I/O SMTP server core: bytes in, events out, replies queued to send.

Everything that decides the state of the SMTP dialogue lives in this module and nowhere else:
the session (which runs plugin hooks) tells the core what was accepted through the transition
methods, and the core refuses a transition that the state table does not allow. The core never
touches a socket, a clock or a plugin, so every edge case can be driven directly in a test.

States::

    CONNECTED --greet--> GREETED --helo--> READY --mail--> MAIL --rcpt--> RCPT --data--> DATA
                                             ^  <-----reset------'          |            |
                                             '-------------------data_end-----------------'
    any --close--> CLOSED;  READY/MAIL/RCPT --starttls--> GREETED (HELO is forgotten)

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

    CONNECTED = "connected"  #: before the greeting (connect hooks running)
    GREETED = "greeted"  #: greeting sent; no HELO/EHLO accepted yet
    READY = "ready"  #: HELO/EHLO accepted; no transaction
    MAIL = "mail"  #: a sender was accepted
    RCPT = "rcpt"  #: at least one recipient was accepted
    DATA = "data"  #: 354 sent; reading the message
    CLOSED = "closed"  #: the connection is being closed; no more input is read


S = State
#: transition name → {from state: to state}
TRANSITIONS = {
    "greet": {S.CONNECTED: S.GREETED},
    "helo": {S.GREETED: S.READY},
    "mail": {S.READY: S.MAIL, S.MAIL: S.MAIL, S.RCPT: S.MAIL},
    "rcpt": {S.MAIL: S.RCPT, S.RCPT: S.RCPT},
    "data": {S.RCPT: S.DATA},
    "data_end": {S.DATA: S.READY},
    "reset": {S.GREETED: S.GREETED, S.READY: S.READY, S.MAIL: S.READY, S.RCPT: S.READY},
    "starttls": {S.GREETED: S.GREETED, S.READY: S.GREETED, S.MAIL: S.GREETED, S.RCPT: S.GREETED},
}
del S


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
        #: set by the session while it waits for a SASL answer line
        self.expect_auth_line = False
        self._buf = bytearray()
        self._out = []
        self._out_size = 0
        self._discarding = False
        self._data = None
        self._pending = []

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

    def next_event(self):
        """The next event from the buffered input, or ``NEED_DATA``.

        In DATA state: :class:`~qpsmtpd_tx.data.Headers`, :class:`~qpsmtpd_tx.data.Body`,
        :class:`~qpsmtpd_tx.data.DataEnd` or :class:`~qpsmtpd_tx.data.BadDataEnd`; otherwise
        :class:`Command` or :class:`LineTooLong`.
        """
        if self.state is State.CLOSED:
            return NEED_DATA
        if self.state is State.DATA:
            return self._next_data_event()
        return self._next_command()

    def _line_limit(self):
        if self.expect_auth_line or self._buf[:5].upper() == b"AUTH ":
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
            limit = self._line_limit()
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

    # -- transitions -----------------------------------------------------------------------

    def _go(self, name):
        try:
            self.state = TRANSITIONS[name][self.state]
        except KeyError:
            raise ProtocolStateError("%s not allowed in state %s" % (name, self.state.value))

    def greet(self):
        """The greeting was sent."""
        self._go("greet")

    def helo(self):
        """HELO or EHLO was accepted."""
        self._go("helo")

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
        """The transaction was dropped (RSET, a refused DATA, a new HELO after STARTTLS)."""
        self._go("reset")

    def starttls(self):
        """TLS started: the client must say HELO/EHLO again; unread plaintext is discarded."""
        self._go("starttls")
        del self._buf[:]

    def close(self):
        """No more input is processed; pending replies may still be sent."""
        self.state = State.CLOSED
        del self._buf[:]

    # -- output ----------------------------------------------------------------------------

    def reply(self, code, lines):
        """Queue a reply: ``code`` with one or more text lines (a multi-line reply)."""
        lines = [line for line in lines if line] or [""]
        last = len(lines) - 1
        for n, line in enumerate(lines):
            sep = " " if n == last else "-"
            out = ("%d%s%s\r\n" % (code, sep, line)).encode("utf-8", "surrogateescape")
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
