"""karma_tool — not a plugin: qpsmtpd's command-line tool for karma's database; use ``qpsmtpd-tx karma``.

qpsmtpd 0.94 ships ``karma_tool`` among its plugins, but it is a script: named in
``plugins``, Perl qpsmtpd runs it while loading, prints its usage and exits without
serving. Here such a line stops start-up with a message naming the command that does its
work: ``qpsmtpd-tx karma list|search|capture|release|prune`` (see ``qpsmtpd-tx karma
--help`` and the ``karma`` plugin).

Arguments, config files, replies: none.
"""

from qpsmtpd_tx.plugin import Plugin, PluginError


class KarmaTool(Plugin):
    """Refuses to load, pointing to ``qpsmtpd-tx karma``."""

    def init(self, args):
        """Always refuse, naming the command to use."""
        raise PluginError("karma_tool is qpsmtpd's command-line tool for karma's database, not "
                          "a plugin: remove the line and run `qpsmtpd-tx karma list|search|"
                          "capture|release|prune` instead")
