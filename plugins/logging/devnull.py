"""logging/devnull — discard every log line.

List it in the ``logging`` config file. Because any logging plugin replaces the built-in
stderr logger, this silences the server completely; and since it asks for no level at all,
no log line is even formatted.

Arguments: none. Config files: none. Notes: none. Replies: none.
"""

from qpsmtpd_tx.codes import DECLINED
from qpsmtpd_tx.plugin import Plugin


class DevNull(Plugin):
    """Swallow all log lines."""

    #: read by the server: below every level, so the server skips logging altogether
    log_threshold = -1

    def hook_logging(self, transaction, level, hook, plugin_name, message):
        return DECLINED
