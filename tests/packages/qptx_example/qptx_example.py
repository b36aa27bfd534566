"""sender_tld — refuse senders whose domain ends in one of the given top-level domains.

Published by the package ``qptx-example`` (an example of a plugin from a package).

Arguments: the TLDs to refuse, e.g. ``sender_tld test invalid``.
Replies: ``550 mail from .TLD domains is refused`` for such a sender; otherwise the next
plugin decides. Config files: none.
"""

from qpsmtpd_tx.codes import DECLINED, DENY, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError


class SenderTld(Plugin):
    """Refuse senders from the top-level domains given as arguments."""

    def init(self, args):
        if not args:
            raise PluginError("name at least one top-level domain to refuse")
        self.refused = {arg.lower().lstrip(".") for arg in args}

    def hook_mail(self, transaction, sender, params):
        tld = (sender.host or "").lower().rpartition(".")[2]
        if tld in self.refused:
            self.log(LOGINFO, "refusing .%s sender" % tld, transaction)
            return DENY, "mail from .%s domains is refused" % tld
        return DECLINED
