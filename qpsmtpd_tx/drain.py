"""Shutting down gently (SIGTERM): stop taking clients, let transactions finish, then stop.

:class:`Draining` is a part of :class:`~qpsmtpd_tx.server.SMTPServer` (a mixin): it needs the
server's ``chains_in_use``, ``me``, ``shutdown_timeout``, ``log`` and
``stop_plugins``; the sessions' ``shut_down`` does the per-session half.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from qpsmtpd_tx import codes


class Draining:
    """The drain of a stopping server: ``draining`` is True from :meth:`drain` on."""

    draining = False
    _drained = None

    def _live_sessions(self):
        """Sessions that have not ended, on any chain (a client may be gone while a queue
        plugin still delivers its message)."""
        return [s for chain in self.chains_in_use() for s in chain.sessions]

    def shutdown_reply(self):
        """The text of the 421 a client gets when the server is shutting down."""
        return "%s Service shutting down, try again later" % (self.me,)

    def drain(self, clock=None):
        """Shut down gently: a Deferred firing once every session has ended.

        New clients get 421 (the caller also stops listening); an idle session gets 421 at
        once, one inside a transaction or a hook right after its transaction is answered.
        After ``shutdown_timeout`` seconds the connections still open are closed.
        """
        if self._drained is None:
            self.draining = True
            self._drained = Deferred()
            self._drain_call = (clock or reactor).callLater(self.shutdown_timeout,
                                                            self._drain_timed_out)
            sessions = self._live_sessions()
            if sessions:
                self.log(codes.LOGNOTICE, "shutting down: waiting up to %d s for %d sessions"
                         % (self.shutdown_timeout, len(sessions)))
            for session in sessions:
                session.shut_down()
            if not self._live_sessions():
                self._drain_done()
        done = Deferred()
        self._drained.addBoth(lambda result: (done.callback(None), result)[1])
        return done

    def shut_down(self):
        """:meth:`drain`, then stop every plugin; a Deferred firing when both are done."""
        d = self.drain()
        d.addCallback(lambda _: self.stop_plugins())
        return d

    def _drain_timed_out(self):
        sessions = self._live_sessions()
        self.log(codes.LOGWARN, "shutting down: %d sessions still busy after %d s; closing them"
                 % (len(sessions), self.shutdown_timeout))
        for session in sessions:
            session.transport.abortConnection()
        self._drain_done()

    def _drain_done(self):
        if self._drain_call.active():
            self._drain_call.cancel()
        if not self._drained.called:
            self._drained.callback(None)
