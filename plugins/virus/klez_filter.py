"""virus/klez_filter — refuse messages carrying the Klez worm, by the shape of its attachment.

At data_post, a message of at least 60,000 bytes is looked at: within the first 41 lines of
its body, a ``Content-Type:`` line naming ``audio`` or ``application`` followed (on a later
line) by a line starting with ``TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQA`` (the base64 of a
Windows executable's header, as Klez sends itself) means Klez. The lines are read from the
spool in the server's thread pool; a line longer than 64 KiB counts as several.

Arguments: none (``loglevel`` only). Config files: none. Notes: none.

Replies:
  Klez found   ``552 Klez Virus Detected`` (DENY at data_post; qpsmtpd's text)
  otherwise    none (DECLINED)

Differences from qpsmtpd 0.94: an argument on the ``plugins`` line stops start-up (0.94
ignores it); very long lines are read in 64 KiB pieces.
"""

import re

from qpsmtpd_tx.codes import DECLINED, DENY, LOGINFO, LOGNOTICE
from qpsmtpd_tx.plugin import Plugin

#: smaller messages are not looked at (qpsmtpd's bound: Klez is always bigger)
MIN_SIZE = 60000
#: body lines looked at
MAX_LINES = 41
MAX_LINE = 65536
_PART_TYPE = re.compile(rb"Content-type:.*(?:audio|application)", re.IGNORECASE)
_EXECUTABLE = b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQA"
TEXT = "Klez Virus Detected"


def has_klez(body):
    """True if the first MAX_LINES lines of ``body`` (a binary file) look like Klez.
    Closes ``body``. Blocking: run it in a thread."""
    seen_part = False
    with body:
        for _ in range(MAX_LINES):
            line = body.readline(MAX_LINE)
            if not line:
                return False
            if _PART_TYPE.match(line):
                seen_part = True
            elif seen_part and line.startswith(_EXECUTABLE):
                return True
    return False


class KlezFilter(Plugin):
    """Refuse Klez-shaped messages at data_post."""

    def hook_data_post(self, transaction):
        if transaction.data_size < MIN_SIZE:
            return DECLINED
        body = transaction.body.open()
        return self.server.run_blocking(has_klez, body).addCallback(self._answer, transaction)

    def _answer(self, found, transaction):
        if found:
            self.log(LOGNOTICE, "fail, Klez found", transaction)
            return DENY, TEXT
        self.log(LOGINFO, "pass", transaction)
        return DECLINED
