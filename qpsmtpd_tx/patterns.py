"""Regular expressions written by the operator in config files (badhelo, badmailfrom, rcpt_regexp…)."""

import re
import warnings

from qpsmtpd_tx.plugin import PluginError

#: an unbounded repeat of a group that itself holds an unbounded repeat: ``(a+)+``
NESTED_REPEAT = re.compile(
    r"\((?:[^()\\]|\\.)*(?:[*+]|\{\d*,\})(?:[^()\\]|\\.)*\)(?:[*+]|\{\d*,\})")


def compile_config_pattern(pattern, line, warn=None):
    """Compile ``pattern`` from config line ``line`` (a ConfigLine), case-insensitively.

    A pattern Python cannot compile (Perl's ``[[:alpha:]]`` included, which Python only warns
    about) raises PluginError naming the file and line. Python's ``re`` has no time limit, so a
    nested unbounded repeat such as ``(a+)+``, which can backtrack for a very long time, is
    reported through ``warn(message)`` at start-up.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            regex = re.compile(pattern, re.IGNORECASE)
    except (re.error, FutureWarning) as e:
        raise PluginError("%s:%d: bad regular expression %r: %s"
                          % (line.path, line.lineno, pattern, e))
    if warn is not None and NESTED_REPEAT.search(pattern):
        warn("%s:%d: pattern %r repeats a repeat and may backtrack for a very long time"
             % (line.path, line.lineno, pattern))
    return regex
