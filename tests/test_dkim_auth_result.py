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
