"""What the server counts for its metrics, and the null counter used without ``--metrics``.

The session, the protocol and the hook runner report events to one object per process,
``server.metrics``: :data:`NO_METRICS` (every method does nothing, and the hook runner does
not even read the clock) unless ``--metrics`` gives a :class:`qpsmtpd_tx.prometheus.Metrics`.
This module does not import prometheus_client.
"""


def outcome(code):
    """The reply class of an SMTP ``code``: accepted, deferred (4xx), rejected (5xx), or
    ``done`` (None: a plugin answered the client itself)."""
    if code is None:
        return "done"
    if code < 400:
        return "accepted"
    return "deferred" if code < 500 else "rejected"


def plugin_label(plugin):
    """A plugin's label: its name as written in ``plugins``, or ``core`` for the server's own
    decisions."""
    if plugin is None:
        return "core"
    return getattr(plugin, "path", None) or getattr(plugin, "name", None) or "unknown"


class NoMetrics:
    """Metrics off: every event is ignored (the default ``server.metrics``)."""

    #: what the hook runner calls with (plugin, hook, seconds); None: do not time hooks
    observe_hook = None

    def connection(self):
        """A TCP connection was accepted (refused or not)."""

    def connection_refused(self, reason):
        """A connection was refused before its session started (``reason``: a fixed word)."""

    def session_opened(self):
        """A session started serving a connection."""

    def session_closed(self):
        """A session's connection is gone."""

    def received(self, size):
        """``size`` bytes came from a client (as read from the socket, TLS included)."""

    def transaction(self):
        """A mail transaction began (MAIL accepted)."""

    def replied(self, phase, code, plugin, ends_message=False):
        """A hook's result was answered with ``code`` (None: the plugin answered itself);
        ``ends_message``: this reply is the final answer to a message."""

    def tls_handshake(self, result):
        """A TLS handshake ended (``result``: ``ok`` or ``failed``)."""

    def watch_resolver(self, resolver):
        """Count ``resolver``'s lookups (its ``stats``) from now on."""


#: the metrics of a server without ``--metrics``
NO_METRICS = NoMetrics()
