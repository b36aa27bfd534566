"""badmailfromto — refuse given sender/recipient pairs, as if the recipient did not exist.

For harassment cases: mail from one sender to one recipient is refused at RCPT, with the reply
a non-existent recipient would get, so the sender does not learn that it is blocked. Other
senders reach that recipient, and that sender reaches everyone else.

Arguments: ``[loglevel N]`` (per-plugin log level: ``6``, ``LOGINFO``, ``+1``, ``-2``).

Config files:
  ``badmailfromto``   one pair per line: the sender, whitespace (qpsmtpd wanted a TAB; any
                      whitespace will do), the recipient, and optionally a comment after more
                      whitespace. Each side is an address (``user@example.com``) or a whole
                      domain (``@example.com``), compared case-insensitively:
                        ``stalker@example.net   victim@example.com``
                        ``@spammy.example      sales@example.com``
                      A line without both sides, or a side without ``@``, stops start-up with
                      the file and line.

The null sender, a sender or recipient without a domain are never matched.

Notes: transaction note ``badmailfromto_senders`` — the sender entries of ``badmailfromto``
that match this transaction's sender (set at MAIL, read at RCPT). qpsmtpd used the note
``badmailfromto``, which is where the core records this plugin's return codes.

Replies: ``550 mail to <recipient> not accepted here`` (the recipient lower-cased).

Differences from qpsmtpd 0.94, on purpose:
  - every pair whose sender side matches is honoured (0.94 remembered only the last matching
    sender line, so with several matching lines some pairs never applied);
  - the two sides may be separated by any whitespace (0.94 needed a TAB and silently ignored
    other lines);
  - the recipient side may be ``@domain`` as well;
  - a malformed line stops start-up (0.94 logged it at every MAIL); found after a SIGHUP, it
    fails the reload: the pairs in use stay, the file logged once at LOGERROR until it changes;
  - the transaction note is ``badmailfromto_senders`` (see Notes).
"""

from qpsmtpd_tx.codes import DECLINED, DENY, LOGDEBUG, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError


def side_matches(entry, address, host):
    """True if ``entry`` (lower case: ``user@host`` or ``@host``) covers ``address``."""
    return entry == ("@" + host if entry.startswith("@") else address)


class Pairs:
    """The parsed ``badmailfromto`` lines: ``(sender entry, recipient entry)``, lower case."""

    def __init__(self, lines):
        self.pairs = []
        for line in lines:
            words = line.text.split()
            if len(words) < 2:
                raise PluginError("%s:%d: need a sender and a recipient, got %r"
                                  % (line.path, line.lineno, line.text))
            for word in words[:2]:
                if "@" not in word:
                    raise PluginError("%s:%d: %r is not user@host or @host"
                                      % (line.path, line.lineno, word))
            self.pairs.append((words[0].lower(), words[1].lower()))


class BadMailFromTo(Plugin):
    """Refuse listed sender → recipient pairs at RCPT."""

    def init(self, args):
        self.parse_kv_args(args, set())
        self._load()  # a bad line stops start-up

    def _load(self, transaction=None):
        """The pairs (parsed again if the file changed); after a bad edit, the ones before it."""
        return self.parsed_config("badmailfromto", Pairs, transaction, lines_only=True).pairs

    def hook_mail(self, transaction, sender, params):
        pairs = self._load(transaction)
        if not pairs:
            self.log(LOGDEBUG, "skip, empty list", transaction)
            return DECLINED
        if sender is None or sender.is_null or not sender.user or not sender.host:
            self.log(LOGDEBUG, "skip, null sender or missing user or host", transaction)
            return DECLINED
        host = sender.host.lower()
        address = sender.user.lower() + "@" + host
        listed = sorted({from_ for from_, _ in pairs if side_matches(from_, address, host)})
        if listed:
            transaction.notes["badmailfromto_senders"] = listed
        return DECLINED

    def hook_rcpt(self, transaction, recipient, params):
        listed = transaction.notes.get("badmailfromto_senders")
        if not listed:
            self.log(LOGDEBUG, "pass, sender not listed", transaction)
            return DECLINED
        if not recipient.user or not recipient.host:
            return DECLINED
        host = recipient.host.lower()
        address = recipient.user.lower() + "@" + host
        for from_, to in self._load(transaction):
            if from_ in listed and side_matches(to, address, host):
                self.log(LOGINFO, "fail, %s to %s is listed" % (from_, to), transaction)
                return DENY, "mail to %s not accepted here" % address
        self.log(LOGDEBUG, "pass, recipient not listed", transaction)
        return DECLINED
