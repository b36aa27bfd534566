"""Base64 tag values (``b=``, ``bh=``, a key's ``p=``) with folding white space in them: every
kind a bytes ``\\s`` matches is dropped before decoding, and nothing else is."""

import base64

from twisted.trial import unittest

from qpsmtpd_tx import dkim_verify


class Base64ValueTests(unittest.TestCase):
    """dkim_verify reads base64 values as dkimpy's checks allow them (``\\s`` anywhere)."""

    def test_every_white_space_kind_is_dropped(self):
        value = base64.b64encode(b"signature bytes!")
        folded = b" " + value[:4] + b"\r\n\t" + value[4:9] + b"\x0b\x0c" + value[9:] + b"\n "
        self.assertEqual(dkim_verify._b64(folded), b"signature bytes!")

    def test_other_bytes_are_not_white_space(self):
        value = base64.b64encode(b"signature bytes!")
        for other in (b"\x1c", b"\x85", b"\xa0", b"\x00"):
            self.assertIsNone(dkim_verify._b64(value[:4] + other + value[4:]), other)

    def test_the_entry_shows_the_start_of_a_folded_b_value(self):
        signature = dkim_verify.Signature(
            [b"DKIM-Signature", b" v=1; a=rsa-sha256; d=example.com; s=sel; h=from;"
                                b" bh=AAAA; b=ab\r\n\tcd\x0bef gh ij\r\n"])
        signature._set("pass")
        self.assertIn("header.b=abcdefgh ", signature.auth_result() + " ")
