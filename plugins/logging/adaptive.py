"""logging/adaptive — log verbosely for every message, and mark the lines of accepted ones.

List it in the ``logging`` config file::

    logging/adaptive [accept L] [reject L] [prefix C]

Arguments (``key value`` pairs, all optional):
  ``accept L``   the level up to which the lines of an accepted transaction are written a
                 second time, marked with the prefix. A number ``0``–``7`` or a name
                 (``LOGERROR``, ``LOGINFO``…). Default ``LOGERROR`` (3).
  ``reject L``   the level up to which every line is written at once. Default ``LOGWARN`` (4).
  ``prefix C``   the mark of the replayed lines (any text without spaces). Default `````.

What is written, to standard error (like logging/warn; under ``twistd`` that is the log, or
whatever supervises the server):
  - every line at or below the ``reject`` level, when it is logged::

        <conn-id> <plugin> plugin: <text>          (a plugin's line)
        <conn-id> running plugin (<hook>): <text>  (a core line during a hook)
        <conn-id> <text>                           (other core lines)

  - the lines at or below the ``accept`` level are also kept with their transaction; when
    the transaction ends (a message was handled, RSET, a new MAIL, HELO or the end of the
    connection — qpsmtpd's ``reset_transaction``) and no plugin refused anything in it
    (no ``deny`` hook ran for it), they are written again with the prefix after the id::

        <conn-id> ` <plugin> plugin: <text>

    If a plugin refused something (a DENY* of any hook: a recipient, the message…), the
    kept lines are dropped.

So a log filter can split the output in two, as in qpsmtpd's documentation for multilog::

    exec multilog t '-*` *' ./detailed '-*' '+*` *' ./accepted

``detailed`` then holds every line at the ``reject`` level, ``accepted`` the ``accept``-level
lines of the transactions nothing refused. At most 1000 lines are kept per transaction; the
replay of a longer one ends with ``<conn-id> ` N more lines not kept``.

The plugin's own lines are not written. The connection id stands where qpsmtpd wrote the
process id (one process serves every connection here); lines outside any connection have
no id.

Config files: none. Notes: two private transaction notes named after this plugin instance
(the kept lines and the refused flag). Replies: none.

Differences from qpsmtpd 0.94, on purpose:
  - a refusal only affects its own transaction; qpsmtpd set the flag on the plugin object and
    never cleared it, so after the first refusal of the process nothing was replayed again;
  - the ``accept`` level alone decides which lines are kept (qpsmtpd also required them to
    be at or below the ``reject`` level, which only matters when ``accept`` is the higher);
  - qpsmtpd also skipped every line whose text mentioned ``logging::adaptive``; only the
    plugin's own lines are skipped here;
  - an unknown level name or a bad argument stops start-up (qpsmtpd ignored it).
"""

import sys

from qpsmtpd_tx.codes import DECLINED, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import log_level

MAX_KEPT = 1000


def describe(plugin_name, hook):
    """qpsmtpd's adaptive/connection_id tag: ``<plugin> plugin:`` or ``running plugin (<hook>):``."""
    if plugin_name:
        return "%s plugin:" % plugin_name
    if hook:
        return "running plugin (%s):" % hook
    return ""


def join_words(*words):
    return " ".join(w for w in words if w)


class Adaptive(Plugin):
    """Write lines at the reject level at once; replay accept-level lines of accepted transactions."""

    #: where lines go; None means whatever ``sys.stderr`` is when a line is written
    stream = None

    def init(self, args):
        if len(args) % 2:
            raise PluginError("arguments must be key/value pairs, got %r" % (" ".join(args),))
        options = {}
        for key, value in zip(args[::2], args[1::2]):
            if key not in ("accept", "reject", "prefix"):
                raise PluginError("unknown argument %r (known: accept, prefix, reject)" % (key,))
            options[key] = value
        self.accept = log_level(options["accept"]) if "accept" in options else LOGERROR
        self.reject = log_level(options["reject"]) if "reject" in options else LOGWARN
        self.prefix = options.get("prefix", "`")
        #: read by the server: nothing above this level is formatted for us
        self.log_threshold = max(self.accept, self.reject)
        self._kept_note = "logging/adaptive:kept:" + self.name
        self._denied_note = "logging/adaptive:denied:" + self.name
        self.log(LOGINFO, "Initializing logging::adaptive plugin")

    def _write(self, line):
        (self.stream or sys.stderr).write(line + "\n")

    @staticmethod
    def _conn_id(transaction):
        if transaction is not None and transaction.connection is not None:
            return transaction.connection.id
        return None

    def hook_logging(self, transaction, level, hook, plugin_name, message):
        if plugin_name == self.name:
            return DECLINED
        if level <= self.reject:
            self._write(join_words(self._conn_id(transaction), describe(plugin_name, hook),
                                   message))
        if level <= self.accept and transaction is not None:
            kept = transaction.notes.get(self._kept_note)
            if kept is None:
                kept = transaction.notes[self._kept_note] = [[], 0]
            if len(kept[0]) < MAX_KEPT:
                kept[0].append((hook, plugin_name, message))
            else:
                kept[1] += 1
        return DECLINED

    def hook_deny(self, transaction, plugin_name, code, text):
        if transaction is not None:
            transaction.notes[self._denied_note] = True
        return DECLINED

    def hook_reset_transaction(self, transaction):
        kept = transaction.notes.pop(self._kept_note, None)
        if kept is None or transaction.notes.get(self._denied_note):
            return DECLINED
        conn_id = self._conn_id(transaction)
        for hook, plugin_name, message in kept[0]:
            self._write(join_words(conn_id, self.prefix + (" " + describe(plugin_name, hook)
                                                           if plugin_name or hook else ""),
                                   message))
        if kept[1]:
            self._write(join_words(conn_id, self.prefix, "%d more lines not kept" % kept[1]))
        return DECLINED
