"""loop — refuse a message that has passed through too many hops (a mail loop).

Counts the message's ``Received`` and ``Delivered-To`` header fields at the end of DATA
(``data_post``), the way qmail-smtpd does. The count includes the Received field this server
has just added.

Arguments: ``[N]`` or ``[max_hops N]``
  ``N``  the number of hops (Received plus Delivered-To fields) at which a message is refused;
         a whole number, default 100 (qmail-smtpd's figure). ``0`` also means 100, as in
         qpsmtpd.

Per-recipient setting (recipient note, README "Per-recipient policy"): ``loop_max_hops``
(a whole number above 0) replaces N for that recipient; strictest = the lowest. With
``recipient_policy split`` the message is refused for the recipients whose limit it reaches
and goes on for the others.

Config files: none. Notes: none.

Replies: ``552 Too many hops (#5.4.6)`` when the count is N or more (qpsmtpd's DSN text for
"routing loop"); otherwise the plugin declines.

The old name ``check_loop`` (Debian's default ``plugins`` file) is an alias.

Differences from qpsmtpd 0.94, on purpose: a count that is not a whole number, or extra
arguments, stop start-up (qpsmtpd logged a warning and used 100); the ``max_hops N`` form is
accepted besides the bare number.
"""

from qpsmtpd_tx.codes import DECLINED, DENY, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.policy import Setting

DEFAULT_MAX_HOPS = 100
TOO_MANY_HOPS = "Too many hops (#5.4.6)"
USAGE = "usage: loop [N] or loop [max_hops N]"


def max_hops(text):
    """A ``loop_max_hops`` note: a whole number above 0 (ValueError otherwise)."""
    value = int(str(text).strip())
    if value <= 0:
        raise ValueError(text)
    return value


class Loop(Plugin):
    """DENY messages with max_hops or more Received + Delivered-To fields."""

    def init(self, args):
        args = list(args)
        if args and args[0] == "max_hops":
            args = args[1:]
            if not args:
                raise PluginError("max_hops needs a value; " + USAGE)
        if len(args) > 1:
            raise PluginError("too many arguments %r; %s" % (" ".join(args), USAGE))
        self.max_hops = DEFAULT_MAX_HOPS
        if args:
            if not args[0].isdigit():
                raise PluginError("max_hops must be a whole number, got %r" % (args[0],))
            self.max_hops = int(args[0]) or DEFAULT_MAX_HOPS
        self.recipient_settings = (Setting("loop_max_hops", None, self.max_hops, max_hops, min),)

    def hook_data_post(self, transaction):
        header = transaction.header
        if header is None:
            return DECLINED
        hops = header.count("Received") + header.count("Delivered-To")
        results = []
        for values, recipients in self.recipient_groups(transaction):
            limit = values["loop_max_hops"]
            if hops >= limit:
                self.log(LOGINFO, "fail, %d hops (max %d)" % (hops, limit), transaction)
                results.append((recipients, (DENY, TOO_MANY_HOPS)))
            else:
                results.append((recipients, DECLINED))
        return self.per_recipient_result(transaction, results)
