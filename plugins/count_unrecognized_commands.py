"""count_unrecognized_commands — disconnect a client after too many unknown commands.

Useful against spam sent through open HTTP proxies, whose clients send their HTTP request
lines as SMTP commands.

Arguments: ``[N]``
  ``N``  the number of unrecognized commands that closes the connection (default 4; ``0``
         also means 4, as in qpsmtpd). Further arguments are ignored with a warning.

Config files: none.

Notes: connection note ``unrec_cmd_count`` — the number of unrecognized commands so far.

Replies: below N the core's ``500 Unrecognized command``; the N-th unrecognized command gets
``521 Closing connection, N unrecognized commands. Perhaps you should read RFC 2821?`` and
the connection is closed.
"""

from qpsmtpd_tx.codes import DECLINED, DENY_DISCONNECT, LOGINFO, LOGWARN
from qpsmtpd_tx.plugin import Plugin, PluginError

DEFAULT_MAX = 4


class CountUnrecognizedCommands(Plugin):
    """Count unknown commands per connection; DENY_DISCONNECT at the limit."""

    def init(self, args):
        self.max = DEFAULT_MAX
        if args:
            if not args[0].isdigit():
                raise PluginError("N must be a whole number, got %r" % (args[0],))
            self.max = int(args[0]) or DEFAULT_MAX
        if len(args) > 1:
            self.log(LOGWARN, "Ignoring additional arguments.")

    def hook_unrecognized_command(self, transaction, command, rest):
        notes = transaction.connection.notes
        count = notes.get("unrec_cmd_count", 0) + 1
        notes["unrec_cmd_count"] = count
        if count < self.max:
            self.log(LOGINFO, "'%s', (%d)" % (command, count), transaction)
            return DECLINED
        self.log(LOGINFO, "fail, '%s' (%d)" % (command, count), transaction)
        return (DENY_DISCONNECT,
                "Closing connection, %d unrecognized commands. Perhaps you should read RFC 2821?"
                % count)
