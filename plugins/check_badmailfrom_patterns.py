"""check_badmailfrom_patterns — refuse senders matching a pattern in ``badmailfrom_patterns``.

The old plugin of this name (merged into ``badmailfrom`` in 2012) read its own file, in which
every line is a pattern. This is ``badmailfrom`` reading that file: same arguments, same
checks and notes; see ``qpsmtpd-tx plugins doc badmailfrom``. New configurations should put
the patterns into ``badmailfrom`` and load ``badmailfrom``.

Arguments: as ``badmailfrom``: ``[reject 0|1|naughty] [reject_type TYPE] [loglevel N]``.

Config files:
  ``badmailfrom_patterns``   one regular expression (Python ``re`` syntax) per line,
                             optionally followed by whitespace and the reply text; searched
                             in the sender's ``user@domain`` (lower-cased), case-insensitively:
                               ``^streamsendbouncer@.*\\.mailengine1\\.com$   No VERP, thanks``
                             A pattern that does not compile stops start-up with the file and
                             line.

Replies: the line's text, or ``550 Your envelope sender is in my badmailfrom_patterns list``.

Differences from the old plugin, on purpose: it rejects at MAIL (the old one let MAIL pass and
refused every RCPT), honours ``reject`` and karma, spares relay clients and whitelisted
senders, and matches case-insensitively.
"""

from qpsmtpd_tx.extend import isa_plugin

BadMailFrom = isa_plugin("badmailfrom")


class CheckBadMailFromPatterns(BadMailFrom):
    """badmailfrom on the file badmailfrom_patterns, every line a pattern."""

    CONFIG = "badmailfrom_patterns"
    ALL_PATTERNS = True
    DEFAULT_REASON = "Your envelope sender is in my badmailfrom_patterns list"
