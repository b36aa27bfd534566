"""The server's log: each line to the logging plugins of the session's chain, else to Twisted.

:class:`ServerLog` is a part of :class:`~qpsmtpd_tx.server.SMTPServer` (a mixin): it needs the
server's ``hooks``/``chain``, ``loglevel`` and ``check_only``. :func:`format_log_line` is the
line format the logging plugins share.
"""

from twisted.logger import Logger, LogLevel

from qpsmtpd_tx import codes
from qpsmtpd_tx.hooks import current_hook

_TWISTED_LEVEL = {
    0: LogLevel.critical, 1: LogLevel.critical, 2: LogLevel.critical, 3: LogLevel.error,
    4: LogLevel.warn, 5: LogLevel.info, 6: LogLevel.info, 7: LogLevel.debug,
}


_logger = Logger(namespace="qpsmtpd_tx")


class ServerLog:
    """Logging for the server: thresholds, logging plugins, the Twisted fallback."""

    def _log_to_twisted(self, level, line):
        _logger.emit(_TWISTED_LEVEL[level], "{line}", line=line)

    def _set_log_threshold(self):
        if self.hooks.has("logging"):
            self._log_threshold = max(
                getattr(plugin, "log_threshold", codes.LOGDEBUG)
                for plugin, _ in self.hooks.handlers("logging"))
        else:
            self._log_threshold = self.loglevel

    def log_enabled(self, level):
        """True if a line at ``level`` would be logged anywhere."""
        return level <= self._log_threshold

    def log(self, level, message, plugin=None, transaction=None, hook=None):
        """Log a line; logging plugins get it if any are loaded, else twisted.logger does.

        A check-only server logs nothing (the real start logs the same lines again).
        """
        if self.check_only:
            return
        if level > self._log_threshold:
            return
        conn_id = None
        if transaction is not None and transaction.connection is not None:
            conn_id = transaction.connection.id
        plugin_name = plugin.name if plugin is not None else None
        if hook is None:
            hook = current_hook.get()
        # a session logs through the logging plugins of its own chain (see reload)
        session = getattr(transaction, "session", None)
        hooks = session.chain.hooks if session is not None else self.hooks
        handlers = hooks.handlers("logging") if hooks.has("logging") else None
        if handlers:
            for log_plugin, method in handlers:
                if log_plugin is plugin:
                    continue
                try:
                    method(transaction, level, hook, plugin_name, message)
                except Exception as e:
                    # A broken logging plugin must not hide the line, nor its own failure.
                    self._log_to_twisted(codes.LOGCRIT, format_log_line(
                        conn_id, "logging", log_plugin.name, "logging plugin failed: %r" % (e,)))
                    self._log_to_twisted(level, format_log_line(conn_id, hook, plugin_name, message))
            return
        self._log_to_twisted(level, format_log_line(conn_id, hook, plugin_name, message))


def format_log_line(conn_id, hook, plugin_name, message):
    """``<conn-id> (<hook>) <plugin>: <text>``, the qpsmtpd format with a connection id for the pid."""
    parts = []
    if conn_id:
        parts.append(conn_id)
    if hook:
        parts.append("(%s)" % hook)
    if plugin_name:
        parts.append("%s:" % plugin_name)
    parts.append(message)
    return " ".join(parts)


def tagged_line(tag, plugin_name, hook, message):
    """``<tag> <plugin> plugin: <text>``, ``<tag> running plugin (<hook>): <text>`` or
    ``<tag> <text>``: the text of qpsmtpd's logging/connection_id and logging/apache lines."""
    if plugin_name:
        return "%s %s plugin: %s" % (tag, plugin_name, message)
    if hook:
        return "%s running plugin (%s): %s" % (tag, hook, message)
    return "%s %s" % (tag, message)
