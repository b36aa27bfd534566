"""user_config — per-recipient settings from a per-user config directory, at RCPT time.

qpsmtpd HEAD's ``user_config`` keeps each user's configuration in a directory of its own,
laid out as the global config directory is: one file per item, named after the item. This
plugin reads such a directory as a source of recipient notes (README, "Per-recipient
policy"): for each per-recipient setting the loaded filters declare
(``spamassassin_reject_threshold``, ``virus_action``, ``rspamd_settings_id``…), the file of
that name in the recipient's directory, when there is one, gives the recipient's note. Its
value is the file's first line that is neither empty nor a comment (``#``), stripped, as in
qpsmtpd config files::

    /home/alice/.qpsmtpd/spamassassin_reject_threshold     3
    /home/alice/.qpsmtpd/virus_action                      tag

Answers DECLINED (after setting the notes): put it ABOVE ``rcpt_ok``. With other sources
(``aliases``, ``rcpt_notes/sql``, ``rcpt_notes/ldap``), the one listed later in ``plugins``
wins for the notes both set.

Arguments: ``[PATTERN]`` — the recipient's directory; ``%u`` is replaced by the local part,
``%h`` by the domain (lower case), ``%a`` by ``local@domain``. Default ``/home/%u/.qpsmtpd``
(qpsmtpd's). Example: ``user_config /var/lib/qpsmtpd-tx/users/%h/%u``.

The files are read in the server's I/O thread pool at each RCPT (no cache: an edit applies
to the next recipient). A recipient whose local part or domain is empty, holds a ``/`` or a
NUL, or starts with a ``.`` gets no lookup (logged at LOGINFO): it could name a directory
outside the pattern's. A value a filter cannot use is logged (LOGWARN) and that filter uses
its argument or default instead. A file that exists but cannot be read is skipped and
logged at LOGERROR once for each distinct problem (``cannot read PATH: REASON``; at LOGINFO
for each further recipient that meets it), and again in full once it has been read in
between.

Config files: none. Notes: sets the recipient notes named above.

Differences from qpsmtpd HEAD: HEAD answers a ``user_config`` hook that other plugins ask
(``$rcpt->config(NAME)``) for any item; here the directory feeds the per-recipient settings
every content filter reads through the one lookup (no other plugin asks it directly).
"""

import os

from qpsmtpd_tx import policy
from qpsmtpd_tx.codes import DECLINED, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd_tx.plugin import Plugin, PluginError

DEFAULT_PATTERN = "/home/%u/.qpsmtpd"


def read_settings(directory, names):
    """``(values, errors)``: the value of each file of ``names`` found in ``directory`` (its
    first line that is not empty or a ``#`` comment), and ``{path: reason}`` of the files that
    exist but could not be read. Runs in a thread."""
    values, errors = {}, {}
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        values[name] = line
                        break
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            errors[path] = e.strerror or str(e)
    return values, errors


class UserConfig(Plugin):
    """Set recipient notes from the files of the recipient's own config directory."""

    #: sets recipient notes at RCPT (``qpsmtpd-tx notes`` asks it)
    notes_source = True

    def init(self, args):
        if len(args) > 1:
            raise PluginError("usage: user_config [PATTERN] (one directory pattern, got %r)"
                              % " ".join(args))
        self.pattern = args[0] if args else DEFAULT_PATTERN

    def directory(self, recipient):
        """The recipient's directory, or None if its address cannot safely name one."""
        user, host = recipient.user or "", (recipient.host or "").lower()
        for part in (user, host):
            if not part or "/" in part or "\0" in part or part.startswith("."):
                return None
        return (self.pattern.replace("%u", user).replace("%h", host)
                .replace("%a", "%s@%s" % (user, host)))

    def hook_rcpt(self, transaction, recipient, params):
        directory = self.directory(recipient)
        if directory is None:
            self.log(LOGINFO, "%s: no user config lookup for this address"
                     % recipient.format(), transaction)
            return DECLINED
        declared = policy.declared_settings(self.server)
        if not declared:
            return DECLINED
        d = self.server.run_blocking(read_settings, directory, sorted(declared))
        d.addCallback(self._found, transaction, recipient, directory, declared)
        return d

    def _found(self, result, transaction, recipient, directory, declared):
        values, errors = result
        self._log_problems(errors, directory, declared, transaction)
        for note, value in values.items():
            for path, setting in declared[note]:
                try:
                    setting.convert(value)
                except (TypeError, ValueError):
                    self.log(LOGWARN, "%s: %s=%s is not a valid value for plugin %s; it gets "
                             "the plugin's argument or default instead"
                             % (recipient.format(), note, value, path), transaction)
        recipient.notes.update(values)
        if values:
            self.log(LOGINFO, "%s: %s" % (recipient.format(), ", ".join(
                "%s=%s" % item for item in sorted(values.items()))), transaction)
        return DECLINED

    def _log_problems(self, errors, directory, declared, transaction):
        """Log the files of ``errors`` (``{path: reason}``), each problem once per file at
        LOGERROR; the other files of ``declared`` in ``directory`` have none (any more)."""
        for name in declared:
            path = os.path.join(directory, name)
            reason = errors.get(path)
            if reason is None:
                self.problem_over(path)
            else:
                self.log_once(path, LOGERROR, "cannot read %s: %s" % (path, reason),
                              transaction, again=LOGINFO)
