"""The MTA side of one milter conversation as a state table, without I/O.

:class:`Conversation` builds what to send for each SMTP stage (a :class:`Step`: bytes, and
whether a reply is awaited) and turns the milter's reply packets into events
(:class:`Progress`, :class:`Verdict`). It honours what was negotiated: a stage the milter
asked to skip (``P_NO*``) sends nothing, a stage it will not answer (``P_NR_*``) awaits
nothing, a macro list it set (``SETSYMLIST``) limits the macros sent, and a modification
whose action it was not allowed (``F_*``) is a protocol error.

States and transitions (:data:`TRANSITIONS`)::

    NEW -optneg-> NEGOTIATING -(its answer)-> OPEN -connect-> CONNECTED
    CONNECTED -helo-> CONNECTED;   CONNECTED -mail-> MAIL -rcpt-> RCPT -rcpt-> RCPT
    RCPT -data-> DATA -header-> HEADERS -header-> HEADERS;  DATA, HEADERS -eoh-> EOH
    EOH -body-> BODY -body-> BODY;  EOH, BODY -eob-> CONNECTED  (the message is done)
    MAIL … BODY -abort-> CONNECTED;  any -quit-> CLOSED

Every step moves the state, also when it sends nothing, so the order is always checked.
Verdicts end parts of the conversation as the protocol says: ``accept`` or ``reject`` at
CONNECT ends it for the connection (later steps send nothing); ``accept``, ``reject``,
``tempfail`` and ``discard`` at MAIL and later end it for the transaction (until the next
MAIL), except ``reject``/``tempfail`` at RCPT, which concern that recipient only.
"""

import enum

import attr

from qpsmtpd_tx.milter import codec
from qpsmtpd_tx.milter.codec import ProtocolError


class StateError(Exception):
    """A step the state table does not allow now: a bug in the caller, not the milter."""


class State(enum.Enum):
    """Where the conversation is."""

    NEW = "new"
    NEGOTIATING = "negotiating"
    OPEN = "open"
    CONNECTED = "connected"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    HEADERS = "headers"
    EOH = "eoh"
    BODY = "body"
    CLOSED = "closed"


S = State
_IN_TRANSACTION = (S.MAIL, S.RCPT, S.DATA, S.HEADERS, S.EOH, S.BODY)
#: step → {from state: to state}
TRANSITIONS = {
    "optneg": {S.NEW: S.NEGOTIATING},
    "connect": {S.OPEN: S.CONNECTED},
    "helo": {S.CONNECTED: S.CONNECTED},
    "mail": {S.CONNECTED: S.MAIL},
    "rcpt": {S.MAIL: S.RCPT, S.RCPT: S.RCPT},
    "data": {S.RCPT: S.DATA},
    "header": {S.DATA: S.HEADERS, S.HEADERS: S.HEADERS},
    "eoh": {S.DATA: S.EOH, S.HEADERS: S.EOH},
    "body": {S.EOH: S.BODY, S.BODY: S.BODY},
    "eob": {S.EOH: S.CONNECTED, S.BODY: S.CONNECTED},
    "abort": dict.fromkeys(_IN_TRANSACTION, S.CONNECTED),
    "quit": {state: S.CLOSED for state in S},
}
del S

#: step → (command, macro stage or None, "leave it out" flag, "no reply" flag)
STEPS = {
    "connect": (codec.CONNECT, codec.M_CONNECT, codec.P_NOCONNECT, codec.P_NR_CONN),
    "helo": (codec.HELO, codec.M_HELO, codec.P_NOHELO, codec.P_NR_HELO),
    "mail": (codec.MAIL, codec.M_ENVFROM, codec.P_NOMAIL, codec.P_NR_MAIL),
    "rcpt": (codec.RCPT, codec.M_ENVRCPT, codec.P_NORCPT, codec.P_NR_RCPT),
    "data": (codec.DATA, codec.M_DATA, codec.P_NODATA, codec.P_NR_DATA),
    "header": (codec.HEADER, None, codec.P_NOHDRS, codec.P_NR_HDR),
    "eoh": (codec.EOH, codec.M_EOH, codec.P_NOEOH, codec.P_NR_EOH),
    "body": (codec.BODY, None, codec.P_NOBODY, codec.P_NR_BODY),
    "eob": (codec.EOB, codec.M_EOM, 0, 0),
}

#: the actions we let a milter take: everything but ADDRCPT_PAR (we could not honour its
#: ESMTP parameters); QUARANTINE is the plugin's ``quarantine`` argument
OFFERED_ACTIONS = (codec.F_ADDHDRS | codec.F_CHGBODY | codec.F_ADDRCPT | codec.F_DELRCPT
                   | codec.F_CHGHDRS | codec.F_QUARANTINE | codec.F_CHGFROM | codec.F_SETSYMLIST)
#: the steps a milter may leave out or not answer; not HDR_LEADSPC (we send and take header
#: values without their leading space) nor RCPT_REJ (the milter sees only recipients that
#: reach it), nor the larger chunk sizes (we send at most 64 KiB)
OFFERED_PROTOCOL = (codec.P_NOCONNECT | codec.P_NOHELO | codec.P_NOMAIL | codec.P_NORCPT
                    | codec.P_NOBODY | codec.P_NOHDRS | codec.P_NOEOH | codec.P_NR_HDR
                    | codec.P_NOUNKNOWN | codec.P_NODATA | codec.P_SKIP | codec.P_NR_CONN
                    | codec.P_NR_HELO | codec.P_NR_MAIL | codec.P_NR_RCPT | codec.P_NR_DATA
                    | codec.P_NR_UNKN | codec.P_NR_EOH | codec.P_NR_BODY)

#: modification reply → the action flag it needs
MODIFICATIONS = {
    codec.R_ADDHEADER: codec.F_ADDHDRS,
    codec.R_INSHEADER: codec.F_ADDHDRS,
    codec.R_CHGHEADER: codec.F_CHGHDRS,
    codec.R_REPLBODY: codec.F_CHGBODY,
    codec.R_ADDRCPT: codec.F_ADDRCPT,
    codec.R_DELRCPT: codec.F_DELRCPT,
    codec.R_CHGFROM: codec.F_CHGFROM,
    codec.R_QUARANTINE: codec.F_QUARANTINE,
}

#: the most a milter's changes to one message may amount to (header fields, REPLBODY data):
#: they are held in memory until its final answer. Each change counts at least CHANGE_COST
#: bytes, so that a flood of tiny ones is bounded too.
MAX_CHANGES = 64 << 20
CHANGE_COST = 512

CONTINUE, ACCEPT, REJECT, TEMPFAIL, DISCARD, SKIP, FAIL = (
    "continue", "accept", "reject", "tempfail", "discard", "skip", "fail")
_FINAL = {codec.R_CONTINUE: CONTINUE, codec.R_ACCEPT: ACCEPT, codec.R_REJECT: REJECT,
          codec.R_TEMPFAIL: TEMPFAIL, codec.R_DISCARD: DISCARD, codec.R_SKIP: SKIP,
          codec.R_SHUTDOWN: FAIL, codec.R_CONN_FAIL: FAIL}


@attr.s(frozen=True)
class Step:
    """What to send for a stage (``data``, possibly empty) and whether a reply is awaited."""

    stage = attr.ib()
    data = attr.ib(default=b"")
    awaits = attr.ib(default=False)


@attr.s(frozen=True)
class Progress:
    """The milter asks for more time (the reply timer starts again)."""


@attr.s(frozen=True)
class Verdict:
    """The milter's answer to ``stage``: ``action`` (CONTINUE, ACCEPT, REJECT, TEMPFAIL,
    DISCARD, SKIP, or FAIL for a milter that shut down), its own reply (``code`` and
    ``lines``) if it gave one, and at EOB the ``modifications`` (a list of codec.Reply)."""

    stage = attr.ib()
    action = attr.ib()
    code = attr.ib(default=None)
    lines = attr.ib(default=())
    modifications = attr.ib(default=())


class Conversation:
    """One milter conversation, MTA side. Call :meth:`optneg` first, feed every byte received
    to :meth:`receive`, and build each stage's bytes with :meth:`step` (or the helpers)."""

    def __init__(self, actions=OFFERED_ACTIONS, protocol=OFFERED_PROTOCOL,
                 max_changes=MAX_CHANGES):
        self.state = State.NEW
        #: the bound of one message's changes (bytes; see :data:`MAX_CHANGES`)
        self.max_changes = max_changes
        self._changes_size = 0
        self.offered_actions = actions
        self.offered_protocol = protocol
        #: the milter's OPTNEG answer (a codec.Negotiated), once received
        self.negotiated = None
        self._reader = codec.PacketReader()
        self._awaiting = None
        self._modifications = []
        #: the milter is done with this connection (accept/reject at CONNECT, or a failure)
        self.connection_finished = False
        #: the milter is done with this transaction (until the next MAIL)
        self.transaction_finished = False

    # -- what we send ---------------------------------------------------------------------

    def _move(self, step):
        row = TRANSITIONS[step]
        if self.state not in row:
            raise StateError("milter step %s not allowed in state %s" % (step, self.state.value))
        if self._awaiting is not None:
            raise StateError("milter step %s while awaiting the answer to %s"
                             % (step, self._awaiting))
        self.state = row[self.state]

    def optneg(self):
        """The OPTNEG packet that opens the conversation."""
        self._move("optneg")
        self._awaiting = "optneg"
        return codec.optneg_packet(self.offered_actions, self.offered_protocol)

    @property
    def awaiting(self):
        """The stage whose answer is awaited, or None."""
        return self._awaiting

    def in_transaction(self):
        """True between MAIL and the end of the message (an ABORT is then due on reset)."""
        return self.state in _IN_TRANSACTION

    def step(self, stage, payload, macros=()):
        """The :class:`Step` for ``stage`` (a key of :data:`STEPS`) whose command data is
        ``payload`` (a packet built by codec), preceded by the ``macros`` ((name, value)
        pairs) the milter wants for that stage."""
        if self.state in (State.NEW, State.NEGOTIATING):
            raise StateError("milter step %s before the negotiation" % stage)
        if stage == "mail":
            self.transaction_finished = False
        self._move(stage)
        command, macro_stage, leave_out, no_reply = STEPS[stage]
        finished = self.connection_finished or (
            self.transaction_finished and stage not in ("connect", "helo"))
        if finished or self.negotiated.protocol & leave_out:
            return Step(stage)
        data = payload
        macros = self._wanted_macros(macro_stage, macros)
        if macros:
            data = codec.macro_packet(command, macros) + data
        awaits = not self.negotiated.protocol & no_reply
        if awaits:
            self._awaiting = stage
            self._modifications = []
            self._changes_size = 0
        return Step(stage, data, awaits)

    def _wanted_macros(self, macro_stage, macros):
        if macro_stage is None:
            return []
        wanted = self.negotiated.macros.get(macro_stage)
        pairs = [(codec.normal_macro_name(n), v) for n, v in macros if v is not None]
        if wanted is None:
            return pairs
        values = dict(pairs)
        return [(n, values[n]) for n in wanted if n in values]

    def abort(self):
        """ABORT if a transaction is open (the milter forgets it), else nothing; no reply."""
        if not self.in_transaction() or self.state is State.CLOSED:
            return b""
        self._move("abort")
        self.transaction_finished = False
        return b"" if self.connection_finished else codec.packet(codec.ABORT)

    def quit(self):
        """QUIT: the conversation ends; no reply."""
        if self.state is State.CLOSED:
            return b""
        self.state = State.CLOSED
        self._awaiting = None
        return codec.packet(codec.QUIT)

    # -- what we receive ------------------------------------------------------------------

    def receive(self, data):
        """Take bytes from the milter; return the events they complete (codec.Negotiated,
        Progress, Verdict). ProtocolError for anything the protocol does not allow now."""
        events = []
        for command, payload in self._reader.feed(data):
            event = self._packet(command, payload)
            if event is not None:
                events.append(event)
        return events

    def _packet(self, command, payload):
        stage = self._awaiting
        if stage is None:
            raise ProtocolError("unexpected %r packet (no answer was awaited)" % command)
        if stage == "optneg":
            return self._negotiated(command, payload)
        reply = codec.parse_reply(command, payload)
        if command == codec.R_PROGRESS:
            return Progress()
        if command in MODIFICATIONS:
            if stage != "eob":
                raise ProtocolError("modification %r at %s (allowed at end of message only)"
                                    % (command, stage))
            if not self.negotiated.actions & MODIFICATIONS[command]:
                raise ProtocolError("modification %r without the negotiated action" % command)
            self._changes_size += len(payload) + CHANGE_COST
            if self._changes_size > self.max_changes:
                raise ProtocolError("changes to the message over %d bytes" % self.max_changes)
            self._modifications.append(reply)
            return None
        if command == codec.R_REPLYCODE:
            action = REJECT if reply.code >= 500 else TEMPFAIL
        elif command in _FINAL:
            action = _FINAL[command]
        else:
            raise ProtocolError("reply %r not allowed at %s" % (command, stage))
        return self._final(stage, action, reply)

    def _final(self, stage, action, reply):
        if action == SKIP and stage != "body":
            raise ProtocolError("skip at %s (allowed for body chunks only)" % stage)
        if action == DISCARD and stage in ("connect", "helo"):
            raise ProtocolError("discard at %s (there is no message to discard)" % stage)
        self._awaiting = None
        modifications, self._modifications = tuple(self._modifications), []
        self._changes_size = 0
        if action == FAIL or (stage == "connect" and action in (ACCEPT, REJECT)):
            self.connection_finished = True
        elif stage not in ("connect", "helo") and action != CONTINUE and action != SKIP and not (
                stage == "rcpt" and action in (REJECT, TEMPFAIL)):
            self.transaction_finished = True
        return Verdict(stage, action, reply.code, reply.lines,
                       modifications if stage == "eob" else ())

    def _negotiated(self, command, payload):
        if command != codec.OPTNEG:
            raise ProtocolError("answer %r to OPTNEG" % command)
        answer = codec.parse_optneg(payload)
        if answer.version < codec.MIN_VERSION:
            raise ProtocolError("milter protocol version %d (we need %d or later)"
                                % (answer.version, codec.MIN_VERSION))
        extra_actions = answer.actions & ~self.offered_actions
        if extra_actions:
            raise ProtocolError("the milter wants actions we do not allow (0x%x)" % extra_actions)
        extra_steps = answer.protocol & ~self.offered_protocol
        if extra_steps:
            raise ProtocolError("the milter wants protocol options we do not offer (0x%x)"
                                % extra_steps)
        if answer.macros and not answer.actions & codec.F_SETSYMLIST:
            raise ProtocolError("macro lists without the SETSYMLIST action")
        self.negotiated = answer
        self._awaiting = None
        self.state = State.OPEN
        return answer


def verdict_without_reply(stage):
    """The Verdict of a step that awaited no reply: continue."""
    return Verdict(stage, CONTINUE)
