"""domainkeys — refused at start-up: DomainKeys (RFC 4870) is obsolete; use ``dkim``.

DomainKeys was replaced by DKIM (RFC 4871) in 2007 and RFC 4870 is historic; senders no
longer sign with it, and the verifier qpsmtpd 0.94's plugin used (Mail::DomainKeys) is gone
from Debian. A ``plugins`` line naming ``domainkeys`` stops start-up with a message naming
the line and pointing to the ``dkim`` plugin, which verifies DKIM signatures (and signs).

Arguments (0.94's, all refused with the plugin): ``reject``, ``reject_type``, ``warn_only``.
Config files: none. Notes: none. Replies: none.

Intended difference from qpsmtpd 0.94: 0.94 loads it and checks DomainKeys signatures.
"""

from qpsmtpd_tx.plugin import Plugin, PluginError

REFUSAL = ("DomainKeys is obsolete since 2007 (RFC 4870, replaced by DKIM) and is not "
           "supported: replace this line with 'dkim' (qpsmtpd-tx plugins doc dkim)")


class DomainKeys(Plugin):
    """Refuses to load, pointing to ``dkim``."""

    def init(self, args):
        raise PluginError(REFUSAL)
