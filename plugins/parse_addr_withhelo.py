"""parse_addr_withhelo — no ESMTP parameters after HELO: strict RFC 821 MAIL and RCPT.

A client that greeted with HELO (not EHLO) speaks plain SMTP, where ``MAIL FROM:<a@b>
SIZE=1000`` and ``RCPT TO:<c@d> NOTIFY=NEVER`` are not allowed. With this plugin such commands
are refused; after EHLO the core's usual parser runs.

Arguments: ``[loglevel N]`` (per-plugin log level: ``6``, ``LOGINFO``, ``+1``, ``-2``).

Config files: none.

How a MAIL/RCPT argument is read after HELO:
  - ``FROM:`` / ``TO:`` must come first (any case, spaces after the colon allowed);
  - ``<…>`` up to the last ``>``: the path; anything after it but spaces is a parameter;
  - without brackets: an address holding ``@`` is the path (it still needs its brackets
    unless ``dont_require_anglebrackets`` adds them); a space and more text after it is a
    parameter; an empty ``MAIL FROM:`` is the null sender ``<>``; ``RCPT TO:postmaster``
    (or ``abuse``) is a path too.

Replies (all ``501``): ``Syntax error in command`` (no ``FROM:`` / ``TO:``),
``No parameters allowed in MAIL`` / ``No parameters allowed in RCPT``,
``Could not parse your MAIL FROM command`` / ``Could not parse your RCPT TO command``.

Difference from qpsmtpd 0.94, on purpose: a bare ``RCPT TO:postmaster`` / ``abuse`` is handed
on as a path (0.94's parser fell through and answered ``501 Syntax error in command``); it
still needs ``dont_require_anglebrackets`` to be accepted without brackets.
"""

import re

from qpsmtpd_tx.codes import DECLINED, DENY, OK
from qpsmtpd_tx.plugin import Plugin

_PREFIX = {"mail": re.compile(r"from:\s*", re.IGNORECASE | re.ASCII),
           "rcpt": re.compile(r"to:\s*", re.IGNORECASE | re.ASCII)}
_BRACKETED = re.compile(r"(<.*>)\s*", re.ASCII | re.DOTALL)
_PARAMETER_AFTER_ADDRESS = re.compile(r"@\S+\s+\S", re.ASCII)
_LOCAL_ROLES = re.compile(r"(?:postmaster|abuse)", re.IGNORECASE)
_TRAILING_SPACE = re.compile(r"\s*\Z", re.ASCII)


def parse(kind, line):
    """Parse the argument of MAIL (``kind`` "mail") or RCPT ("rcpt") as RFC 821 does.

    Returns ``(OK, (path, {}))`` or ``(DENY, reply text)``.
    """
    prefix = _PREFIX[kind].match(line)
    if prefix is None:
        return DENY, "Syntax error in command"
    line = line[prefix.end():]
    no_parameters = (DENY, "No parameters allowed in %s" % kind.upper())
    bracketed = _BRACKETED.match(line)
    if bracketed:
        if line[bracketed.end():]:
            return no_parameters
        return OK, (bracketed.group(1), {})
    line = _TRAILING_SPACE.sub("", line)
    if "@" in line:
        if _PARAMETER_AFTER_ADDRESS.search(line):
            return no_parameters
        return OK, (line, {})
    if kind == "mail":
        if not line:
            return OK, ("<>", {})
        return DENY, "Could not parse your MAIL FROM command"
    if _LOCAL_ROLES.fullmatch(line):
        return OK, (line, {})
    return DENY, "Could not parse your RCPT TO command"


class ParseAddrWithHelo(Plugin):
    """After HELO, parse MAIL/RCPT without ESMTP parameters."""

    def init(self, args):
        self.parse_kv_args(args, set())

    def hook_mail_parse(self, transaction, line):
        if transaction.connection.hello != "helo":
            return DECLINED
        return parse("mail", line or "")

    def hook_rcpt_parse(self, transaction, line):
        if transaction.connection.hello != "helo":
            return DECLINED
        return parse("rcpt", line or "")
