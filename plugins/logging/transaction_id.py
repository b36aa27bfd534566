"""logging/transaction_id — write log lines to standard error, tagged with the transaction id.

List it in the ``logging`` config file: ``logging/transaction_id [LEVEL]``.

Arguments: ``[LEVEL]``
  ``LEVEL``  the highest level written, as a number (``0``–``7``) or a name (``LOGINFO``,
             ``LOGDEBUG``…; the ``LOG`` prefix may be left out). Default ``LOGWARN`` (4).

Output, one line per message, in the format of qpsmtpd's plugin::

    <txn-id> <plugin> plugin: <text>          (a plugin's line)
    <txn-id> running plugin (<hook>): <text>  (a core line during a hook)
    <txn-id> <text>                           (other core lines)

``<txn-id>`` is the id of the transaction the line belongs to (``transaction.id``:
``<conn-id>.<n>``, the connection id and the number of the transaction in it, counting from 1
for the one that exists before HELO; the core's per-message ``message <txn-id> from …`` line
uses the same id), or ``???`` for a line outside any connection. Use it to pick the lines of
one message out of a busy log. The plugin's own lines are not written.

New behaviour: qpsmtpd 0.94 ships this plugin only as a demonstration that refuses to load
("The transaction ID feature is currently unsupported") because its transactions had no id;
this one works.

Config files: none. Notes: none. Replies: none.
"""

import sys

from qpsmtpd_tx import codes
from qpsmtpd_tx.codes import DECLINED, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError

UNKNOWN_ID = "???"


def parse_level(word):
    """A level argument (number or name) as a number; PluginError if it is neither."""
    if word.isdigit():
        return min(int(word), codes.LOGDEBUG)
    try:
        return codes.parse_log_level(word)
    except ValueError:
        raise PluginError("unknown log level %r" % (word,))


def tagged_line(tag, plugin_name, hook, message):
    """``<tag> <plugin> plugin: <text>``, ``<tag> running plugin (<hook>): <text>`` or ``<tag> <text>``."""
    if plugin_name:
        return "%s %s plugin: %s" % (tag, plugin_name, message)
    if hook:
        return "%s running plugin (%s): %s" % (tag, hook, message)
    return "%s %s" % (tag, message)


class TransactionId(Plugin):
    """Log lines at or below a level to stderr, tagged with the transaction id."""

    #: where lines go; None means whatever ``sys.stderr`` is when a line is written
    stream = None

    def init(self, args):
        if len(args) > 1:
            raise PluginError("usage: %s [LEVEL]" % (self.path,))
        #: read by the server: nothing above this level is formatted for us
        self.log_threshold = parse_level(args[0]) if args else codes.LOGWARN
        self.log(LOGINFO, "Initializing %s plugin" % (self.name,))

    def tag(self, transaction):
        """The id written in front of a line of ``transaction`` (``???`` if none)."""
        if transaction is not None and getattr(transaction, "id", None):
            return transaction.id
        return UNKNOWN_ID

    def hook_logging(self, transaction, level, hook, plugin_name, message):
        if level > self.log_threshold or plugin_name == self.name:
            return DECLINED
        (self.stream or sys.stderr).write(
            tagged_line(self.tag(transaction), plugin_name, hook, message) + "\n")
        return DECLINED
