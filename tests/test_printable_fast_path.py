"""printable() and is_printable() take a short cut for printable ASCII (most text, and every
reply line the server sends): the result must be what the escaping itself gives."""

from twisted.trial import unittest

from qpsmtpd_tx import printable as module
from qpsmtpd_tx.printable import is_printable, printable


def _escaped(text):
    """The escaping without any short cut."""
    return module._UNSAFE.sub(module._escape, text)


class FastPathTests(unittest.TestCase):
    """Every character, alone and inside ASCII text, comes out as the escaping makes it."""

    def test_every_character(self):
        chars = [chr(c) for c in range(0x3000)] + [chr(c) for c in range(0xDC80, 0xDD00)]
        for char in chars:
            for text in (char, "250 ok " + char, char + "x" * 3):
                self.assertEqual(printable(text), _escaped(text), repr(text))
                self.assertEqual(is_printable(text), _escaped(text) == text, repr(text))

    def test_limit(self):
        self.assertEqual(printable("abcdef", limit=6), "abcdef")
        self.assertEqual(printable("abcdefg", limit=6), "abcdef...")
        self.assertEqual(printable("ab\x1bdefg", limit=6), "ab\\x1bdef...")
        self.assertEqual(printable(""), "")
        self.assertEqual(printable(None), "")
