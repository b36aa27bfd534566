"""A plugin chain: the hook registry and the plugins of one reading of ``logging`` and ``plugins``.

The server starts with one chain. SIGHUP builds a new one beside it and, if every plugin
loads, makes it the chain of new connections; a session keeps the chain it started with to
its end. A replaced chain is *retired*: its plugins' ``stop()`` runs once its last session
has ended (at once if it has none).
"""

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred

from qpsmtpd_tx import codes
from qpsmtpd_tx.hooks import HookRegistry


class PluginChain:
    """Hooks, plugins, policy plugins and the authenticator used together by sessions.

    ``log`` is the server's ``log(level, message, plugin=None, transaction=None, hook=None)``,
    ``log_enabled(level)`` tells whether a line at ``level`` would be logged at all.
    The plugin lists fill in place while the loader works, so a chain that failed half-way
    still knows which plugins to stop.
    """

    def __init__(self, log, log_enabled=None):
        self.log = log
        self.hooks = HookRegistry(log, log_enabled)
        self.logging_plugins = []
        self.plugins = []
        #: the plugins that read per-recipient settings (see qpsmtpd_tx.policy)
        self.policy_plugins = []
        #: the plugins with ``confirm_recipient(transaction, recipient)``: asked about each
        #: recipient the rcpt hooks accepted, before the 250 (queue/smtp-forward ``proxy``)
        self.recipient_confirmers = []
        #: the Authenticator when an auth hook is registered, else None
        self.auth = None
        #: False when hosts_allow is loaded: it enforces --max-from-ip itself
        self.core_limits_ip = True
        #: the tls plugin's ServerTLS (STARTTLS, SMTPS), or None when it is not loaded
        self.tls = None
        #: offer and accept AUTH only on TLS (``tls_before_auth``; default: tls is loaded)
        #: the reader of a proxy's PROXY header (``stunnel proxy on``'s), or None
        self.proxy = None
        self.tls_before_auth = False
        #: the sessions that started on this chain and have not ended yet
        self.sessions = set()
        self.retired = False
        self._stopped = None

    def use_log(self, log, log_enabled=None):
        """Log through ``log`` and ask ``log_enabled`` from now on (what :meth:`__init__`
        took): the chain keeps the functions it was given, so a test that replaces the
        server's log after the chain was built points its chains at the new one
        (:func:`qpsmtpd_tx.testing.capture_log`)."""
        self.log = log
        self.hooks.use_log(log, log_enabled)

    def attach(self, session):
        """``session`` starts on this chain."""
        self.sessions.add(session)

    def detach(self, session):
        """``session`` has ended; stops a retired chain once its last session is gone."""
        self.sessions.discard(session)
        if self.retired and not self.sessions:
            self.stop()

    def retire(self):
        """No new session will use this chain; stop it when the sessions on it have ended."""
        self.retired = True
        if not self.sessions:
            self.stop()

    def stop(self):
        """Call every plugin's ``stop()`` (once, however often this is called); a Deferred
        firing when all are done."""
        if self._stopped is None:
            self._stopped = self._stop_plugins()
        done = Deferred()
        self._stopped.addBoth(lambda result: (done.callback(None), result)[1])
        return done

    def _stop_plugins(self):
        calls = []
        for plugin in self.logging_plugins + self.plugins:
            stop = getattr(plugin, "stop", None)
            if stop is not None:
                d = maybeDeferred(stop)
                d.addErrback(lambda f, p=plugin: self.log(
                    codes.LOGERROR, "stopping %s failed: %s" % (p.name, f.getErrorMessage())))
                calls.append(d)
        return DeferredList(calls)
