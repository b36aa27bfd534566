"""The session's I/O pump and flow control: back-pressure, deadlines, idle timeout, drain.

The session handles one command at a time: later pipelined commands wait in the core's buffer
until the current one is answered, including when a hook is asynchronous. All replies produced
in one pass are written together (one ``write``), so a pipelined MAIL/RCPT/DATA group costs one
segment, not one per reply.

The session stops reading from the client while more than ``PAUSE_ABOVE`` bytes of its input
wait, and while the client does not read our replies (the session is the transport's streaming
producer: the transport pauses it when its write buffer is full). Then no further buffered
command is handled until the transport has drained, so a client that pipelines cheap commands
and never reads cannot make us queue replies without bound.
"""

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from qpsmtpd_tx import codes
from qpsmtpd_tx.core import NEED_DATA, State

#: stop reading from the client when this many bytes wait unprocessed
PAUSE_ABOVE = 256 * 1024
RESUME_BELOW = 64 * 1024
#: write queued replies out mid-pass once this many bytes wait, so that a flood of pipelined
#: commands meets the transport's back-pressure early (a normal group is one write)
FLUSH_ABOVE = 64 * 1024

#: seconds a connection may take to close after its final reply when ``command_deadline`` is 0
CLOSE_SECONDS = 300

#: the deadline kind for an incomplete command line (the DATA deadline is keyed by transaction)
_COMMAND_LINE = "command line"


@implementer(IPushProducer)
class ReplyProducer:
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


class SessionFlow:
    """The :class:`~qpsmtpd_tx.session.SMTPSession` part that moves bytes and keeps time.

    It reads the state the session sets up (``core``, ``transport``, ``_busy``, ...) and calls
    its ``_handle`` for each event from the core.
    """

    #: the timer that aborts a connection whose close does not complete (see _flush)
    _close_call = None
    #: called when a hook the client waited for has answered (the protocol then counts the
    #: client's idle time from there: it was waiting for us, not idle), or None
    on_answered = None

    @property
    def finished(self):
        """True once the final reply (221, a 421) is queued: the connection only waits to
        close, and no longer counts for its IP (``--max-from-ip``)."""
        return self._closing

    @property
    def lost(self):
        """True once the connection is gone."""
        return self._lost

    def wait_for_input(self, seconds, clock=None, more=False):
        """A Deferred firing True as soon as the client has sent anything, False after ``seconds``
        (or once the client has closed its sending side: nothing more will come).

        For plugins such as earlytalker, which wait before the greeting to catch clients that
        talk first. Bytes already buffered fire it at once, unless ``more``: then it waits for
        bytes beyond them (the rest of a line).
        """
        from twisted.internet import reactor
        d = Deferred()
        if self._lost:
            d.callback(False)
            return d
        if self.core.buffered and not more:
            d.callback(True)
            return d
        if self._input_ended:
            d.callback(False)
            return d
        call = (clock or reactor).callLater(seconds, self._input_waited, d, False)
        self._input_waiters.append((d, call))
        return d

    def _release_input_waiters(self, value):
        """Fire every :meth:`wait_for_input` Deferred with ``value`` (input came, or never will)."""
        waiters, self._input_waiters = self._input_waiters, []
        for d, call in waiters:
            if call.active():
                call.cancel()
            d.callback(value)

    def _input_waited(self, d, value):
        self._input_waiters = [(w, c) for w, c in self._input_waiters if w is not d]
        if not d.called:
            d.callback(value)

    def data_received(self, data):
        """Bytes from the client."""
        self.server.metrics.received(len(data))
        self.core.receive_data(data)
        if self._deadline_for is _COMMAND_LINE and b"\n" in data:
            self._set_deadline(None)      # a line is complete: the next one has its own time
        if self._input_waiters:
            self._release_input_waiters(True)
        if self._busy:
            self._update_reading()
            self._update_deadline()
        else:
            self._pump()      # which updates reading and the deadline once it is done

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

    #: the client closed its sending side (TCP half-close); see ``input_ended``
    _input_ended = False

    @property
    def input_closed(self):
        """True once the client has closed its sending side: no more bytes will arrive."""
        return self._input_ended

    def input_ended(self):
        """The client closed its sending side, as Exim does right after a pipelined
        ``.`` and QUIT: answer everything it sent (the hooks may still be working on its
        message), then close. Closing at once would lose an accepted message's reply."""
        self._input_ended = True
        if self._input_waiters:
            self._release_input_waiters(False)
        if not self._busy:
            self._pump()

    def connection_lost(self):
        """The connection is gone (client closed, error, or our own close)."""
        if self._lost:
            return
        self._lost = True
        self._release_input_waiters(False)
        self._set_deadline(None)
        if self._close_call is not None and self._close_call.active():
            self._close_call.cancel()
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
        # An SMTPS connection lost before its handshake never started: no connect hook ran,
        # so neither do disconnect and post-connection.
        started = self._started
        if not self._closing:
            self._closing = True
            self.core.close()
            if started:
                self._notify("disconnect")
            self._reset_transaction(renew=started and self.hooks.has("post-connection"))
        if started:
            self._notify("post-connection")
        self.transaction.discard()
        # qpsmtpd's parent logs this when it reaps the child: a line outside the connection
        if self.server.log_enabled(codes.LOGINFO):
            self.server.log(codes.LOGINFO, "cleaning up after %s" % self.connection.id)
        self.server.detach_session(self)
        self._let_go()

    #: the Deferreds of disconnect and post-connection hooks still working (see _let_go)
    _notifying = ()

    def _notify(self, hook):
        """Run the notification hook ``hook`` on the transaction; remember the plugins still
        working on it."""
        pending = self.hooks.run_no_respond(hook, self.transaction)
        if pending:
            self._notifying = list(self._notifying) + pending

    def _let_go(self):
        """The session is over: its last transaction lets go of it once the disconnect and
        post-connection hooks are done with it (they may use ``transaction.session``).

        The session and its transaction refer to each other: without this, every connection
        left a cycle for the garbage collector, whose full collections (tens of ms with the
        plugins' modules in memory) ran every few thousand connections.
        """
        transaction = self.transaction
        if not self._notifying:
            transaction.session = None
            return
        pending, self._notifying = self._notifying, ()
        DeferredList(pending).addBoth(lambda _: setattr(transaction, "session", None))

    def shut_down(self):
        """The server is stopping: 421 and close once no transaction or hook is in progress.

        That is at once for an idle session, else right after the transaction in progress
        has been answered (its DATA reply), so no message is left half-acknowledged.
        """
        self._shutting_down = True
        if not self._busy:
            self._pump()

    def _pump(self):
        """Handle buffered input one event at a time until input runs out or a hook waits.

        While a hook waits and the client has already sent its next command (pipelining), the
        replies so far are held back and go out with the next ones: written in separate
        passes, the second would wait for the client's delayed ACK of the first (Nagle), and
        the client reads none of them before the whole group is answered anyway (RFC 2920).
        """
        waiting = False
        while not self._closing and not self._lost and not self.output_blocked:
            if self._shutting_down and self.core.state not in (State.MAIL, State.RCPT, State.DATA):
                self.respond(421, self.server.shutdown_reply())
                self.disconnect()
                break
            event = self.core.next_event()
            if event is NEED_DATA:
                if self._input_ended and not self._closing:
                    # nothing more will come: as if the connection were lost now
                    self._write_replies()
                    self._close_transport()
                break
            try:
                result = self._handle(event)
            except Exception:
                result = Failure()
            if result is not None:     # (the usual answer: no isinstance on the Deferred ABC)
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
        if not (waiting and self.core.command_waiting and not self._closing):
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
                if self.on_answered is not None:
                    self.on_answered()
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
        if not self.core.output_size:
            return      # most passes under TLS (one per record) answer nothing
        out = self.core.data_to_send()
        if not self._lost:
            self.transport.write(out)

    def _flush(self):
        self._write_replies()
        if self._closing and not self._lost:
            self._close_transport()

    def _close_transport(self):
        if self._producer_registered:
            # A registered producer would hold the close back until it is unregistered.
            self._producer_registered = False
            self.transport.unregisterProducer()
        at_once = self.transport.loseConnection()
        if self._close_call is None and at_once is not True:
            # A TLS close waits for the client's close_notify, a plain one for the client
            # to read the last reply: neither may hold the connection for long. (True: a
            # plain close with nothing left to send, done on the next turn.)
            seconds = self.server.command_deadline or CLOSE_SECONDS
            self._close_call = self.call_later(seconds, lambda: self._close_expired(seconds))

    def _close_expired(self, seconds):
        if not self._lost:
            self.log(codes.LOGNOTICE, "close not complete within %d s (TLS shutdown not "
                     "answered or last reply not read), aborting" % seconds)
            self.transport.abortConnection()

    def _internal_error(self, failure):
        # The client gets qpsmtpd's text, never the exception (it may hold paths or data).
        self.log(codes.LOGCRIT, "internal error: %s" % (failure.getTraceback(),))
        if self.core.auth_exchange is not None:
            self.core.auth_exchange.abort()     # the next line is a command again
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
        if self.handshake_pending:
            # In the middle of a TLS handshake no reply can be sent (nor a close completed)
            self.log(codes.LOGNOTICE, "silent during the TLS handshake for %d s, closing"
                     % self.server.timeout)
            self.transport.abortConnection()
            return True
        self.respond(421, "Connection Timed Out")
        self.disconnect()
        self._flush()
        return True
