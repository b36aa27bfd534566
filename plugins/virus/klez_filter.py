"""virus/klez_filter — refuse messages carrying the Klez worm, by the shape of its attachment.

At data_post, a message of at least 60,000 bytes is looked at: within the first 41 lines of
its body, a ``Content-Type:`` line naming ``audio`` or ``application`` followed (on a later
line) by a line starting with ``TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQA`` (the base64 of a
Windows executable's header, as Klez sends itself) means Klez. The lines are read from the
spool in the server's thread pool; a line longer than 64 KiB counts as several.

Arguments: ``key value`` pairs, all optional:
  ``action reject|tag``  what to do with a Klez-shaped message: ``reject`` (default) refuses
                         it; ``tag`` accepts it with ``X-Virus-Found: Yes`` and
                         ``X-Virus-Details: Klez`` (appended). The per-recipient setting
                         ``virus_action``.
  ``loglevel LEVEL``     per-plugin log level.

Per-recipient setting (recipient note, see README "Per-recipient policy"):
  ``virus_action``       ``reject`` or ``tag``; strictest = ``reject``. With config
                         ``recipient_policy split`` (default) the message is looked at once;
                         a Klez-shaped one is refused for the ``reject`` recipients (the
                         message goes on for the others, see README "Per-recipient policy")
                         and the copy of the ``tag`` recipients gets the headers above.

Config files: none. Notes: transaction note ``virus`` = ``Klez`` when found.

Replies:
  Klez found, ``virus_action`` reject   ``552 Klez Virus Detected`` (DENY at data_post;
                                        qpsmtpd's text)
  otherwise                             none (DECLINED)

Differences from qpsmtpd 0.94: 0.94 takes no arguments (and ignores any); here an unknown
argument stops start-up, and ``action``/``virus_action`` may tag instead of refusing; very
long lines are read in 64 KiB pieces.
"""

import re

from qpsmtpd_tx.codes import DECLINED, LOGINFO, LOGNOTICE
from qpsmtpd_tx.plugin import Plugin
from qpsmtpd_tx.scanner import action_argument, decide_virus, virus_setting

#: smaller messages are not looked at (qpsmtpd's bound: Klez is always bigger)
MIN_SIZE = 60000
#: body lines looked at
MAX_LINES = 41
MAX_LINE = 65536
_PART_TYPE = re.compile(rb"Content-type:.*(?:audio|application)", re.IGNORECASE)
_EXECUTABLE = b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQA"
TEXT = "Klez Virus Detected"
NAME = "Klez"


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
    """Refuse (or tag) Klez-shaped messages at data_post, per recipient."""

    recipient_settings = (virus_setting("reject"),)

    def init(self, args):
        action_argument(self.parse_kv_args(args, {"action"}))

    def hook_data_post(self, transaction):
        if transaction.data_size < MIN_SIZE:
            return DECLINED
        body = transaction.body.open()
        return self.server.run_blocking(has_klez, body).addCallback(self._answer, transaction)

    def _answer(self, found, transaction):
        if found:
            self.log(LOGNOTICE, "fail, Klez found", transaction)
            transaction.notes["virus"] = NAME
            return decide_virus(self, transaction, TEXT,
                                [("X-Virus-Found", "Yes"), ("X-Virus-Details", NAME)])
        self.log(LOGINFO, "pass", transaction)
        return DECLINED
