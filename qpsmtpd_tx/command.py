"""Parsing of SMTP command lines and their arguments, with qpsmtpd 0.94's rules and reply texts.

The functions return plain values or raise :class:`CommandSyntaxError`, whose message is the
text of the ``501`` reply to send. Line endings must already be stripped.

MAIL and RCPT are parsed in two steps, as in qpsmtpd, so that ``mail_pre``/``rcpt_pre``
plugins can rewrite the path in between: :func:`parse_mail_from` / :func:`parse_rcpt_to` split
the argument into the raw path and the ESMTP parameters, then :func:`sender_address` /
:func:`recipient_address` require angle brackets and build the :class:`Address`.
"""

import re

from qpsmtpd_tx.address import Address

_VERB = re.compile(r"[A-Za-z0-9_]{1,12}")
_SPACES = re.compile(r" +")
_FROM = re.compile(r"from:\s*", re.IGNORECASE | re.ASCII)
_TO = re.compile(r"to:\s*", re.IGNORECASE | re.ASCII)
_WHITESPACE_RUNS = re.compile(r"(\s+)", re.ASCII)
_WHITESPACE = " \t\n\r\f\v"
# RFC 5321 esmtp-value: printable ASCII but "=" (no SP, controls, DEL or 8-bit: no SMTPUTF8)
_PARAM = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?")
_ANY_WHITESPACE = re.compile(r"\s", re.ASCII)
_BRACKETED = re.compile(r"<.*>")
#: valid verbs known without a regex match (the usual ones)
_COMMON_VERBS = frozenset(["helo", "ehlo", "mail", "rcpt", "data", "rset", "noop", "quit",
                           "vrfy", "help", "auth", "starttls"])


class CommandSyntaxError(ValueError):
    """A command's arguments do not parse; ``message`` is the text of the 501 reply."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def split_command(line):
    """Split a command line into ``(verb, rest, valid)``.

    The line is split at the first run of spaces. ``verb`` is lower-cased (as 0.94 hands it
    to ``unrecognized_command``); ``rest`` is None when the line has no space at all;
    ``valid`` is False unless the verb is 1 to 12 ASCII word characters. A line starting
    with a space has an empty, invalid verb.
    """
    verb, space, rest = line.partition(" ")
    verb = verb.lower()
    rest = rest.lstrip(" ") if space else None
    return verb, rest, verb in _COMMON_VERBS or bool(_VERB.fullmatch(verb))


def parse_helo(rest):
    """``HELO``/``EHLO`` argument → ``(host, extra_words)``; host is None when missing."""
    if rest is None:
        return None, []
    words = _SPACES.split(rest)
    while words and words[-1] == "":
        words.pop()
    if not words:
        return None, []
    return words[0] or None, words[1:]


def _split_params(line):
    """Peel ``KEYWORD[=VALUE]`` tokens off the end of ``line``: ``(path, params)``.

    Only whitespace-preceded tokens are peeled, so the first word always stays in the path,
    even when it looks like a parameter (``user=name@example.net``).
    """
    parts = _WHITESPACE_RUNS.split(line.rstrip(_WHITESPACE))
    peeled = []
    while len(parts) > 1:
        m = _PARAM.fullmatch(parts[-1])
        if not m:
            break
        peeled.append(m.groups())
        del parts[-2:]
    path = "".join(parts)
    # What is left is the path; an "@" followed later by whitespace means a bad parameter.
    at = path.find("@")
    if at >= 0 and _ANY_WHITESPACE.search(path, at + 1):
        raise CommandSyntaxError("Syntax error in parameters")
    params = {}
    for keyword, value in reversed(peeled):
        params[keyword.lower()] = value
    return path, params


def _parse_path_and_params(rest, prefix):
    if rest is None:
        return None, {}
    m = prefix.match(rest)
    if not m:
        raise CommandSyntaxError("Syntax error in command")
    return _split_params(rest[m.end():])


def parse_mail_from(rest):
    """``MAIL`` argument (``FROM:<a@b> SIZE=10``) → ``(path, params)``.

    ``path`` is the raw path string (brackets not required here); an empty one becomes
    ``<>``. ``params`` maps lower-cased keywords to their value (None without ``=``).
    ``rest`` None (no argument at all) gives ``(None, {})``, refused by :func:`sender_address`.
    """
    path, params = _parse_path_and_params(rest, _FROM)
    if path == "":
        return "<>", {}
    return path, params


def parse_rcpt_to(rest):
    """``RCPT`` argument (``TO:<a@b> NOTIFY=NEVER``) → ``(path, params)``.

    As :func:`parse_mail_from`, except that an empty path is ``Syntax error in address``.
    """
    path, params = _parse_path_and_params(rest, _TO)
    if path == "":
        raise CommandSyntaxError("Syntax error in address")
    return path, params


_BAD_SENDER = "could not parse your mail from command"
_BAD_RECIPIENT = "could not parse recipient"


def sender_address(path):
    """The sender Address for a path that went through ``mail_pre``.

    The path must be in angle brackets. ``<>``, ``<#@[]>`` and anything containing
    ``[undefined]`` are the null sender.
    """
    if path is None or not _BRACKETED.fullmatch(path):
        raise CommandSyntaxError(_BAD_SENDER)
    if path in ("<>", "<#@[]>") or "[undefined]" in path:
        return Address.null()
    address = Address.parse(path)
    if address is None:
        raise CommandSyntaxError(_BAD_SENDER)
    return address


def recipient_address(path):
    """The recipient Address for a path that went through ``rcpt_pre``.

    The path must be in angle brackets and must not be ``<>``.
    """
    if path is None or not _BRACKETED.fullmatch(path):
        raise CommandSyntaxError(_BAD_RECIPIENT)
    address = Address.parse(path)
    if address is None or address.is_null:
        raise CommandSyntaxError(_BAD_RECIPIENT)
    return address
