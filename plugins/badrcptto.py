"""badrcptto — refuse recipients listed in ``badrcptto`` (addresses, domains, patterns).

Old names: ``check_badrcptto`` (an alias of this plugin) and ``check_badrcptto_patterns``
(this plugin on its own file ``badrcptto_patterns``, see below).

At RCPT, the recipient is compared with each line of ``badrcptto`` in order; the first match
costs two points of karma and refuses that recipient. Recipients without a domain
(``<postmaster>``), relay clients and whitelisted hosts or senders are not checked. Load it
before ``rcpt_ok``, which accepts every local recipient.

Arguments: ``[loglevel N]`` (per-plugin log level: ``6``, ``LOGINFO``, ``+1``, ``-2``).

Config files:
  ``badrcptto``   one entry per line, optionally followed by whitespace and the reply text:
                    ``olduser@example.com``   that address (compared case-insensitively)
                    ``@old.example.com``      every address at that domain (not subdomains)
                    ``^[^@]*%``               a regular expression (Python ``re`` syntax): any
                                              entry holding one of ``/ ^ $ * + ! % ? \\`` is one.
                                              It is searched in ``user@domain``
                                              (lower-cased), case-insensitively; anchor it with
                                              ``^`` and ``$`` to match whole addresses.
                  An entry that is none of these (no ``@``) or a pattern that does not compile
                  stops start-up with the file and line. Patterns run without a time limit:
                  avoid nested repeats such as ``(a+)+``, which can backtrack for a very long
                  time (start-up warns about them).
                  Found after a SIGHUP, it fails the reload: the list in use stays, and the
                  file is logged once (LOGERROR), not at each use, until it changes.
  ``badrcptto_patterns``   (``check_badrcptto_patterns`` only) every line is a pattern,
                  optionally followed by whitespace and the reply text.

Notes: reads ``connection.relay_client``, connection note ``whitelisthost``, transaction note
``whitelistsender``; writes connection note ``karma`` (−2 on a match).

Replies: ``550 <the entry's text>`` if the line has one, else
``550 mail to <entry> not accepted here (#5.1.1)`` — the entry as written in the file
(``olduser@example.com``, ``@old.example.com`` or the pattern).

Differences from qpsmtpd 0.94, on purpose:
  - a line's reply text is sent (as qpsmtpd 1.0 does; 0.94 dropped it and answered
    ``mail to <entry> not accepted here``);
  - a pattern is used as written (0.94 lower-cased it first, which turned ``\\D`` into ``\\d``
    and ``\\S`` into ``\\s``);
  - an entry without ``@`` that is no pattern, a pattern that does not compile, or an argument
    other than ``loglevel`` stops start-up (0.94 logged an error at every RCPT, or died);
  - ``check_badrcptto_patterns`` answers a line without text with the reply above (the old
    plugin of that name sent the core's ``550 relaying denied``) and also spares whitelisted
    hosts and senders.
"""

from qpsmtpd_tx.codes import DECLINED, DENY, LOGDEBUG, LOGINFO
from qpsmtpd_tx.extend import plugin_module
from qpsmtpd_tx.plugin import Plugin

# The list format is badmailfrom's: parse and match with its code.
ListFile = plugin_module("badmailfrom").ListFile


class BadRcptTo(ListFile, Plugin):
    """Refuse recipients listed in badrcptto."""

    #: the config file read, and whether each of its lines is a pattern
    CONFIG = "badrcptto"
    ALL_PATTERNS = False

    def init(self, args):
        self.parse_kv_args(args, set())
        self.current_entries(None)  # a bad line stops start-up

    def hook_rcpt(self, transaction, recipient, params):
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, immune (relay client or whitelisted)", transaction)
            return DECLINED
        if not recipient.user or not recipient.host:
            self.log(LOGINFO, "skip, missing host or user", transaction)
            return DECLINED
        entries = self.current_entries(transaction)
        if not entries.entries:
            self.log(LOGDEBUG, "skip, empty config", transaction)
            return DECLINED
        hit = self.find(entries, recipient, transaction)
        if hit is None:
            return DECLINED
        entry, kind, _, reason = hit
        self.adjust_karma(transaction, -2)
        self.log(LOGINFO, "fail, %s match (%s)" % (kind, entry), transaction)
        return DENY, reason or "mail to %s not accepted here (#5.1.1)" % entry
