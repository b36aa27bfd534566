"""One SMTP session: runs the plugin hooks for each command and answers as qpsmtpd does.

The session sits between the sans-I/O :class:`~qpsmtpd_tx.core.SMTPCore` (framing, protocol
state, which command is allowed when) and a transport (anything with ``write``,
``loseConnection``, ``abortConnection``, ``pauseProducing`` and ``resumeProducing``;
``registerProducer`` if it has one). Its parts, one job each:

- this module: the session's state, the greeting, dispatching events and commands, running a
  hook, and the small commands (RSET, NOOP, VRFY, HELP, QUIT, unrecognized ones);
- :mod:`~qpsmtpd_tx.flow`: the I/O pump and flow control (back-pressure, deadlines, timeouts);
- :mod:`~qpsmtpd_tx.envelope`: HELO/EHLO, MAIL, RCPT (AUTH: :mod:`~qpsmtpd_tx.auth`);
- :mod:`~qpsmtpd_tx.delivery`: DATA, end of message → Received → data_post → queue;
- :mod:`~qpsmtpd_tx.starttls`: STARTTLS and the SMTPS handshake;
- :mod:`~qpsmtpd_tx.replies`: the table of replies to hook results.

Reply texts and codes follow qpsmtpd 0.94, except where qpsmtpd sent nothing or a broken reply:
then a default text is sent.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from zope.interface import implementer

from qpsmtpd_tx import __version__, codes, replies
from qpsmtpd_tx.command import split_command
from qpsmtpd_tx.core import Command, LineTooLong, SMTPCore, State
from qpsmtpd_tx.data import BadDataEnd, Body, DataEnd, Headers
from qpsmtpd_tx.delivery import MessageDelivery
from qpsmtpd_tx.envelope import EnvelopeCommands
from qpsmtpd_tx.flow import FLUSH_ABOVE, PAUSE_ABOVE, ReplyProducer, SessionFlow
from qpsmtpd_tx.hooks import NO_HOOK, HookResult
from qpsmtpd_tx.interfaces import ISession
from qpsmtpd_tx.message import BodySpool
from qpsmtpd_tx.objects import Transaction
from qpsmtpd_tx.printable import printable
from qpsmtpd_tx.rdns import ptr_name
from qpsmtpd_tx.starttls import StartTLS

#: the flow limits stay importable from here (test_flow does)
__all__ = ["SMTPSession", "FLUSH_ABOVE", "PAUSE_ABOVE"]

BARELF_TEXT = "See http://smtpd.develooper.com/barelf.html"


@implementer(ISession)
class SMTPSession(SessionFlow, EnvelopeCommands, MessageDelivery, StartTLS):
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
        if connection.dns is None:
            connection.dns = server.connection_dns()
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
        #: a successful AUTH made the connection a relay client (undone by STARTTLS after it)
        self.relay_from_auth = False
        self._input_waiters = []
        self._finish_when_idle = False
        #: what the running deadline limits (_COMMAND_LINE, or the transaction in DATA), its timer
        self._deadline_for = None
        self._deadline_call = None
        self._deadline_overdue = False
        #: schedules the deadlines and the TLS handshake's (the protocol sets its own callLater)
        self.call_later = reactor.callLater
        self._shutting_down = False

    #: command verb → the name of the method that handles it
    commands = {verb: "cmd_" + verb for verb in (
        "helo", "ehlo", "mail", "rcpt", "data", "rset", "noop", "vrfy", "help", "quit")}

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
        self.server.release_ip(self)
        if self.server.log_enabled(codes.LOGINFO):
            self.log(codes.LOGINFO, "click, disconnecting")
        self.connection.notes["disconnected"] = True
        self.core.close()
        self._notify("disconnect")
        self._reset_transaction(renew=self.hooks.has("post-connection"))

    def _new_transaction(self):
        self._transaction_count += 1
        self.transaction = Transaction(
            connection=self.connection,
            id="%s.%d" % (self.connection.id, self._transaction_count),
            body=BodySpool(self.server.spool_dir, self.server.size_threshold),
        )
        self.transaction.session = self

    def _reset_transaction(self, renew=True):
        """Replace the transaction (MAIL, RSET, end of DATA, HELO, disconnect).

        At disconnect a new one is made only for the post-connection hooks (``renew``): else
        nothing would see it (the session keeps the old one, discarded).
        """
        old = self.transaction
        if self.hooks.registered["reset_transaction"]:
            self.hooks.run_no_respond("reset_transaction", old)
        old.discard()
        if renew:
            self._new_transaction()

    def _reset_after_refusal(self):
        """Drop the transaction (RSET, a refused DATA or VRFY): back to READY."""
        if self.core.state in (State.MAIL, State.RCPT):
            self.core.reset()
        self._reset_transaction()

    #: set when the session starts (at connect; for SMTPS once the handshake is done)
    _started = False
    #: the PROXY policy of the endpoint the client came in on (``--listen-proxy``), else None
    listener_proxy = None

    @property
    def started(self):
        """True once :meth:`start` was called (for SMTPS: once its handshake is done; behind a
        PROXY header: at connect, before the header and the handshake)."""
        return self._started

    def start(self):
        """The client connected: read the PROXY header of a trusted proxy (on a
        ``--listen-proxy`` endpoint, or when a plugin such as ``stunnel`` expects one), run
        pre-connection and connect hooks, then greet."""
        self._started = True
        self._busy = True
        if hasattr(self.transport, "registerProducer"):
            self.transport.registerProducer(ReplyProducer(self), True)
            self._producer_registered = True
        proxy = self.listener_proxy or self.chain.proxy
        if proxy is not None and proxy.trusts(self.connection):
            # the header gives the client's address, which every hook below must see
            pending = proxy.read_header(self).addCallback(self._after_proxy_header)
        else:
            pending = self._open()
        if not (pending is not None and isinstance(pending, Deferred) and self._after(pending)):
            self._busy = False
            self._pump()

    def _after_proxy_header(self, go_on):
        if not go_on:
            return None
        self.server.sessions_by_ip.add(self)     # under the address the header gave
        if self.listener_proxy is not None and self.listener_proxy.tls:
            # --listen-proxy-tls: the client's TLS handshake follows the header (SMTPS)
            return self.tls_after_proxy_header().addCallback(
                lambda done: self._open() if done else None)
        return self._open()

    def _open(self):
        refusal = self.server.too_many_from_ip(self)
        if refusal is None:
            shared = self.server.too_many_across_servers(self)
            if shared is not None:
                return shared.addCallback(self._opened)
        return self._opened(refusal)

    def _opened(self, refusal):
        if refusal is not None:
            self.server.metrics.connection_refused("max_from_ip")
            self.respond(451, refusal)     # hosts_allow's answer, when it is not loaded
            self.disconnect()
            return None
        if not self.hooks.has("pre-connection"):
            return self._pre_connection_respond(NO_HOOK)   # (no list of every peer to build)
        conn = self.connection
        return self._run("pre-connection", (
            conn.remote_ip, conn.remote_port, conn.local_ip, conn.local_port,
            self.server.max_conn_ip, self.server.peer_ips(exclude=self)), self._pre_connection_respond)

    def _pre_connection_respond(self, result):
        if not replies.answer(self, "pre-connection", result):
            return None
        if self.server.reverse_dns:
            name = ptr_name(self.connection.dns, self.connection.remote_ip)
            if name is not None and not isinstance(name, str):    # a Deferred: not cached
                return name.addCallback(self._got_remote_host)
            return self._got_remote_host(name)
        return self._connect()

    def _got_remote_host(self, name):
        self.connection.remote_host = self.connection.remote_info = name or "Unknown"
        return self._connect()

    def _connect(self):
        self._log_accepted()
        return self._run("connect", (), self._connect_respond)

    def _log_accepted(self):
        """qpsmtpd-forkserver's two lines for a client that passed pre-connection."""
        conn, server = self.connection, self.server
        if server.log_enabled(codes.LOGINFO):
            self.log(codes.LOGINFO, "Accepted connection %d/%s from %s / %s" % (
                len(server.peer_ips(exclude=self)), server.max_connections or "unlimited",
                conn.remote_ip, conn.remote_host or "Unknown"))
        if server.log_enabled(codes.LOGNOTICE):
            self.log(codes.LOGNOTICE, "Connection from %s [%s]" % (self._remote_info(), conn.remote_ip))

    def _connect_respond(self, result):
        if not replies.answer(self, "connect", result) or self._closing:
            return None
        if result.code != codes.DONE:
            self.respond(220, [self._greeting()])
        self.core.greet()

    def _greeting(self):
        greeting = self.server.config_value("smtpgreeting")
        if greeting:
            return greeting if "ESMTP" in greeting else greeting + " ESMTP"
        return "%s ESMTP qpsmtpd-tx %s ready; send us your mail, but not your spam." % (
            self.server.me, __version__)

    # -- events -----------------------------------------------------------------------------

    def _handle(self, event):
        kind = type(event)
        if kind is Body:
            body = self.transaction.body
            in_memory = body.filename is None
            body.write(event.data)
            if in_memory and body.filename is not None:
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
            if self.core.auth_exchange is not None:
                return self.core.auth_exchange.line_too_long()
            self.respond(500, "5.5.2 Line too long")
            return None
        raise AssertionError("unexpected event %r" % (event,))

    def _dispatch(self, line):
        if self.core.auth_exchange is not None:
            return self.core.auth_exchange.answer(line)
        if self.server.log_enabled(codes.LOGINFO):
            self.log(codes.LOGINFO, "dispatching %s" % (printable(_mask_auth(line)),))
        self.connection.notes["original_string"] = line
        verb, rest, valid = split_command(line)
        rest = rest or ""
        handler = self.commands.get(verb) if valid else None
        if handler is None:
            if valid and verb == "starttls" and self.chain.tls is not None:
                return self.cmd_starttls(rest)
            if valid and verb == "auth" and self.chain.auth is not None:
                if self.chain.tls_before_auth and not self.connection.tls:
                    return self.respond(530, "5.7.0 Must issue a STARTTLS command first")
                if self.core.auth_offered:
                    return self.chain.auth.start(self, rest)
            return self._unrecognized(verb, rest)
        return getattr(self, handler)(rest)

    def _run(self, hook, args, callback, *extra):
        """Run ``hook`` with ``args``; pass its HookResult (and ``extra``) to ``callback``.

        Synchronous when every plugin answers at once; a Deferred otherwise.
        """
        handlers = self.hooks.registered[hook]
        if not handlers:
            return callback(NO_HOOK, *extra)
        result = self.hooks.run_handlers(hook, handlers, self.transaction, args)
        # (Deferred's metaclass is ABCMeta: isinstance on it is a Python call, so the usual
        # answer, a HookResult, is told by its type first)
        if type(result) is not HookResult and isinstance(result, Deferred):
            return result.addCallback(self._hook_answered, hook, callback, extra)
        return callback(result, *extra)

    def _hook_answered(self, result, hook, callback, extra):
        """A waiting hook's result: to ``callback``, or the reply table's if the plugin timed out."""
        if not result.timed_out:
            return callback(result, *extra)
        replies.answer(self, hook, result)
        return None

    def _answer(self, result, hook):
        """A callback for ``_run`` when the reply table is all there is to the answer."""
        replies.answer(self, hook, result)

    # -- the small commands ----------------------------------------------------------------------

    def cmd_rset(self, rest):
        """RSET: the transaction is dropped."""
        self._reset_after_refusal()
        self.respond(250, "OK")

    def cmd_noop(self, rest):
        """NOOP: 250, unless a plugin objects (qpsmtpd's noop_counter does)."""
        return self._run("noop", (), self._answer, "noop")

    def cmd_vrfy(self, rest):
        """VRFY: 252 unless a plugin knows better."""
        return self._run("vrfy", (), self._answer, "vrfy")

    def cmd_help(self, rest):
        """HELP: plugins may answer (plugins/help); else a short text."""
        return self._run("help", (rest,), self._answer, "help")

    def cmd_quit(self, rest):
        """QUIT: 221 and close."""
        return self._run("quit", (), self._answer, "quit")

    def _unrecognized(self, verb, rest):
        return self._run("unrecognized_command", (verb, rest), self._answer, "unrecognized_command")


def _mask_auth(line):
    """Hide SASL credentials in a logged AUTH line."""
    if line[:5].upper() == "AUTH ":
        parts = line.split()
        if len(parts) > 2:
            return " ".join(parts[:2] + ["<hidden>"])
    return line
