"""Client text made safe to show in a log line, a header field or an SMTP reply.

A client controls the bytes of its command lines and SASL answers: a CR, LF, NUL or ESC in
them must not split a log line or a header, move a terminal's cursor, or come back in a reply.
:func:`printable` is the one place that escapes such text; :func:`is_printable` tells whether
there is anything to escape (where the grammar forbids such characters, the command is refused
instead).
"""

import re

#: C0 and C1 controls, DEL, the Unicode line and paragraph separators (``str.splitlines``
#: breaks there), and the surrogate escapes that stand for bytes that were not UTF-8.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff]")


def _escape(match):
    char = ord(match.group())
    if 0xDC80 <= char <= 0xDCFF:
        return "\\x%02x" % (char - 0xDC00)
    if char <= 0xFF:
        return "\\x%02x" % char
    return "\\u%04x" % char


def printable(text, limit=None):
    """``text`` with every unsafe character written as ``\\xNN`` (``\\uNNNN``).

    With ``limit``, at most that many characters of ``text`` are kept and ``...`` marks a cut,
    so that a long client string cannot make a reply or a log line long.
    """
    if text is None:
        return ""
    if text.isascii() and text.isprintable() and (limit is None or len(text) <= limit):
        return text      # the usual text: printable ASCII is safe (and no regex run is needed)
    cut = limit is not None and len(text) > limit
    if cut:
        text = text[:limit]
    text = _UNSAFE.sub(_escape, text)
    return text + "..." if cut else text


def is_printable(text):
    """True if :func:`printable` would leave ``text`` unchanged (no limit applied)."""
    return (text.isascii() and text.isprintable()) or _UNSAFE.search(text) is None
