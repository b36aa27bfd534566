"""A DKIM signature's Authentication-Results entry: ``header.b`` is the first 8 characters
of its b= value without white space, however the value is folded."""

from twisted.trial import unittest

from qpsmtpd_tx import dkim_verify
from tests.support.authresults_cases import entry_in_field


def _signature(b_value):
    return dkim_verify.Signature((b"DKIM-Signature", (
        b" v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AAAA;\r\n b=%s\r\n" % b_value)))


class HeaderBTests(unittest.TestCase):
    def test_folded_anywhere(self):
        for b_value in [b"AbCdEfGhIjKl", b"Ab\r\n Cd\r\n\tEf Gh Ij", b"A b c d e f g h i j k",
                        b"A\r\n B\r\n C\r\n D\r\n E\r\n F\r\n G\r\n H\r\n I", b"AbCd"]:
            signature = _signature(b_value)
            signature._set("pass")
            wanted = b_value.translate(None, b" \t\r\n")[:8].decode()
            self.assertIn(" header.b=%s" % wanted, signature.auth_result())
            self.assertTrue(signature.auth_result().endswith("header.b=" + wanted))

    def test_unprintable_characters_become_question_marks(self):
        signature = dkim_verify.Signature((b"DKIM-Signature", (
            b" v=1; a=rsa-sha256; d=example.com; s=a\x0bb\x7f; h=from; bh=AAAA; b=AAAA\r\n")))
        signature._set("permerror", "no key")
        self.assertIn(" header.s=a?b? ", entry_in_field(signature.auth_result()))

    def test_long_values_are_clipped_each(self):
        """A d=, s= or i= longer than MAX_VALUE is cut there in the entry (ending in
        ``...``); the short ones beside it are not."""
        long_d = b"d" * 300 + b".example"
        for tags, wanted in [
                (b"d=%s; s=sel" % long_d, ["header.d=%s..." % ("d" * 253), "header.s=sel "]),
                (b"d=example.com; s=%s" % (b"s" * 400),
                 ["header.d=example.com ", "header.s=%s... " % ("s" * 253)]),
                (b"d=example.com; s=sel; i=@%s.example.com" % (b"i" * 300),
                 ["header.i=@%s... " % ("i" * 252), "header.s=sel "])]:
            signature = dkim_verify.Signature((b"DKIM-Signature", (
                b" v=1; a=rsa-sha256; %s; h=from; bh=AAAA; b=AAAA\r\n" % tags)))
            signature._set("permerror", "no key")
            entry = signature.auth_result()
            for part in wanted:
                self.assertIn(part, entry)
