"""split_command without regexes for the usual lines must split every line as the
regex-based rule did: at the first run of spaces, the verb lower-cased, valid when it is 1 to
12 ASCII word characters."""

import re

from twisted.trial import unittest

from qpsmtpd_tx.command import split_command


def _by_regex(line):
    parts = re.split(r" +", line, maxsplit=1)
    verb = parts[0].lower()
    rest = parts[1] if len(parts) > 1 else None
    return verb, rest, bool(re.fullmatch(r"[A-Za-z0-9_]{1,12}", verb))


class SplitTests(unittest.TestCase):
    """Lines with and without spaces, runs of spaces, tabs, odd and long verbs."""

    def test_same_as_the_regex_rule(self):
        lines = ["", " ", "  ", "QUIT", "quit", "QUIT ", "MAIL FROM:<a@b>", "MAIL  FROM:<a@b>",
                 " MAIL FROM:<a@b>", "  MAIL", "EHLO\tx", "EHLO x  y ", "STARTTLS", "AUTH PLAIN x",
                 "X-LONG-VERB y", "ABCDEFGHIJKLM x", "ABCDEFGHIJKL x", "ß x", "M\u0130 x",
                 "HELO \u00e9", "data", "Rcpt TO:<a@b>", "_x y", "12 x", "\x00 x"]
        for line in lines:
            self.assertEqual(split_command(line), _by_regex(line), repr(line))
