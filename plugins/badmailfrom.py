"""badmailfrom — refuse envelope senders listed in ``badmailfrom`` (addresses, domains, patterns).

Old names: ``check_badmailfrom`` (an alias of this plugin) and ``check_badmailfrom_patterns``
(this plugin on its own file ``badmailfrom_patterns``, see below).

At MAIL, the sender is compared with each line of ``badmailfrom`` in order; the first match
costs one point of karma and rejects the sender (see ``reject``). The null sender ``<>``, a
sender without a domain, relay clients and whitelisted hosts or senders are not checked.

Arguments: ``[reject 0|1|naughty] [reject_type TYPE] [loglevel N]``
  ``reject``       ``1`` (default) reject at MAIL; ``0`` only log ("fail, tolerated");
                   ``naughty`` leave the rejection to the ``naughty`` plugin.
  ``reject_type``  ``perm``/``hard`` (default: 550), ``temp``/``soft`` (450),
                   ``disconnect`` (550 and close), ``temp_disconnect`` (421 and close).
  ``loglevel``     per-plugin log level (``6``, ``LOGINFO``, ``+1``, ``-2``).

Config files:
  ``badmailfrom``   one entry per line, optionally followed by whitespace and the reply text:
                      ``spammer@example.com``   that address (compared case-insensitively)
                      ``@example.net``          every address at that domain (not subdomains)
                      ``^bounce-.*@.*\\.example\\.org$   No VERP here``
                                                a regular expression (Python ``re`` syntax):
                                                any entry holding one of ``/ ^ $ * + ! % ? \\``
                                                is one. It is searched in ``user@domain``
                                                (lower-cased), case-insensitively; anchor it
                                                with ``^`` and ``$`` to match whole addresses.
                    An entry that is none of these (no ``@``) or a pattern that does not
                    compile stops start-up with the file and line. Patterns run without a time
                    limit: avoid nested repeats such as ``(a+)+``, which can backtrack for a
                    very long time (start-up warns about them).
                    Found after a SIGHUP, it fails the reload: the list in use stays, and the
                    file is logged once (LOGERROR), not at each use, until it changes.
  ``badmailfrom_patterns``   (``check_badmailfrom_patterns`` only) every line is a pattern,
                    optionally followed by whitespace and the reply text.

Notes: reads ``connection.relay_client``, connection note ``whitelisthost``, transaction note
``whitelistsender``; writes connection note ``karma`` (−1 on a match) and, with
``reject naughty``, ``naughty`` / ``naughty_reject_type``.

Replies: the entry's text, or ``550 Your envelope sender is in my badmailfrom list``
(``check_badmailfrom_patterns``: ``… in my badmailfrom_patterns list``).

Differences from qpsmtpd 0.94, on purpose:
  - patterns match case-insensitively (0.94: case-sensitively against the lower-cased
    address, so a pattern with a capital letter never matched);
  - an entry without ``@`` that is no pattern, a pattern that does not compile, or a bad
    argument stops start-up (0.94 warned at every MAIL, or died at the first bad pattern);
  - ``check_badmailfrom_patterns`` rejects at MAIL with this plugin's rules (``reject``,
    karma); the old plugin of that name refused every RCPT of the transaction instead, and
    did not spare relay clients.
"""

import re

from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGINFO, LOGWARN
from qpsmtpd_tx.patterns import compile_config_pattern
from qpsmtpd_tx.plugin import Plugin, PluginError

REJECT_VALUES = ("0", "1", "naughty")
REJECT_TYPES = ("perm", "hard", "temp", "soft", "disconnect", "temp_disconnect")

#: an entry holding one of these is a pattern (as in qpsmtpd)
PATTERN_CHARS = re.compile(r"[/^$*+!%?\\]")


class Entries:
    """Parsed list lines: ``(entry, kind, value, reason)`` with kind address, host or pattern."""

    def __init__(self, lines, all_patterns, warn):
        self.entries = []
        for line in lines:
            parts = line.text.split(None, 1)
            entry, reason = parts[0], (parts[1] if len(parts) > 1 else None)
            if all_patterns or PATTERN_CHARS.search(entry):
                value = compile_config_pattern(entry, line, warn)
                kind = "pattern"
            elif "@" not in entry:
                raise PluginError("%s:%d: %r is not user@host, @host or a regular expression"
                                  % (line.path, line.lineno, entry))
            elif entry.startswith("@"):
                kind, value = "host", entry[1:].lower()
            else:
                kind, value = "address", entry.lower()
            self.entries.append((entry, kind, value, reason))

    def match(self, address, host):
        """The first entry matching ``address`` (``user@host``, lower case), or None."""
        for item in self.entries:
            entry, kind, value, reason = item
            if kind == "pattern":
                if value.search(address):
                    return item
            elif (host if kind == "host" else address) == value:
                return item
        return None


class ListFile:
    """Mixin for a plugin whose list is config file ``CONFIG`` (this plugin's format), parsed
    again when it changes (badmailfrom, badrcptto and their ``_patterns`` forms)."""

    #: the config file read, and whether each of its lines is a pattern
    CONFIG = None
    ALL_PATTERNS = False

    def current_entries(self, transaction):
        """The list (parsed again if the file changed; at start-up a bad line raises
        PluginError); after a bad edit of the file, the previous one (logged once)."""
        return self.parsed_config(self.CONFIG, self._parse, transaction, lines_only=True)

    def _parse(self, lines):
        return Entries(lines, self.ALL_PATTERNS, lambda m: self.log(LOGWARN, m))

    def find(self, entries, address, transaction):
        """The entry matching ``address`` (user and host, any case), or None (logged: pass)."""
        host = address.host.lower()
        hit = entries.match(address.user.lower() + "@" + host, host)
        if hit is None:
            self.log(LOGINFO, "pass", transaction)
        return hit


class BadMailFrom(ListFile, Plugin):
    """Reject senders listed in badmailfrom."""

    #: the config file read, whether each of its lines is a pattern, the default reply
    CONFIG = "badmailfrom"
    ALL_PATTERNS = False
    DEFAULT_REASON = "Your envelope sender is in my badmailfrom list"

    def init(self, args):
        options = self.parse_kv_args(args, {"reject", "reject_type"}, {"reject": "1"})
        if options["reject"] not in REJECT_VALUES:
            raise PluginError("reject must be 0, 1 or naughty, not %r" % options["reject"])
        reject_type = options.get("reject_type")
        if reject_type is not None and reject_type.lower() not in REJECT_TYPES:
            raise PluginError("reject_type must be one of %s, not %r"
                              % ("|".join(REJECT_TYPES), reject_type))
        self.reject = options["reject"]
        self.reject_type = reject_type
        self.current_entries(None)  # a bad line stops start-up

    def hook_mail(self, transaction, sender, params):
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, immune (relay client or whitelisted)", transaction)
            return DECLINED
        entries = self.current_entries(transaction)
        if not entries.entries:
            self.log(LOGDEBUG, "skip, empty list", transaction)
            return DECLINED
        if sender is None or sender.is_null:
            self.log(LOGDEBUG, "skip, null sender", transaction)
            return DECLINED
        if not sender.user or not sender.host:
            self.log(LOGDEBUG, "skip, missing user or host", transaction)
            return DECLINED
        hit = self.find(entries, sender, transaction)
        if hit is None:
            return DECLINED
        entry, kind, _, reason = hit
        self.adjust_karma(transaction, -1)
        return self.get_reject(transaction, reason or self.DEFAULT_REASON,
                               "%s match (%s)" % (kind, entry))
