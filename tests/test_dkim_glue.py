"""The shortcuts dkim_verify takes to cost less per signature, checked against what they
replace: the h= split, the strict base64 decoding and the shared canonicalization policies
(bench/auth_cpu.py measures their effect)."""

import base64
import binascii
import random
import re

from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError
from twisted.trial import unittest

from qpsmtpd_tx import dkim_verify

#: how the h= names were split before (the reference)
_H_SEPARATOR = re.compile(rb"\s*:\s*")


def _signature(h_value):
    return dkim_verify.Signature((b"DKIM-Signature", (
        b" v=1; a=rsa-sha256; d=example.com; s=sel; h=%s; bh=AAAA; b=AAAA\r\n" % h_value)))


class SignedFieldsTests(unittest.TestCase):
    def test_same_as_the_regular_expression(self):
        rng = random.Random(7)
        pieces = [b"From", b"to", b" ", b"\t", b"\r\n ", b":", b"  :  ", b"x y", b"\x0b", b"\x0c"]
        for _ in range(500):
            h_value = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 8)))
            signature = _signature(h_value)
            reference = [name.lower() for name in
                         _H_SEPARATOR.split(signature.tags.get(b"h", b"").strip())]
            self.assertEqual(signature.signed_fields(), reference, h_value)


class Base64Tests(unittest.TestCase):
    def test_same_as_b64decode_validate(self):
        rng = random.Random(8)
        alphabet = b"QUJDabc+/=  \r\n\t-_!A"
        for _ in range(2000):
            value = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 14)))
            try:
                expected = base64.b64decode(value.translate(None, b" \t\n\r\f\v"),
                                            validate=True)
            except (binascii.Error, ValueError):
                expected = None
            self.assertEqual(dkim_verify._b64(value), expected, value)


class PolicyTests(unittest.TestCase):
    def test_same_as_from_c_value(self):
        for c_value in [None, b"simple", b"relaxed", b"relaxed/relaxed", b"simple/relaxed",
                        b"relaxed/simple", b"simple/simple", b"relaxed/", b"x", b"a/b/c"]:
            for _ in range(2):      # the second time from the table
                try:
                    policy = CanonicalizationPolicy.from_c_value(c_value)
                except InvalidCanonicalizationPolicyError:
                    self.assertRaises(InvalidCanonicalizationPolicyError,
                                      dkim_verify._policy, c_value)
                    continue
                got, body_name = dkim_verify._policy(c_value)
                self.assertEqual((got.header_algorithm, got.body_algorithm),
                                 (policy.header_algorithm, policy.body_algorithm))
                self.assertEqual(body_name, policy.body_algorithm.name.decode())
        self.assertLessEqual(len(dkim_verify._POLICIES), 7)
