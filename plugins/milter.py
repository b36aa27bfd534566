"""milter — ask a Sendmail/Postfix mail filter (milter protocol 6) at every SMTP stage.

The milter's answers refuse, accept, discard or change the message. One milter connection
per SMTP connection: opened at ``connect`` (the conversation starts with the option
negotiation), then CONNECT, HELO, MAIL, RCPT and DATA as the client sends
them, and at ``data_post`` the header fields (the core's Received and
Authentication-Results included), the end of the header, the body (CRLF line endings, chunks
of at most 64 KiB) and the end of the message. A later transaction on the same connection
reuses the milter connection: a transaction that ends before its message was answered (RSET,
a refusal, a new MAIL) is ended with ABORT; QUIT at disconnect. Stages the milter asked to
leave out are not sent, stages it will not answer are not waited for, and the macros it
listed (SETSYMLIST) are the ones sent.

Arguments: ``milter NAME ADDRESS [key value …]`` — qpsmtpd 0.94's two, then ours:
  ``NAME``               a label for the log and the replies (``milter Brightmail 5513``).
  ``ADDRESS``            where the milter listens: ``PORT`` (on 127.0.0.1, as 0.94),
                         ``HOST:PORT``, ``[IPv6]:PORT``, a unix socket ``/path`` or
                         ``unix:/path`` (also ``local:/path``), or Sendmail's
                         ``inet:PORT@HOST`` / ``inet6:PORT@HOST`` and Postfix's
                         ``inet:HOST:PORT``.
  ``default_action tempfail|reject|accept``  what happens when the milter cannot be used
                         (cannot be reached, closes the connection, breaks the protocol, does
                         not answer in time, shuts down): ``tempfail`` (default) refuses the
                         stage temporarily (``451 4.7.1 Service unavailable - try again
                         later``; the code is the stage's, see Replies), ``reject`` refuses it
                         for good (``5.7.1 Command rejected``), ``accept`` goes on without the
                         milter. The milter is not asked again during that SMTP connection:
                         every later stage gets the same answer. Logged at LOGERROR.
  ``connect_timeout S``  seconds to connect to the milter (default 30).
  ``command_timeout S``  seconds the milter has to answer OPTNEG, CONNECT, HELO, MAIL, RCPT
                         and DATA (default 30).
  ``content_timeout S``  seconds it has to answer each header, the end of the header, each
                         body chunk and the end of the message (default 300). A ``progress``
                         reply starts the wait again.
  ``action reject|tag``  a milter's rejection of the message (at DATA or later): ``reject``
                         (default) refuses it; ``tag`` accepts it with
                         ``X-Milter-Rejected: NAME; <its reply>``. The per-recipient setting
                         ``milter_action``. Temporary failures are never tagged.
  ``quarantine reject|tempfail|tag``  a milter's QUARANTINE (put on hold): we have no hold
                         queue, so ``reject`` (default) refuses the message (``552 5.7.1
                         Message quarantined: <reason>``), ``tempfail`` defers it (452), ``tag``
                         accepts it with ``X-Milter-Quarantine: NAME; <reason>``.
  ``daemon_name NAME``   the ``{daemon_name}`` macro (default: the ``me`` config item).
  ``loglevel LEVEL``     per-plugin log level.

Per-recipient setting (recipient note, see README "Per-recipient policy"):
  ``milter_action``      ``reject`` or ``tag``, as the ``action`` argument; strictest is
                         ``reject``. With config ``recipient_policy split`` (default) the
                         milter is asked once; its rejection of the message (at DATA or
                         later) refuses it for the ``reject`` recipients only (their copy
                         quarantined, with ``552`` and the milter's text, see README
                         "Per-recipient policy") and the ``tag`` recipients' copy gets the
                         ``X-Milter-Rejected`` field. RCPT-time answers are per recipient
                         anyway; a temporary failure, discard and quarantine apply to the
                         whole message.

Macros sent (those the milter lists, when it lists them):
  CONNECT  ``j`` (``me``), ``_`` (``host [ip]``), ``{daemon_name}``, ``{daemon_addr}``,
           ``{daemon_port}``, ``v`` (``qpsmtpd-tx <version>``), ``{client_addr}``,
           ``{client_port}``, ``{client_name}``, ``{client_ptr}``
  HELO     ``{tls_version}``, ``{cipher}`` (after STARTTLS)
  MAIL     ``i`` (the transaction id), ``{auth_type}``, ``{auth_authen}`` (after AUTH),
           ``{mail_addr}``, ``{mail_host}``
  RCPT     ``i``, ``{rcpt_addr}``, ``{rcpt_host}``
  DATA, end of header, end of message: ``i``

The milter's answers:
  continue, accept, skip (stop sending body chunks), progress: the message goes on (accept
  is not an acceptance by this server: other plugins still decide);
  reject, tempfail: the stage is refused (at RCPT, only that recipient), with the milter's
  own reply (``y``, checked: 4xx or 5xx, its lines agree, printable, at most 32 lines of at
  most 980 characters as libmilter sends) or else
  ``5.7.1 Command rejected`` / ``4.7.1 Service unavailable - try again later``. The
  milter's own code is sent as it is at HELO, MAIL, RCPT and the end of the message; at
  connect and DATA the code is the stage's (below) with the milter's text. A 421 closes
  the connection after the stage's temporary reply (421 at MAIL, RCPT and DATA, 450 at
  connect and HELO, 452 at the end of the message);
  discard (at MAIL or later): the message is accepted and then dropped (transaction note
  ``milter_discard``; logged at LOGNOTICE; answered ``250 Queued`` by this plugin's
  ``queue`` hook, so this plugin must come before the queue plugin);
  at the end of the message, before its final answer: add, insert and change (or delete)
  header fields, replace the body, add and delete recipients, change the sender (its ESMTP
  parameters are logged and dropped), quarantine. They are applied only when the message is
  accepted (continue or accept). They may amount to at most 64 MiB (``databytes`` + 1 MiB
  when that is more; each change counted as at least 512 bytes): more breaks the protocol.
  A header change whose field name is not one (empty, a colon, a space, a control or 8-bit
  character) breaks the protocol; a line break in a value that would start another field or
  end the header is unfolded into a space.

Replies (the stage's code, as qpsmtpd's table; the text as above):
  connect  550 / 450 and the connection is closed;  HELO 550 / 450;  MAIL 550 / 450;
  RCPT 550 / 450;  DATA 554 / 451;  end of message 552 / 452.

Notes: transaction notes ``milter_discard`` (the NAME of the milter that discarded),
``milter_quarantine`` (its reason); connection note ``milter:<plugin name>`` holds the
conversation.

Order in ``plugins``: this plugin's hooks run only when no earlier plugin decided, so put it
before the plugins that accept (``rcpt_ok``) and before the queue plugin. If an earlier
plugin accepted MAIL, RCPT or DATA, the missing steps are sent when the milter is next used.

Differences from qpsmtpd 0.94: 0.94 speaks protocol version 2 through Net::Milter (not in
Debian), which current milters refuse (qpsmtpd issue 329). A milter that cannot be reached
made 0.94's connect hook die, and then every HELO was refused (550) with Perl's error text;
here ``default_action`` decides (tempfail by default). 0.94 ignored tempfail, discard and
quarantine, applied only added, deleted and replaced headers, and deferred a rejection at
connect to HELO; its texts were ``Rejected at <stage> by NAME milter (<why>)`` — here the
milter's own reply is used, and ``NAME`` stays in the log. 0.94 opened a new milter
connection at every SMTP connection as here, but never sent ABORT between transactions.
"""

import re

from twisted.internet import defer

from qpsmtpd_tx.codes import (DECLINED, DENY, DENYSOFT, DENYSOFT_DISCONNECT, DONE, LOGERROR,
                              LOGINFO, LOGNOTICE, LOGWARN, OK)
from qpsmtpd_tx.endpoints import host_port, unix_socket
from qpsmtpd_tx.message import Header
from qpsmtpd_tx.milter import changes, codec, macros, state
from qpsmtpd_tx.milter.client import MilterUnavailable, open_milter
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import positive
from qpsmtpd_tx.policy import Setting

REJECT_TEXT = "5.7.1 Command rejected"
TEMPFAIL_TEXT = "4.7.1 Service unavailable - try again later"
QUARANTINE_TEXT = "5.7.1 Message quarantined: %s"
DEFAULT_ACTIONS = ("tempfail", "reject", "accept")
QUARANTINE_ACTIONS = ("reject", "tempfail", "tag")
ACTIONS = ("reject", "tag")
#: stages whose hook may send the milter's own reply code (the others use the reply table)
OWN_CODE_STAGES = ("helo", "mail", "rcpt", "eob")
#: stages of the message (the ``action`` setting applies)
MESSAGE_STAGES = ("data", "header", "eoh", "body", "eob")
STAGE_NAMES = {"connect": "connect", "helo": "HELO", "mail": "MAIL FROM", "rcpt": "RCPT TO",
               "data": "DATA", "header": "header", "eoh": "end of header", "body": "body",
               "eob": "end of message"}
#: body bytes read from the spool at a time (at most twice as long once LF becomes CRLF)
READ_SIZE = codec.CHUNK_SIZE // 2

_INET = re.compile(r"inet6?:(\d+)@(.+)\Z")


def parse_milter_address(text):
    """A ServerAddress for the ADDRESS argument (see the module documentation)."""
    if text.isdigit():
        text = "127.0.0.1:" + text
    for prefix in ("unix:", "local:"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if text.startswith("/"):
        return unix_socket("milter socket", text)
    m = _INET.match(text)
    if m:
        host = m.group(2).strip("[]")
        text = "%s:%s" % ("[%s]" % host if ":" in host else host, m.group(1))
    elif text.startswith("inet:"):
        text = text[len("inet:"):]
    address = host_port(text)
    if address is None:
        raise PluginError("milter address must be PORT, HOST:PORT, /socket/path, unix:PATH or "
                          "inet:PORT@HOST, got %r" % text)
    return address


def milter_action(text):
    """A ``milter_action`` value: ``reject`` or ``tag``."""
    word = str(text).strip().lower()
    if word not in ACTIONS:
        raise ValueError("milter_action must be reject or tag, not %r" % (text,))
    return word


def strictest_action(values):
    """``reject`` if any recipient wants it, else ``tag``."""
    return "reject" if "reject" in values else "tag"


def _choice(arguments, name, allowed):
    value = arguments.get(name, allowed[0]).lower()
    if value not in allowed:
        raise PluginError("%s must be %s, got %r" % (name, "|".join(allowed), value))
    return value


class _Link:
    """One SMTP connection's milter: its client once open, or why it cannot be used."""

    def __init__(self):
        self.client = None
        self.failure = None
        #: the milter's answer to CONNECT, until a hook has answered it
        self.connect_verdict = None
        #: a refusal of the whole connection (reject or tempfail at CONNECT)
        self.refusal = None

    def take_connect_verdict(self):
        """The CONNECT verdict if no hook answered it yet (then it is answered), else None;
        a refusal of the connection is returned every time."""
        verdict, self.connect_verdict = self.connect_verdict, None
        if verdict is not None and verdict.action in (state.REJECT, state.TEMPFAIL):
            self.refusal = verdict
        return self.refusal or verdict


class Milter(Plugin):
    """A milter client (protocol version 6) under qpsmtpd's plugin name and arguments."""

    recipient_settings = (Setting("milter_action", "action", "reject", milter_action,
                                  strictest_action),)

    KNOWN = {"default_action", "connect_timeout", "command_timeout", "content_timeout",
             "action", "quarantine", "daemon_name"}

    def init(self, args):
        if len(args) < 2:
            raise PluginError("needs a name and the milter's address (milter NAME [HOST:]PORT "
                              "[key value …]), got %r" % (" ".join(args),))
        self.label = args[0]
        self.address = parse_milter_address(args[1])
        arguments = self.parse_kv_args(list(args[2:]), self.KNOWN)
        self.default_action = _choice(arguments, "default_action", DEFAULT_ACTIONS)
        self.quarantine = _choice(arguments, "quarantine", QUARANTINE_ACTIONS)
        if "action" in arguments:
            try:
                arguments["action"] = milter_action(arguments["action"])
            except ValueError as e:
                raise PluginError(str(e).replace("milter_action", "action"))
        self.connect_timeout = positive("connect_timeout", arguments.get("connect_timeout", 30))
        self.command_timeout = positive("command_timeout", arguments.get("command_timeout", 30))
        self.content_timeout = positive("content_timeout", arguments.get("content_timeout", 300))
        self.daemon_name = arguments.get("daemon_name")
        self.note = "milter:" + self.name

    # -- the connection's milter ------------------------------------------------------------

    def _conversation(self):
        """A new milter conversation; its bound on one message's changes leaves room for a
        replaced body of up to ``databytes``."""
        databytes = self.server.databytes or 0
        return state.Conversation(max_changes=max(state.MAX_CHANGES, databytes + (1 << 20)))

    async def _link(self, transaction):
        """The connection's link, opened (with CONNECT) at its first use."""
        notes = transaction.connection.notes
        link = notes.get(self.note)
        if link is not None:
            return link
        link = notes[self.note] = _Link()
        try:
            link.client = await open_milter(self.address, self.connect_timeout,
                                            self.command_timeout, self._conversation())
            verdict = await self._send(
                link, "connect", macros.connect_packet(transaction.connection),
                macros.connect_macros(transaction.connection, self.server.me, self.daemon_name))
        except MilterUnavailable as e:
            self._fail(transaction, link, "connect", e)
            return link
        if notes.get("disconnected"):
            self._fail(transaction, link, "connect", "the client has gone")
        elif verdict.action == state.FAIL:
            self._fail(transaction, link, "connect", "the milter shut down")
        link.connect_verdict = verdict
        return link

    def _fail(self, transaction, link, stage, error):
        link.failure = str(error)
        if transaction.connection.notes.get("disconnected"):
            self.log(LOGINFO, "milter %s: the client disconnected at %s" % (
                self.label, STAGE_NAMES[stage]), transaction)
        else:
            self.log(LOGERROR, "milter %s unavailable at %s: %s; default_action %s" % (
                self.label, STAGE_NAMES[stage], error, self.default_action), transaction)
        if link.client is not None:
            link.client.close()

    def _failed_answer(self, stage):
        if self.default_action == "accept":
            return DECLINED
        if self.default_action == "reject":
            return DENY, REJECT_TEXT
        return DENYSOFT, TEMPFAIL_TEXT

    async def _send(self, link, stage, payload, pairs=()):
        conversation = link.client.conversation
        step = conversation.step(stage, payload, pairs)
        timeout = self.content_timeout if stage in MESSAGE_STAGES[1:] else self.command_timeout
        return await link.client.run(step, timeout)

    async def _stage(self, transaction, stage, payload, pairs=()):
        """Send one stage (after any steps an earlier plugin's decision left out); return
        its Verdict, or None when the milter cannot be used (``link.failure`` says why)."""
        link = await self._link(transaction)
        if link.failure is not None:
            return None
        verdict = link.take_connect_verdict()
        if verdict is not None and verdict.action in (state.REJECT, state.TEMPFAIL):
            return verdict
        try:
            verdict = await self._catch_up(transaction, link, stage)
            if verdict is None:
                verdict = await self._send(link, stage, payload, pairs)
        except MilterUnavailable as e:
            self._fail(transaction, link, stage, e)
            return None
        if verdict.action == state.FAIL:
            self._fail(transaction, link, stage, "the milter shut down")
            return None
        return verdict

    async def _catch_up(self, transaction, link, stage):
        """Send MAIL, RCPT and DATA if the milter has not had them (an earlier plugin decided
        those hooks); a verdict other than continue is returned, else None."""
        conversation = link.client.conversation
        # how many of MAIL, RCPT, DATA must have been sent before ``stage``
        wanted = {"rcpt": 1, "data": 2}.get(stage, 3 if stage in MESSAGE_STAGES else 0)
        missing = []
        current = conversation.state
        if wanted > 0 and current is state.State.CONNECTED:
            missing.append(("mail", macros.mail_packet(transaction.sender, {}),
                            macros.mail_macros(transaction)))
            current = state.State.MAIL
        if wanted > 1 and current is state.State.MAIL:
            for rcpt in transaction.recipients:
                missing.append(("rcpt", macros.rcpt_packet(rcpt, {}),
                                macros.rcpt_macros(transaction, rcpt)))
            current = state.State.RCPT
        if wanted > 2 and current is state.State.RCPT:
            missing.append(("data", codec.packet(codec.DATA), macros.id_macros(transaction)))
        for step_stage, payload, pairs in missing:
            verdict = await self._send(link, step_stage, payload, pairs)
            if verdict.action not in (state.CONTINUE, state.ACCEPT):
                return verdict
        return None

    # -- hooks --------------------------------------------------------------------------------

    async def hook_connect(self, transaction):
        link = await self._link(transaction)
        if link.failure is not None:
            return self._failed_answer("connect")
        return self._answer(transaction, link.take_connect_verdict())

    async def hook_helo(self, transaction, host, *extra):
        link = await self._link(transaction)
        if link.client is not None and link.failure is None:
            # a new HELO/EHLO ends the transaction: the milter must hear that first
            link.client.send(link.client.conversation.abort())
        verdict = await self._stage(transaction, "helo", codec.helo_packet(host),
                                    macros.helo_macros(transaction.connection))
        return self._answer(transaction, verdict, "helo")

    hook_ehlo = hook_helo

    async def hook_mail(self, transaction, sender, params):
        verdict = await self._stage(transaction, "mail", macros.mail_packet(sender, params),
                                    macros.mail_macros(transaction, sender))
        return self._answer(transaction, verdict, "mail")

    async def hook_rcpt(self, transaction, recipient, params):
        payload = macros.rcpt_packet(recipient, params)
        verdict = await self._stage(transaction, "rcpt", payload,
                                    macros.rcpt_macros(transaction, recipient))
        return self._answer(transaction, verdict, "rcpt")

    async def hook_data(self, transaction):
        if transaction.sender is None or not transaction.recipients:
            return DECLINED     # the core refuses DATA; the milter hears nothing
        verdict = await self._stage(transaction, "data", codec.packet(codec.DATA),
                                    macros.id_macros(transaction))
        return self._answer(transaction, verdict, "data")

    def hook_data_post(self, transaction):
        # Take the message now, before any wait (see Transaction.body.open).
        body = transaction.body.open()
        return defer.Deferred.fromCoroutine(self._data_post(transaction, body))

    async def _data_post(self, transaction, body):
        try:
            verdict = await self._message(transaction, body)
        finally:
            body.close()
        return self._answer(transaction, verdict, "eob")

    async def _message(self, transaction, body):
        """Send the header fields, the end of the header, the body and the end of the
        message; the first verdict that is not continue (or the end's)."""
        for name, raw in (transaction.header.fields if transaction.header is not None else ()):
            if not name:
                continue        # a line that is no field (an mbox From line)
            # the value without the space after the colon (we did not offer HDR_LEADSPC)
            value = raw.decode("utf-8", "surrogateescape").split(":", 1)[1]
            value = value.lstrip(" \t").rstrip("\n")
            verdict = await self._stage(transaction, "header", codec.header_packet(name, value))
            if verdict is None or verdict.action != state.CONTINUE:
                return verdict
        verdict = await self._stage(transaction, "eoh", codec.packet(codec.EOH),
                                    macros.id_macros(transaction))
        if verdict is None or verdict.action != state.CONTINUE:
            return verdict
        while self._wants_body(transaction):
            chunk = body.read(READ_SIZE)
            if not chunk:
                break
            chunk = chunk.replace(b"\n", b"\r\n")
            verdict = await self._stage(transaction, "body", codec.packet(codec.BODY, chunk))
            if verdict is None or verdict.action not in (state.CONTINUE, state.SKIP):
                return verdict
            if verdict.action == state.SKIP:
                break
        return await self._stage(transaction, "eob", codec.packet(codec.EOB),
                                 macros.id_macros(transaction))

    def _wants_body(self, transaction):
        """False when body chunks would send nothing (no need to read the body)."""
        conversation = transaction.connection.notes[self.note].client.conversation
        return not (conversation.transaction_finished or conversation.connection_finished
                    or conversation.negotiated.protocol & codec.P_NOBODY)

    def hook_queue(self, transaction):
        if transaction.notes.get("milter_discard"):
            self.log(LOGNOTICE, "message discarded by milter %s: not queued"
                     % transaction.notes["milter_discard"], transaction)
            return OK
        return DECLINED

    def hook_reset_transaction(self, transaction):
        link = transaction.connection.notes.get(self.note)
        if link is None or link.client is None or link.failure is not None:
            return DECLINED
        conversation = link.client.conversation
        if conversation.awaiting is None:
            link.client.send(conversation.abort())
        return DECLINED

    def hook_disconnect(self, transaction):
        link = transaction.connection.notes.pop(self.note, None)
        if link is not None and link.client is not None:
            link.client.close()
        return DECLINED

    # -- verdicts -----------------------------------------------------------------------------

    def _answer(self, transaction, verdict, stage="connect"):
        """The hook's result for ``verdict`` (None: the milter cannot be used)."""
        if verdict is None:
            return self._failed_answer(stage)
        action = verdict.action
        if action in (state.CONTINUE, state.ACCEPT, state.SKIP):
            if action == state.ACCEPT:
                self.log(LOGINFO, "milter %s accepts at %s" % (self.label, STAGE_NAMES[stage]),
                         transaction)
            if stage == "eob":
                return self._modify(transaction, verdict.modifications)
            return DECLINED
        if action == state.DISCARD:
            transaction.notes["milter_discard"] = self.label
            self.log(LOGNOTICE, "milter %s discards the message at %s"
                     % (self.label, STAGE_NAMES[verdict.stage]), transaction)
            return DECLINED
        soft = action == state.TEMPFAIL
        lines = [line for line in verdict.lines if line] or [TEMPFAIL_TEXT if soft else REJECT_TEXT]
        self.log(LOGINFO, "milter %s: %s at %s: %s%s" % (
            self.label, action, STAGE_NAMES[verdict.stage],
            "%d " % verdict.code if verdict.code else "", " ".join(lines)), transaction)
        if not soft and stage in MESSAGE_STAGES:
            tagged, refused = self._split_by_action(transaction)
            if tagged:
                self._tag(transaction, tagged, refused, verdict, lines)
                return self._tag_later(transaction) if stage == "eob" else DECLINED
        if verdict.code == 421:
            # closing goes through the reply table (421 at MAIL, RCPT and DATA)
            return DENYSOFT_DISCONNECT, "\n".join(lines)
        if verdict.code and stage in OWN_CODE_STAGES:
            transaction.session.respond(verdict.code, lines)
            return DONE
        return (DENYSOFT if soft else DENY), "\n".join(lines)

    def _split_by_action(self, transaction):
        """``(tagged, refused)``: the accepted recipients whose ``milter_action`` is ``tag``,
        and the others (one group of everyone unless ``recipient_policy split``)."""
        tagged, refused = [], []
        for values, recipients in self.recipient_groups(transaction):
            (tagged if values["milter_action"] == "tag" else refused).extend(recipients)
        return tagged, refused

    def _tag(self, transaction, tagged, refused, verdict, lines):
        """The message is accepted tagged for ``tagged`` and refused for ``refused`` (the
        refusal recorded for them only, see README "Per-recipient policy")."""
        text = "%s; %s%s" % (self.label, "%d " % verdict.code if verdict.code else "",
                             " ".join(lines))
        self.log(LOGINFO, "milter_action tag: accepting the message for %s" % (
            ", ".join(r.format() for r in tagged) or "its recipients"), transaction)
        if not refused:
            # the header may not be there yet (at DATA): added at the end of the message
            transaction.notes.setdefault("milter_tags", []).append(text)
            return
        # into the tagged recipients' copy, before the others are refused (not into theirs)
        self.edit_header(transaction, tagged, Header.add, "X-Milter-Rejected", text, True)
        self.per_recipient_result(transaction, [(tagged, DECLINED),
                                                (refused, (DENY, "\n".join(lines)))])

    def _tag_later(self, transaction):
        """At the end of the message: the X-Milter-Rejected fields of earlier rejections."""
        for text in transaction.notes.pop("milter_tags", ()):
            transaction.header.add("X-Milter-Rejected", text, prepend=True)
        return DECLINED

    # -- changes at the end of the message --------------------------------------------------

    def _modify(self, transaction, modifications):
        reasons = [mod.reason for mod in modifications if mod.command == codec.R_QUARANTINE]
        if reasons:
            refusal = self._quarantined(transaction, "; ".join(reasons))
            if refusal is not None:
                return refusal      # nothing else is applied to a refused message
        changes.apply(transaction, modifications,
                      lambda level, text: self.log(level, "milter %s %s" % (self.label, text),
                                                   transaction))
        if not transaction.recipients:
            self.log(LOGWARN, "milter %s removed every recipient" % self.label, transaction)
            return DENY, REJECT_TEXT
        return self._tag_later(transaction)

    def _quarantined(self, transaction, reason):
        transaction.notes["milter_quarantine"] = reason
        self.log(LOGNOTICE, "milter %s quarantines the message (%s); quarantine %s"
                 % (self.label, reason, self.quarantine), transaction)
        if self.quarantine == "reject":
            return DENY, QUARANTINE_TEXT % reason
        if self.quarantine == "tempfail":
            return DENYSOFT, TEMPFAIL_TEXT
        transaction.header.add("X-Milter-Quarantine", "%s; %s" % (self.label, reason),
                               prepend=True)
        return None
