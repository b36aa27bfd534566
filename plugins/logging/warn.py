"""logging/warn — write log lines to standard error, like the built-in logger.

List it in the ``logging`` config file (not in ``plugins``). Any logging plugin replaces the
built-in logger, so this is the way to keep stderr output next to another logging plugin,
or to give stderr its own level.

Arguments: ``[LEVEL]``
  ``LEVEL``  the highest level written, as a number (``0``–``7``) or a name (``LOGINFO``,
             ``LOGDEBUG``…; the ``LOG`` prefix may be left out). Default ``LOGWARN`` (4).

Config files: none (the ``loglevel`` file is for the built-in logger; this plugin uses its
argument).

Output, one line per message: ``<conn-id> (<hook>) <plugin>: <text>`` — the connection id
stands where qpsmtpd wrote the process id (one process serves every connection here);
parts that are unknown are left out. The plugin's own lines are not written.

Notes: none. Replies: none.
"""

import sys

from qpsmtpd_tx import codes
from qpsmtpd_tx.codes import DECLINED, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import log_level
from qpsmtpd_tx.server_log import format_log_line


class Warn(Plugin):
    """Log lines at or below a level to stderr."""

    #: where lines go; None means whatever ``sys.stderr`` is when a line is written
    stream = None

    def init(self, args):
        if len(args) > 1:
            raise PluginError("usage: logging/warn [LEVEL]")
        #: read by the server: nothing above this level is formatted for us
        self.log_threshold = log_level(args[0]) if args else codes.LOGWARN
        self.log(LOGINFO, "Initializing logging::warn plugin")

    def hook_logging(self, transaction, level, hook, plugin_name, message):
        if level > self.log_threshold or plugin_name == self.name:
            return DECLINED
        conn_id = None
        if transaction is not None and transaction.connection is not None:
            conn_id = transaction.connection.id
        stream = self.stream or sys.stderr
        stream.write(format_log_line(conn_id, hook, plugin_name, message) + "\n")
        return DECLINED
