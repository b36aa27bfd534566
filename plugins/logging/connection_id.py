"""logging/connection_id — write log lines to standard error, tagged with the connection id.

List it in the ``logging`` config file: ``logging/connection_id [LEVEL]``.

Arguments: ``[LEVEL]``
  ``LEVEL``  the highest level written, as a number (``0``–``7``) or a name (``LOGINFO``,
             ``LOGDEBUG``…; the ``LOG`` prefix may be left out). Default ``LOGWARN`` (4).

Output, one line per message, in the format of qpsmtpd's plugin::

    <conn-id> <plugin> plugin: <text>          (a plugin's line)
    <conn-id> running plugin (<hook>): <text>  (a core line during a hook)
    <conn-id> <text>                           (other core lines)

``<conn-id>`` is the connection's id (``transaction.connection.id``, the id every other log
line of the connection carries), or ``???`` for a line outside any connection. Use it to
follow one connection through a busy log: one process serves every connection, so the
process id tells nothing. The plugin's own lines are not written.

New behaviour: qpsmtpd 0.94 ships this plugin only as a demonstration that refuses to load
("The connection ID feature is currently unsupported") because its connections had no id;
this one works.

Config files: none. Notes: none. Replies: none.
"""

import sys

from qpsmtpd_tx import codes
from qpsmtpd_tx.codes import DECLINED, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import log_level
from qpsmtpd_tx.server_log import tagged_line

UNKNOWN_ID = "???"


class ConnectionId(Plugin):
    """Log lines at or below a level to stderr, tagged with the connection id."""

    #: where lines go; None means whatever ``sys.stderr`` is when a line is written
    stream = None

    def init(self, args):
        if len(args) > 1:
            raise PluginError("usage: %s [LEVEL]" % (self.path,))
        #: read by the server: nothing above this level is formatted for us
        self.log_threshold = log_level(args[0]) if args else codes.LOGWARN
        self.log(LOGINFO, "Initializing %s plugin" % (self.name,))

    def tag(self, transaction):
        """The id written in front of a line of ``transaction`` (``???`` if none)."""
        if transaction is not None and transaction.connection is not None:
            return transaction.connection.id
        return UNKNOWN_ID

    def hook_logging(self, transaction, level, hook, plugin_name, message):
        if level > self.log_threshold or plugin_name == self.name:
            return DECLINED
        (self.stream or sys.stderr).write(
            tagged_line(self.tag(transaction), plugin_name, hook, message) + "\n")
        return DECLINED
