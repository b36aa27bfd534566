"""noop_counter — disconnect a client that sends too many NOOPs in a row.

Counts consecutive NOOP commands per connection; the N-th one in a row is answered
``500 Stop wasting my time, too many consecutive NOOPs`` and the connection is closed. The
count goes back to 0 at HELO, EHLO, MAIL, RCPT, DATA, VRFY and HELP, and whenever the
transaction is reset (RSET, MAIL, HELO/EHLO, the end of a message). Unknown commands, AUTH
and QUIT do not reset it.

Load it early in ``plugins``: the HELO/EHLO, RCPT, DATA, VRFY and HELP resets only happen
when no plugin listed before this one has already decided that hook (e.g. ``rcpt_ok``
answering OK for a recipient).

Arguments: ``[N]`` — the number of consecutive NOOPs that closes the connection (default 3;
``0`` also means 3). Anything else stops start-up.

Config files: none.

Notes: connection note ``noop_count`` — the NOOPs in a row so far.

Replies: below N the core's ``250 OK``; the N-th: ``500 Stop wasting my time, too many
consecutive NOOPs`` and the connection is closed.

Differences from qpsmtpd 0.94, on purpose: the count lives in the connection (0.94 kept it in
the plugin object, which the prefork server shares between the connections of one child);
a non-numeric or extra argument stops start-up (0.94 ignored it).
"""

from qpsmtpd_tx.codes import DECLINED, DENY_DISCONNECT, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError

DEFAULT_MAX = 3
NOTE = "noop_count"
MESSAGE = "Stop wasting my time, too many consecutive NOOPs"


class NoopCounter(Plugin):
    """Count NOOPs in a row; DENY_DISCONNECT at the limit; other commands reset the count."""

    def init(self, args):
        if len(args) > 1:
            raise PluginError("usage: noop_counter [N], got %r" % (" ".join(args),))
        self.max = DEFAULT_MAX
        if args:
            if not args[0].isdigit():
                raise PluginError("N must be a whole number, got %r" % (args[0],))
            self.max = int(args[0]) or DEFAULT_MAX

    def register(self, registry):
        for hook in ("helo", "ehlo", "mail", "rcpt", "data", "reset_transaction", "vrfy", "help"):
            registry.register(hook, self, self.reset)

    def hook_noop(self, transaction):
        notes = transaction.connection.notes
        count = notes[NOTE] = notes.get(NOTE, 0) + 1
        if count >= self.max:
            self.log(LOGINFO, "fail, %d consecutive NOOPs" % count, transaction)
            return DENY_DISCONNECT, MESSAGE
        return DECLINED

    def reset(self, transaction, *args):
        """Any other command: the NOOPs are no longer consecutive."""
        transaction.connection.notes[NOTE] = 0
        return DECLINED
