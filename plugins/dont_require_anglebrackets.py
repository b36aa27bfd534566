"""dont_require_anglebrackets — accept MAIL FROM / RCPT TO addresses written without ``<>``.

RFC 5321 wants the path in angle brackets (``MAIL FROM:<user@example.com>``); some old or
broken clients send ``MAIL FROM:user@example.com``, which the core refuses with
``501 could not parse your mail from command`` / ``501 could not parse recipient``. This plugin
puts the brackets around such an address before that check, and lowers the connection's
karma by 2 each time, since mostly spamware does this.

Load it before the plugins that look at the sender or recipients.

Arguments: ``[loglevel N]`` (per-plugin log level: ``6``, ``LOGINFO``, ``+1``, ``-2``).

Config files: none.

Notes: writes connection note ``karma`` (−2 for each address it had to wrap).

Replies: none of its own; the address is then checked as usual.

Difference from qpsmtpd 0.94, on purpose: an address that already has its brackets is left to
the next ``mail_pre``/``rcpt_pre`` plugin (DECLINED); 0.94 answered OK with it unchanged, which
stopped any later plugin of those hooks from running.
"""

from qpsmtpd_tx.codes import DECLINED, LOGINFO, OK
from qpsmtpd_tx.plugin import Plugin


class DontRequireAnglebrackets(Plugin):
    """Wrap bare MAIL/RCPT addresses in angle brackets (karma −2)."""

    def init(self, args):
        self.parse_kv_args(args, set())

    def _wrap(self, transaction, path, what):
        if path is None or (path.startswith("<") and path.endswith(">")):
            return DECLINED
        self.adjust_karma(transaction, -2)
        self.log(LOGINFO, "fail, added %s angle brackets" % what, transaction)
        return OK, "<%s>" % path

    def hook_mail_pre(self, transaction, path, params):
        return self._wrap(transaction, path, "MAIL")

    def hook_rcpt_pre(self, transaction, path, params):
        return self._wrap(transaction, path, "RCPT")
