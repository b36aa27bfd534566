"""check_badrcptto_patterns — refuse recipients matching a pattern in ``badrcptto_patterns``.

The old plugin of this name (merged into ``badrcptto`` in 2012) read its own file, in which
every line is a pattern. This is ``badrcptto`` reading that file: same checks, karma and
replies; see ``qpsmtpd-tx plugins doc badrcptto``. New configurations should put the patterns
into ``badrcptto`` and load ``badrcptto``.

Arguments: ``[loglevel N]`` (per-plugin log level: ``6``, ``LOGINFO``, ``+1``, ``-2``).

Config files:
  ``badrcptto_patterns``   one regular expression (Python ``re`` syntax) per line, optionally
                           followed by whitespace and the reply text; searched in the
                           recipient's ``user@domain`` (lower-cased), case-insensitively:
                             ``[!%]   No bang paths or percent hacks here``
                           A pattern that does not compile stops start-up with the file and
                           line.

Replies: ``550 <the line's text>``, or ``550 mail to <pattern> not accepted here (#5.1.1)``.

Differences from the old plugin, on purpose: a line without text gets the reply above (the old
one sent the core's ``550 relaying denied``); whitelisted hosts and senders are spared as well
as relay clients; karma −2 per refused recipient; matching is case-insensitive.
"""

from qpsmtpd_tx.extend import isa_plugin

BadRcptTo = isa_plugin("badrcptto")


class CheckBadRcptToPatterns(BadRcptTo):
    """badrcptto on the file badrcptto_patterns, every line a pattern."""

    CONFIG = "badrcptto_patterns"
    ALL_PATTERNS = True
