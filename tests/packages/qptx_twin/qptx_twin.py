"""twin — a plugin published under names other plugins have (tests only).

``sender_tld`` (also published by qptx-example) and ``rcpt_ok`` (a bundled plugin) are name
clashes; ``perl_only`` replaces a Perl plugin file of that name. Its HELP reply is
``214 twin from a package``.
"""

from qpsmtpd_tx.codes import OK
from qpsmtpd_tx.plugin import Plugin


class Twin(Plugin):
    """Answer HELP, to show that it was loaded."""

    def hook_help(self, transaction, rest):
        return OK, "twin from a package"
