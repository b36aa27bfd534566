"""Checking plugin arguments: yes/no words, positive numbers, log levels, reject settings.

Each function takes the argument's name and its text from a ``plugins`` line and returns the
value, or raises :class:`qpsmtpd_tx.plugin.PluginError` with a message naming the argument
(start-up then fails, naming the line).
"""

import math

from qpsmtpd_tx import codes
from qpsmtpd_tx.plugin import PluginError

_TRUE = ("1", "yes", "true", "on")
_FALSE = ("0", "no", "false", "off")


def boolean(name, value, expected="0 or 1"):
    """``1/yes/true/on`` → True, ``0/no/false/off`` → False (any case); else PluginError.

    ``expected`` is how the error message describes the accepted words.
    """
    word = value.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise PluginError("%s must be %s, got %r" % (name, expected, value))


def positive(name, value, kind=float):
    """``value`` as a ``kind`` (float or int) greater than 0 and finite; else PluginError."""
    try:
        number = kind(value)
    except ValueError:
        number = 0
    if not number > 0 or (kind is float and math.isinf(number)):
        raise PluginError("%s must be a positive number, got %r" % (name, value))
    return number


def log_level(word):
    """A log level argument as a number: ``0``–``7`` (larger numbers mean 7) or a name
    (``LOGINFO``, or ``INFO`` without the prefix); else PluginError."""
    if word.isdigit():
        return min(int(word), codes.LOGDEBUG)
    try:
        return codes.parse_log_level(word)
    except ValueError:
        raise PluginError("unknown log level %r" % (word,))


REJECT_TYPES = ("perm", "hard", "temp", "soft", "disconnect", "temp_disconnect")


def reject_settings(arguments, default_reject="1", default_type="perm"):
    """qpsmtpd's ``reject 0|1|naughty`` and ``reject_type`` arguments, checked:
    ``(reject, reject_type)``; else PluginError."""
    reject = arguments.get("reject", default_reject)
    if reject not in ("0", "1", "naughty"):
        raise PluginError("reject must be 0, 1 or naughty, got %r" % (reject,))
    reject_type = arguments.get("reject_type", default_type)
    if reject_type.lower() not in REJECT_TYPES:
        raise PluginError("reject_type must be one of %s, got %r"
                          % ("|".join(REJECT_TYPES), reject_type))
    return reject, reject_type
