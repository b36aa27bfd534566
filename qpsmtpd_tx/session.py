"""One SMTP session: runs the plugin hooks for each command and answers as qpsmtpd does.

The session sits between the sans-I/O :class:`~qpsmtpd_tx.core.SMTPCore` (framing and state)
and a transport (anything with ``write``, ``loseConnection``, ``abortConnection``,
``pauseProducing`` and ``resumeProducing``; ``registerProducer`` if it has one). It handles one command at a time: later pipelined commands wait in the
core's buffer until the current one is answered, including when a hook is asynchronous. All
replies produced in one pass are written together (one ``write``), so a pipelined
MAIL/RCPT/DATA group costs one segment, not one per reply.

Flow control: the session stops reading from the client while more than ``PAUSE_ABOVE``
bytes of its input wait, and while the client does not read our replies (the session is the
transport's streaming producer: the transport pauses it when its write buffer is full). Then
no further buffered command is handled until the transport has drained, so a client that
pipelines cheap commands and never reads cannot make us queue replies without bound.

Reply texts and codes follow qpsmtpd 0.94 (see ``shared/reference/core.md``), except where
qpsmtpd sent nothing or a broken reply: then a default text is sent.
"""

import time

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from qpsmtpd_tx import SOFTWARE_NAME, __version__, codes, policy
from qpsmtpd_tx.command import (
    CommandSyntaxError,
    parse_helo,
    parse_mail_from,
    parse_rcpt_to,
    recipient_address,
    sender_address,
    split_command,
)
from qpsmtpd_tx.core import NEED_DATA, Command, LineTooLong, SMTPCore, State
from qpsmtpd_tx.data import BadDataEnd, Body, DataEnd, Headers
from qpsmtpd_tx.interfaces import ISession
from qpsmtpd_tx.message import BodySpool, Header
from qpsmtpd_tx.objects import Transaction
from qpsmtpd_tx.printable import is_printable, printable
from qpsmtpd_tx.rdns import lookup_ptr
from qpsmtpd_tx.received import authentication_results_header, received_header

#: stop reading from the client when this many bytes wait unprocessed
PAUSE_ABOVE = 256 * 1024
RESUME_BELOW = 64 * 1024
#: write queued replies out mid-pass once this many bytes wait, so that a flood of pipelined
#: commands meets the transport's back-pressure early (a normal group is one write)
FLUSH_ABOVE = 64 * 1024

BARELF_TEXT = "See http://smtpd.develooper.com/barelf.html"
#: RFC 5321 4.5.3.1.8: too many recipients is a 452, so the client sends the rest later
TOO_MANY_RECIPIENTS = "4.5.3 Too many recipients"

#: the deadline kind for an incomplete command line (the DATA deadline is keyed by transaction)
_COMMAND_LINE = "command line"

#: hooks run once the message is read: a timeout there refuses the message (451), no more
_MESSAGE_HOOKS = frozenset(("received_line", "data_post", "queue_pre", "queue"))
#: hooks after which a timeout closes the connection: before the greeting, or amid the DATA
_DISCONNECT_ON_TIMEOUT = frozenset(("pre-connection", "connect", "data_headers_end"))

OK, DENY, DENYSOFT = codes.OK, codes.DENY, codes.DENYSOFT
DENY_DISCONNECT, DENYSOFT_DISCONNECT = codes.DENY_DISCONNECT, codes.DENYSOFT_DISCONNECT
DONE, DECLINED = codes.DONE, codes.DECLINED


@implementer(IPushProducer)
class _ReplyProducer:
    """The session as the transport's producer: paused while the client does not read."""

    def __init__(self, session):
        self.session = session

    def pauseProducing(self):
        """The transport's write buffer is full."""
        self.session.output_blocked = True
        self.session._update_reading()

    def resumeProducing(self):
        """The transport's write buffer has drained."""
        self.session.output_drained()

    def stopProducing(self):
        """The connection is gone; ``connection_lost`` does the cleaning up."""


@implementer(ISession)
class SMTPSession:
    """The SMTP dialogue with one client.

    ``server`` is the :class:`~qpsmtpd_tx.server.SMTPServer` (config, hooks, log);
    ``connection`` the :class:`~qpsmtpd_tx.objects.Connection` already filled with the peers.
    """

    def __init__(self, server, transport, connection):
        self.server = server
        #: the plugin chain this session uses to its end, even if SIGHUP loads another
        self.chain = server.attach_session(self)
        self.hooks = self.chain.hooks
        self.transport = transport
        self.connection = connection
        self.core = SMTPCore()
        self.transaction = None
        self._transaction_count = 0
        self._new_transaction()
        self._busy = False
        self._paused = False
        #: True while the transport holds more unsent output than it wants (client not reading)
        self.output_blocked = False
        self._producer_registered = False
        self._closing = False
        self._lost = False
        self._auth = None
        self._input_waiters = []
        self._finish_when_idle = False
        #: what the running deadline limits (_COMMAND_LINE, or the transaction in DATA), its timer
        self._deadline_for = None
        self._deadline_call = None
        self._deadline_overdue = False
        #: schedules the deadlines (the protocol sets its own callLater)
        self.call_later = None
        self._shutting_down = False
        self.commands = {
            "helo": self.cmd_helo,
            "ehlo": self.cmd_ehlo,
            "mail": self.cmd_mail,
            "rcpt": self.cmd_rcpt,
            "data": self.cmd_data,
            "rset": self.cmd_rset,
            "noop": self.cmd_noop,
            "vrfy": self.cmd_vrfy,
            "help": self.cmd_help,
            "quit": self.cmd_quit,
        }

    # -- plumbing ---------------------------------------------------------------------------

    def log(self, level, message, plugin=None, hook=None):
        """Log a line tagged with this connection's id."""
        self.server.log(level, message, plugin=plugin, transaction=self.transaction, hook=hook)

    def respond(self, code, lines):
        """Queue a reply; ``lines`` is a string (may hold newlines) or a list of strings."""
        if isinstance(lines, str):
            lines = [lines]
        # A plugin's text may hold CRLF or LF line breaks: each becomes a reply line. Other
        # control characters (client bytes a plugin repeats) go out escaped.
        lines = [printable(part) for line in lines
                 for part in line.replace("\r", "").split("\n") if part]
        self.core.reply(code, lines)
        if self.server.log_enabled(codes.LOGINFO):
            last = len(lines) - 1
            for i, line in enumerate(lines):
                self.log(codes.LOGINFO, "%d%s%s" % (code, "-" if i < last else " ", line))

    def disconnect(self):
        """Close the connection once the queued replies are written; runs the disconnect hooks."""
        if self._closing:
            return
        self._closing = True
        self.log(codes.LOGINFO, "click, disconnecting")
        self.connection.notes["disconnected"] = True
        self.core.close()
        self.hooks.run_no_respond("disconnect", self.transaction)
        self._reset_transaction()

    def _new_transaction(self):
        self._transaction_count += 1
        self.transaction = Transaction(
            connection=self.connection,
            id="%s.%d" % (self.connection.id, self._transaction_count),
            body=BodySpool(self.server.spool_dir, self.server.size_threshold),
        )
        self.transaction.session = self

    def _reset_transaction(self):
        """Replace the transaction (MAIL, RSET, end of DATA, HELO, disconnect)."""
        old = self.transaction
        if self.hooks.has("reset_transaction"):
            self.hooks.run_no_respond("reset_transaction", old)
        old.discard()
        self._new_transaction()

    def start(self):
        """The client connected: run pre-connection and connect hooks, then greet."""
        self._busy = True
        if hasattr(self.transport, "registerProducer"):
            self.transport.registerProducer(_ReplyProducer(self), True)
            self._producer_registered = True
        refusal = self.server.too_many_from_ip(self)
        if refusal is not None:
            self.respond(451, refusal)     # hosts_allow's answer, when it is not loaded
            self.disconnect()
            self._busy = False
            return self._flush()
        conn = self.connection
        pending = self._run("pre-connection", (
            conn.remote_ip, conn.remote_port, conn.local_ip, conn.local_port,
            self.server.max_conn_ip, self.server.peer_ips(exclude=self)), self._pre_connection_respond)
        if not (isinstance(pending, Deferred) and self._after(pending)):
            self._busy = False
            self._pump()

    def _pre_connection_respond(self, result):
        if result.code in (DENY, DENY_DISCONNECT):
            self.respond(550, result.lines or ["Sorry, service not available for you"])
            return self.disconnect()
        if result.code in (DENYSOFT, DENYSOFT_DISCONNECT):
            self.respond(451, result.lines or ["Sorry, try again later"])
            return self.disconnect()
        if self.server.reverse_dns:
            d = lookup_ptr(self.connection.remote_ip)
            d.addCallback(self._got_remote_host)
            return d
        return self._connect()

    def _got_remote_host(self, name):
        self.connection.remote_host = self.connection.remote_info = name or "Unknown"
        return self._connect()

    def _connect(self):
        self._log_accepted()
        return self._then("connect", self._connect_respond)

    def _log_accepted(self):
        """qpsmtpd-forkserver's two lines for a client that passed pre-connection."""
        conn, server = self.connection, self.server
        if server.log_enabled(codes.LOGINFO):
            self.log(codes.LOGINFO, "Accepted connection %d/%s from %s / %s" % (
                len(server.peer_ips(exclude=self)), server.max_connections or "unlimited",
                conn.remote_ip, conn.remote_host or "Unknown"))
        self.log(codes.LOGNOTICE, "Connection from %s [%s]" % (self._remote_info(), conn.remote_ip))

    def _connect_respond(self, result):
        code = result.code
        if code in (DENY, DENY_DISCONNECT):
            self.respond(550, result.lines or ["Connection from you denied, bye bye."])
            return self.disconnect()
        if code in (DENYSOFT, DENYSOFT_DISCONNECT):
            self.respond(450, result.lines or ["Connection from you temporarily denied, bye bye."])
            return self.disconnect()
        if self._closing:
            return
        if code != DONE:
            self.respond(220, [self._greeting()])
        self.core.greet()

    def _greeting(self):
        greeting = self.server.config_value("smtpgreeting")
        if greeting:
            return greeting if "ESMTP" in greeting else greeting + " ESMTP"
        return "%s ESMTP qpsmtpd-tx %s ready; send us your mail, but not your spam." % (
            self.server.me, __version__)

    def wait_for_input(self, seconds, clock=None):
        """A Deferred firing True as soon as the client has sent anything, False after ``seconds``.

        For plugins such as earlytalker, which wait before the greeting to catch clients that
        talk first. Bytes already buffered fire it at once.
        """
        from twisted.internet import reactor
        d = Deferred()
        if self.core.buffered:
            d.callback(True)
            return d
        call = (clock or reactor).callLater(seconds, self._input_waited, d, False)
        self._input_waiters.append((d, call))
        return d

    def _input_waited(self, d, value):
        self._input_waiters = [(w, c) for w, c in self._input_waiters if w is not d]
        if not d.called:
            d.callback(value)

    def data_received(self, data):
        """Bytes from the client."""
        self.core.receive_data(data)
        if self._deadline_for is _COMMAND_LINE and b"\n" in data:
            self._set_deadline(None)      # a line is complete: the next one has its own time
        if self._input_waiters:
            waiters, self._input_waiters = self._input_waiters, []
            for d, call in waiters:
                if call.active():
                    call.cancel()
                d.callback(True)
        if not self._busy:
            self._pump()
        self._update_reading()
        self._update_deadline()

    def _update_deadline(self):
        """Run the deadline that applies now: an incomplete command line's, or the DATA phase's.

        Each starts when it begins to apply (the first byte of a line, the 354) and is not
        reset by further bytes, unlike the idle timeout.
        """
        if self._closing or self._lost:
            wanted = None
        elif self.core.state is State.DATA:
            wanted = self.transaction
        elif self.core.partial_line:
            wanted = _COMMAND_LINE
        else:
            wanted = None
        if wanted is not self._deadline_for:
            self._set_deadline(wanted)
        elif self._deadline_overdue and not self._busy:
            self._deadline_passed()       # it ran out while a hook of ours was running

    def _set_deadline(self, what):
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.cancel()
        self._deadline_for, self._deadline_call, self._deadline_overdue = what, None, False
        seconds = self._deadline_seconds()
        if what is None or not seconds:
            return
        if self.call_later is None:
            from twisted.internet import reactor
            self.call_later = reactor.callLater
        self._deadline_call = self.call_later(seconds, self._deadline_expired)

    def _deadline_seconds(self):
        if self._deadline_for is _COMMAND_LINE:
            return self.server.command_deadline
        return self.server.data_deadline

    def _deadline_expired(self):
        self._deadline_call = None
        self._deadline_overdue = True
        if not self._busy:        # else _update_deadline acts once our hook has answered
            self._deadline_passed()

    def _deadline_passed(self):
        """Close with 421: a command line or the message took longer than allowed."""
        if self._closing or self._lost:
            return self._set_deadline(None)     # closed meanwhile (idle timeout, QUIT...)
        what = "command line" if self._deadline_for is _COMMAND_LINE else "message"
        seconds = self._deadline_seconds()
        self._set_deadline(None)
        self.log(codes.LOGNOTICE, "%s not complete within %d s, closing" % (what, seconds))
        self.respond(421, "Timeout: %s not complete within %d seconds" % (what, seconds))
        self.disconnect()
        self._flush()
        if self.output_blocked:
            self.transport.abortConnection()

    def _update_reading(self):
        """Pause reading while input waits or output is backed up; resume when both are clear."""
        if self._lost:
            return
        if not self._paused and (self.output_blocked or self.core.buffered > PAUSE_ABOVE):
            self._paused = True
            self.transport.pauseProducing()
        elif self._paused and not self.output_blocked and self.core.buffered < RESUME_BELOW:
            self._paused = False
            self.transport.resumeProducing()

    def output_drained(self):
        """The transport has sent what we wrote: handle the commands still waiting."""
        self.output_blocked = False
        if not self._busy:
            self._pump()
        self._update_reading()

    def connection_lost(self):
        """The connection is gone (client closed, error, or our own close)."""
        if self._lost:
            return
        self._lost = True
        waiters, self._input_waiters = self._input_waiters, []
        for d, call in waiters:
            if call.active():
                call.cancel()
            d.callback(False)
        self._set_deadline(None)
        if self.core.state is State.DATA:
            self.log(codes.LOGINFO, "451 Incomplete DATA (connection lost)")
        if self._busy:
            # A hook (a queue plugin delivering, say) still uses the transaction and its
            # spooled body: finish the session when it is done.
            self._finish_when_idle = True
        else:
            self._finish_lost_session()

    def _finish_lost_session(self):
        self._finish_when_idle = False
        if not self._closing:
            self._closing = True
            self.core.close()
            self.hooks.run_no_respond("disconnect", self.transaction)
            self._reset_transaction()
        self.hooks.run_no_respond("post-connection", self.transaction)
        self.transaction.discard()
        # qpsmtpd's parent logs this when it reaps the child: a line outside the connection
        self.server.log(codes.LOGINFO, "cleaning up after %s" % self.connection.id)
        self.server.detach_session(self)

    def shut_down(self):
        """The server is stopping: 421 and close once no transaction or hook is in progress.

        That is at once for an idle session, else right after the transaction in progress
        has been answered (its DATA reply), so no message is left half-acknowledged.
        """
        self._shutting_down = True
        if not self._busy:
            self._pump()

    def _pump(self):
        """Handle buffered input one event at a time until input runs out or a hook waits."""
        while not self._closing and not self._lost and not self.output_blocked:
            if self._shutting_down and self.core.state not in (State.MAIL, State.RCPT, State.DATA):
                self.respond(421, self.server.shutdown_reply())
                self.disconnect()
                break
            event = self.core.next_event()
            if event is NEED_DATA:
                break
            try:
                result = self._handle(event)
            except Exception:
                result = Failure()
            if isinstance(result, Failure):
                self._internal_error(result)
                continue
            if isinstance(result, Deferred):
                waiting = self._after(result)
                if waiting:
                    break
            if self.core.output_size > FLUSH_ABOVE:
                self._write_replies()     # may block output: the loop then stops
        self._update_reading()
        self._flush()
        self._update_deadline()

    def _after(self, d):
        """Continue when ``d`` fires; True if it has not fired yet (the session waits)."""
        state = {"sync": True, "fired": False}
        self._busy = True

        def fired(result):
            state["fired"] = True
            if isinstance(result, Failure):
                self._internal_error(result)
            if not state["sync"]:
                self._busy = False
                if self._finish_when_idle:
                    self._finish_lost_session()
                else:
                    self._pump()

        d.addBoth(fired)
        state["sync"] = False
        if state["fired"]:
            self._busy = False
            return False
        return True

    def _write_replies(self):
        out = self.core.data_to_send()
        if out and not self._lost:
            self.transport.write(out)

    def _flush(self):
        self._write_replies()
        if self._closing and not self._lost:
            if self._producer_registered:
                # A registered producer would hold the close back until it is unregistered.
                self._producer_registered = False
                self.transport.unregisterProducer()
            self.transport.loseConnection()

    def _internal_error(self, failure):
        # The client gets qpsmtpd's text, never the exception (it may hold paths or data).
        self.log(codes.LOGCRIT, "internal error: %s" % (failure.getTraceback(),))
        if not self._closing:
            self.respond(451, "Internal error - try again later - command failed unexpectedly")
            if self.core.state is State.DATA:
                self.disconnect()

    def timeout(self):
        """The idle timer ran out: close with 421, unless we are the ones working.

        Returns False when a hook (a delivery, a scan) is still running: the client is waiting
        for our answer, not idle, and a 421 now could make it send a message twice.
        """
        if self._lost:
            return True
        if self._busy:
            return False
        if self._closing or self.output_blocked:
            # The client does not read what we sent: no reply can reach it, so do not wait.
            self.transport.abortConnection()
            return True
        self.respond(421, "Connection Timed Out")
        self.disconnect()
        self._flush()
        return True

    # -- events -----------------------------------------------------------------------------

    def _handle(self, event):
        kind = type(event)
        if kind is Body:
            body = self.transaction.body
            in_memory = getattr(body, "filename", None) is None
            body.write(event.data)
            if in_memory and getattr(body, "filename", None) is not None:
                self.log(codes.LOGINFO, "spooling message to disk")
            return None
        if kind is Command:
            return self._dispatch(event.line)
        if kind is Headers:
            return self._data_headers(event)
        if kind is DataEnd:
            return self._data_end(event)
        if kind is BadDataEnd:
            self.log(codes.LOGNOTICE, "bad end of data: %s" % (event.context,))
            self.respond(421, BARELF_TEXT)
            return self.disconnect()
        if kind is LineTooLong:
            if self._auth is not None:
                return self._auth.line_too_long()
            self.respond(500, "5.5.2 Line too long")
            return None
        raise AssertionError("unexpected event %r" % (event,))

    def _dispatch(self, line):
        if self._auth is not None:
            return self._auth.answer(line)
        if self.server.log_enabled(codes.LOGINFO):
            self.log(codes.LOGINFO, "dispatching %s" % (printable(_mask_auth(line)),))
        self.connection.notes["original_string"] = line
        verb, rest, valid = split_command(line)
        rest = rest or ""
        handler = self.commands.get(verb) if valid else None
        if handler is None:
            if valid and verb == "auth" and self.chain.auth is not None and self._auth_enabled:
                return self.chain.auth.start(self, rest)
            return self._unrecognized(verb, rest)
        return handler(rest)

    def _run(self, hook, args, callback, *extra):
        """Run ``hook`` with ``args``; pass its HookResult (and ``extra``) to ``callback``.

        Synchronous when every plugin answers at once; a Deferred otherwise.
        """
        result = self.hooks.call(hook, self.transaction, *args)
        if isinstance(result, Deferred):
            return result.addCallback(self._hook_answered, hook, callback, extra)
        return callback(result, *extra)

    def _hook_answered(self, result, hook, callback, extra):
        """A waiting hook's result: to ``callback``, or a 451 if the plugin timed out."""
        if not result.timed_out or hook == "quit":
            return callback(result, *extra)
        self.respond(451, result.lines)
        if hook in _MESSAGE_HOOKS:
            self._log_outcome(451, result.lines)
            return self._finish_message()
        if hook in _DISCONNECT_ON_TIMEOUT:
            return self.disconnect()
        return None

    def _then(self, hook, callback, *args):
        """Run ``hook`` with ``args`` and pass its result to ``callback``."""
        return self._run(hook, args, callback)

    def _deny(self, code, result, default):
        """Send ``code`` with the plugin's text or ``default``."""
        self.respond(code, result.lines or [default])

    # -- HELO / EHLO --------------------------------------------------------------------------

    def cmd_helo(self, rest):
        return self._hello("helo", rest)

    def cmd_ehlo(self, rest):
        return self._hello("ehlo", rest)

    def _hello(self, verb, rest):
        return self._run(verb + "_parse", (rest,), self._hello_parsed, verb, rest)

    def _hello_parsed(self, parsed, verb, rest):
        if parsed.code == OK and parsed.value is not None:
            host, extra = parsed.value
        elif parsed.code == DENY:
            return self.respond(501, parsed.lines or ["Syntax error in command"])
        else:
            host, extra = parse_helo(rest)
        if not host:
            return self.respond(501, "%s requires domain/address - see RFC-2821 4.1.1.1" % verb)
        if not all(is_printable(word) for word in [host] + list(extra)):
            # No domain or address literal holds one; in Received it would start a new field.
            return self.respond(501, "5.5.4 Invalid characters in %s argument" % verb)
        if self.connection.hello:
            return self.respond(503, "but you already said HELO ...")
        return self._run(verb, (host,) + tuple(extra), self._hello_respond, verb, host)

    def _hello_respond(self, result, verb, host):
        code = result.code
        if code in (DENY, DENY_DISCONNECT):
            self._deny(550, result, "%s denied" % verb.upper())
            return self.disconnect() if code == DENY_DISCONNECT else None
        if code in (DENYSOFT, DENYSOFT_DISCONNECT):
            self._deny(450, result, "%s temporarily denied" % verb.upper())
            return self.disconnect() if code == DENYSOFT_DISCONNECT else None
        if code == DONE:
            return None
        conn = self.connection
        conn.hello = verb
        conn.hello_host = host
        self._reset_transaction()
        self.core.helo()
        first = "%s Hi %s [%s]" % (self.server.me, self._remote_info(), conn.remote_ip)
        if verb == "helo":
            return self.respond(250, first + "; I am so happy to meet you.")
        lines = [first, "PIPELINING", "8BITMIME"]
        if self.server.databytes:
            lines.append("SIZE %d" % self.server.databytes)
        lines.extend(self.transaction.notes.get("capabilities") or [])
        mechanisms = self._auth_mechanisms()
        if mechanisms:
            lines.append("AUTH " + " ".join(mechanisms))
        self.respond(250, lines)

    def _remote_info(self):
        conn = self.connection
        return conn.remote_info or conn.remote_host or "Unknown"

    _auth_enabled = False

    def _auth_mechanisms(self):
        auth = self.chain.auth
        if auth is None:
            return []
        mechanisms = auth.mechanisms()
        if not mechanisms:
            return []
        if (self.server.tls_before_auth and not self.connection.tls
                and "STARTTLS" in (self.transaction.notes.get("capabilities") or [])):
            return []
        self._auth_enabled = True
        return mechanisms

    # -- MAIL ---------------------------------------------------------------------------------

    def cmd_mail(self, rest):
        if self.core.state in (State.MAIL, State.RCPT):
            self.core.reset()
        if self.core.state is not State.READY:
            self._reset_transaction()
            return self.respond(503, "please say hello first ...")
        self._reset_transaction()
        self.connection.notes["envelope_from"] = rest
        return self._parse_address("mail", rest, self._mail_parsed)

    def _parse_address(self, kind, rest, then):
        """Run ``<kind>_parse`` (or the built-in parser) and ``<kind>_pre``; call ``then``."""
        def parsed(result):
            if result.code == DENY:
                return self.respond(501, result.lines or ["Syntax error in command"])
            if result.code == OK and result.value is not None:
                path, params = result.value
            else:
                try:
                    path, params = (parse_mail_from if kind == "mail" else parse_rcpt_to)(rest)
                except CommandSyntaxError as e:
                    return self.respond(501, str(e))
            return self._run(kind + "_pre", (path, params),
                             lambda r: then(r.lines[0] if r.code == OK and r.lines else path, params))

        return self._run(kind + "_parse", (rest,), parsed)

    def _mail_parsed(self, path, params):
        try:
            sender = sender_address(path)
        except CommandSyntaxError as e:
            return self.respond(501, str(e))
        size = params.get("size")
        if self.server.databytes and size and size.isdigit() and int(size) > self.server.databytes:
            return self.respond(552, "Message too big!")
        return self._run("mail", (sender, params), self._mail_respond, sender)

    def _mail_respond(self, result, sender):
        code = result.code
        if code in codes.DENY_CODES:
            self._log_mail_denied(result, sender)
        if code in (DENY, DENY_DISCONNECT):
            self._deny(550, result, "%s, denied" % sender.format())
            return self.disconnect() if code == DENY_DISCONNECT else None
        if code == DENYSOFT:
            return self._deny(450, result, "%s, temporarily denied" % sender.format())
        if code == DENYSOFT_DISCONNECT:
            self._deny(421, result, "%s, temporarily denied" % sender.format())
            return self.disconnect()
        if code == DONE:
            return None
        self.transaction.sender = sender
        self.core.mail()
        self.respond(250, "%s, sender OK - how exciting to get mail from you!" % sender.format())

    def _log_mail_denied(self, result, sender):
        """qpsmtpd's ``deny mail from <addr> (reason)`` (``denysoft`` for 4xx) at LOGINFO."""
        soft = result.code in (DENYSOFT, DENYSOFT_DISCONNECT)
        reason = " ".join(result.lines) if result.lines else "%s, %sdenied" % (
            sender.format(), "temporarily " if soft else "")
        self.log(codes.LOGINFO, "deny%s mail from %s (%s)"
                 % ("soft" if soft else "", sender.format(), reason))

    # -- RCPT ---------------------------------------------------------------------------------

    def cmd_rcpt(self, rest):
        # As qpsmtpd: a syntax error is reported before a missing MAIL.
        self.connection.notes["envelope_rcpt"] = rest
        return self._parse_address("rcpt", rest, self._rcpt_parsed)

    def _rcpt_parsed(self, path, params):
        if self.core.state not in (State.MAIL, State.RCPT):
            return self.respond(503, "Use MAIL before RCPT")
        try:
            rcpt = recipient_address(path)
        except CommandSyntaxError as e:
            return self.respond(501, str(e))
        if not self._room_for_recipients(1):
            return self.respond(452, TOO_MANY_RECIPIENTS)
        return self._run("rcpt", (rcpt, params), self._rcpt_respond, rcpt)

    def _room_for_recipients(self, count):
        """True if ``count`` more recipients stay within ``max_recipients`` (0: no limit)."""
        limit = self.server.max_recipients
        return not limit or len(self.transaction.recipients) + count <= limit

    def _rcpt_respond(self, result, rcpt):
        code = result.code
        if code == OK:
            if self._needs_other_transaction(rcpt):
                return self.respond(452, policy.DIFFERENT_POLICY_TEXT)
            if not self._add_recipient(rcpt):
                return self.respond(452, TOO_MANY_RECIPIENTS)
            self.core.rcpt()
            return self.respond(250, "%s, recipient ok" % rcpt.format())
        if code == DENY:
            return self._deny(550, result, "relaying denied")
        if code == DENYSOFT:
            return self._deny(450, result, "relaying denied")
        if code == DENY_DISCONNECT:
            self._deny(550, result, "delivery denied")
            return self.disconnect()
        if code == DENYSOFT_DISCONNECT:
            self._deny(421, result, "relaying denied")
            return self.disconnect()
        if code == DONE:
            return None
        self.respond(450, "No plugin decided if relaying is allowed")

    def _add_recipient(self, rcpt):
        """Add an accepted recipient, or the alias targets a notes source gave it.

        Targets already in the transaction are not added twice (see policy.expand_alias).
        Returns False, adding nothing, when that would exceed ``max_recipients``.
        """
        recipients, invalid = policy.expand_alias(rcpt)
        for target in invalid:
            self.log(codes.LOGERROR, "%s: alias target %r is not an address, skipped"
                     % (rcpt.format(), target))
        if recipients[0] is rcpt:
            if not self._room_for_recipients(1):
                return False
            self.transaction.add_recipient(rcpt)
            return True
        new = [target for target in recipients if target not in self.transaction.recipients]
        if not self._room_for_recipients(len(new)):
            self.log(codes.LOGINFO, "%s: its %d alias targets would exceed max_recipients"
                     % (rcpt.format(), len(new)))
            return False
        self.log(codes.LOGINFO, "%s is an alias of %s"
                 % (rcpt.format(), ", ".join(r.format() for r in recipients)))
        for target in new:
            self.transaction.add_recipient(target)
        return True

    def _needs_other_transaction(self, rcpt):
        """True if ``rcpt``'s filter settings differ from this transaction's (grouping mode)."""
        policy_plugins = self.chain.policy_plugins
        if self.server.recipient_policy != policy.GROUP or not policy_plugins:
            return False
        recipients = self.transaction.recipients
        if not recipients:
            return False
        key = policy.policy_key(policy_plugins, rcpt)
        if key == policy.policy_key(policy_plugins, recipients[0]):
            return False
        self.log(codes.LOGINFO, "%s has other filter settings than %s: deferred to another transaction"
                 % (rcpt.format(), recipients[0].format()))
        return True

    # -- DATA ---------------------------------------------------------------------------------

    def cmd_data(self, rest):
        return self._then("data", self._data_respond)

    def _data_respond(self, result):
        code = result.code
        if code == DENY:
            self._deny(554, result, "Message denied")
            return self._reset_after_refusal()
        if code == DENYSOFT:
            self._deny(451, result, "Message denied temporarily")
            return self._reset_after_refusal()
        if code == DENY_DISCONNECT:
            self._deny(554, result, "Message denied")
            return self.disconnect()
        if code == DENYSOFT_DISCONNECT:
            self._deny(421, result, "Message denied temporarily")
            return self.disconnect()
        if code == DONE:
            return None
        if self.transaction.sender is None or self.core.state not in (State.MAIL, State.RCPT):
            return self.respond(503, "MAIL first")
        if not self.transaction.recipients:
            return self.respond(503, "RCPT first")
        self.core.start_data(max_size=self.server.databytes)
        self.respond(354, "go ahead")

    def _reset_after_refusal(self):
        if self.core.state in (State.MAIL, State.RCPT):
            self.core.reset()
        self._reset_transaction()

    def _data_headers(self, event):
        self.transaction.header = Header.parse(event.block)
        if not self.hooks.has("data_headers_end"):
            return None
        return self._then("data_headers_end", self._data_headers_respond)

    def _data_headers_respond(self, result):
        if result.code == DENY_DISCONNECT:
            self._deny(554, result, "Message denied")
            return self.disconnect()
        if result.code == DENYSOFT_DISCONNECT:
            self._deny(421, result, "Message denied temporarily")
            return self.disconnect()
        return None

    def _data_end(self, event):
        txn = self.transaction
        txn.data_size = event.size
        txn.body.finish()
        if event.too_big:
            self.log(codes.LOGALERT, "Message too big: size %d > databytes %d"
                     % (event.size, self.server.databytes))
            self.respond(552, "Message too big!")
            return self._finish_message()
        return self._add_core_headers()

    def _add_core_headers(self):
        txn = self.transaction
        if txn.header is None:
            txn.header = Header()
        txn.header.add("Authentication-Results",
                       authentication_results_header(self.server.me, self.connection),
                       prepend=True)
        if not self.hooks.has("received_line"):
            return self._add_received(None)
        return self._then("received_line", self._add_received,
                          self._proto(), self._auth_comment(), self._tls_comment())

    def _add_received(self, result):
        txn = self.transaction
        if result is not None and result.code == OK and result.lines:
            value = "\n".join(result.lines)
        else:
            value = received_header(self.server.me, self.connection, self._proto(), time.time())
        txn.header.add("Received", value, prepend=True)
        return self._then("data_post", self._data_post_respond)

    def _proto(self):
        conn = self.connection
        proto = "ESMTP" if conn.hello == "ehlo" else "SMTP"
        if conn.tls:
            proto += "S"
        if conn.auth_user:
            proto += "A"
        return proto

    def _auth_comment(self):
        conn = self.connection
        if not conn.auth_user:
            return ""
        return "(smtp-auth username %s, mechanism %s)" % (conn.auth_user, conn.auth_mechanism)

    def _tls_comment(self):
        return self.connection.notes.get("tls_cipher_comment", "")

    def _data_post_respond(self, result):
        code = result.code
        if code in codes.DENY_CODES:
            self._log_outcome(552 if code in (DENY, DENY_DISCONNECT) else 452,
                              result.lines or ["denied by %s" % result.plugin.name])
        if code in (DENY, DENY_DISCONNECT):
            self._deny(552, result, "Message denied")
            self._finish_message()
            return self.disconnect() if code == DENY_DISCONNECT else None
        if code in (DENYSOFT, DENYSOFT_DISCONNECT):
            self._deny(452, result, "Message denied temporarily")
            self._finish_message()
            return self.disconnect() if code == DENYSOFT_DISCONNECT else None
        if code == DONE:
            return self._finish_message()
        return self._then("queue_pre", self._queue_pre_respond)

    def _queue_pre_respond(self, result):
        if result.code == DONE:
            return self._finish_message()
        if result.code not in (0, OK, DECLINED):
            self.log(codes.LOGERROR, "queue_pre plugin returned %s" % codes.code_name(result.code))
            self.respond(451, "Internal error - try again later - queue_pre failed")
            return self._finish_message()
        return self._then("queue", self._queue_respond)

    def _queue_respond(self, result):
        code = result.code
        if code == OK:
            reply = (250, result.lines or ["Queued"])
        elif code == DENY:
            reply = (552, result.lines or ["Message denied"])
        elif code == DENYSOFT:
            reply = (452, result.lines or ["Message denied temporarily"])
        elif code != DONE:
            reply = (451, result.lines or ["Queuing declined or disabled; try again later"])
        else:
            reply = None
        if reply is not None:
            self.respond(*reply)
            self._log_outcome(*reply)
        finished = self.transaction
        self._finish_message()
        if self.hooks.has("queue_post"):
            self.hooks.run_no_respond("queue_post", finished)

    def _log_outcome(self, code, lines):
        """One LOGNOTICE line per message: who, to whom, how big, and the answer."""
        if not self.server.log_enabled(codes.LOGNOTICE):
            return
        txn = self.transaction
        self.log(codes.LOGNOTICE, "message %s from %s to %s, %d bytes: %d %s" % (
            txn.id, txn.sender.format() if txn.sender else "<>",
            ",".join(r.format() for r in txn.recipients), txn.data_size, code, " ".join(lines)))

    def _finish_message(self):
        """The message is answered: back to command mode with a fresh transaction."""
        if self.core.state is State.DATA:
            self.core.data_end()
        self.connection.transaction_count += 1
        self._reset_transaction()

    # -- the small commands ----------------------------------------------------------------------

    def cmd_rset(self, rest):
        self._reset_after_refusal()
        self.respond(250, "OK")

    def cmd_noop(self, rest):
        return self._then("noop", self._noop_respond)

    def _noop_respond(self, result):
        if result.code in (DENY, DENY_DISCONNECT):
            self._deny(500, result, "Stop wasting my time.")
            return self.disconnect() if result.code == DENY_DISCONNECT else None
        if result.code != DONE:
            self.respond(250, "OK")

    def cmd_vrfy(self, rest):
        return self._then("vrfy", self._vrfy_respond)

    def _vrfy_respond(self, result):
        if result.code == OK:
            return self._deny(250, result, "User OK")
        if result.code == DENY:
            self._deny(554, result, "Access Denied")
            return self._reset_after_refusal()
        if result.code != DONE:
            self.respond(252, "Just try sending a mail and we'll see how it turns out ...")

    def cmd_help(self, rest):
        return self._then("help", self._help_respond, rest)

    def _help_respond(self, result):
        if result.code in (DENY, DENY_DISCONNECT):
            return self._deny(500, result, "Syntax error, command not recognized")
        if result.code == DONE:
            return None
        if result.code == OK and result.lines:
            return self.respond(214, result.lines)
        self.respond(214, [
            "This is %s" % (SOFTWARE_NAME,),
            "A drop-in replacement for qpsmtpd, on Twisted",
            "To report problems, mail the postmaster of this host.",
        ])

    def cmd_quit(self, rest):
        return self._then("quit", self._quit_respond)

    def _quit_respond(self, result):
        if result.code != DONE:
            self.respond(221, "%s closing connection. Have a wonderful day." % self.server.me)
        self.disconnect()

    def _unrecognized(self, verb, rest):
        return self._run("unrecognized_command", (verb, rest), self._unrecognized_respond)

    def _unrecognized_respond(self, result):
        if result.code == DENY:
            return self._deny(500, result, "Unrecognized command")
        if result.code == DENY_DISCONNECT:
            self._deny(521, result, "Unrecognized command")
            return self.disconnect()
        if result.code != DONE:
            self.respond(500, "Unrecognized command")


def _mask_auth(line):
    """Hide SASL credentials in a logged AUTH line."""
    if line[:5].upper() == "AUTH ":
        parts = line.split()
        if len(parts) > 2:
            return " ".join(parts[:2] + ["<hidden>"])
    return line
