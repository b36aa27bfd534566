"""domainkeys — loads, logs that it is disabled, and checks nothing: DomainKeys (RFC 4870) is
obsolete; use ``dkim``.

DomainKeys was replaced by DKIM (RFC 4871) in 2007 and RFC 4870 is historic; senders no
longer sign with it, and the verifier qpsmtpd 0.94's plugin used (Mail::DomainKeys) is gone
from Debian. On Debian, Perl qpsmtpd 0.94 itself therefore loads this plugin disabled: its
``register`` warns "skip: plugin disabled, could not load Mail::DomainKeys::Message" and adds
no hook. This plugin does the same, so that a ``plugins`` file written for 0.94 (qpsmtpd's
own sample config loads ``domainkeys``) starts unchanged: at start-up it logs an error naming
the line's replacement, ``dkim`` (which verifies DKIM signatures and signs), and registers
no hook.

Arguments (0.94's, accepted and unused): ``reject``, ``reject_type``, ``warn_only``.
Config files: none. Notes: none. Replies: none.
"""

from qpsmtpd_tx.codes import LOGERROR
from qpsmtpd_tx.plugin import Plugin

#: the start-up message (also in the tests)
DISABLED = ("disabled: DomainKeys is obsolete since 2007 (RFC 4870, replaced by DKIM) and is "
            "not checked: replace this line with 'dkim' (qpsmtpd-tx plugins doc dkim)")


class DomainKeys(Plugin):
    """Logs that it is disabled, pointing to ``dkim``; registers no hook (as 0.94 on Debian)."""

    KNOWN = ("reject", "reject_type", "warn_only")

    def init(self, args):
        self.parse_kv_args(list(args), self.KNOWN)
        if not self.server.check_only:
            self.log(LOGERROR, DISABLED)
