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


class RelaxedHeaderHashTests(unittest.TestCase):
    """The header hash input, canonicalized all at once, is dkimpy's, whatever the values
    hold (white space runs, folding, a NUL that makes it go a field at a time)."""

    def test_random_headers_same_as_dkimpy(self):
        import hashlib

        import dkim
        from dkim.util import parse_tag_value
        rng = random.Random(9)
        words = [b"a", b"Bc", b" ", b"  ", b"\t", b" \t ", b"\n ", b"\n\t", b"\x00", b"x:y", b";"]
        signature = (b" v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel;\r\n"
                     b" h=from : to:subject:x-a:x-a; bh=AAAA;\r\n b=QUJD\r\n QUJD\r\n")
        tags = parse_tag_value(signature)
        names = [b"from", b"to", b"subject", b"x-a", b"x-a", b"from"]
        policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
        for _ in range(300):
            lines = []
            for _ in range(rng.randrange(1, 7)):
                name = rng.choice([b"From", b"To", b"Subject", b"X-A", b"x-a", b"Other"])
                value = b"".join(rng.choice(words) for _ in range(rng.randrange(0, 6)))
                lines.append(name + b":" + value.rstrip(b"\n \t") + b"\n")
            block = b"".join(lines)
            ours = dkim_verify.parse_fields(block)
            theirs, _ = dkim.rfc822_parse(block.replace(b"\n", b"\r\n") + b"\r\n")
            expected, got = hashlib.sha256(), hashlib.sha256()
            dkim.hash_headers(expected, policy, policy.canonicalize_headers(theirs), names,
                              (b"DKIM-Signature", signature), tags)
            dkim_verify.hash_header_fields(got, True, ours, names,
                                           (b"DKIM-Signature", signature))
            self.assertEqual(got.hexdigest(), expected.hexdigest(), block)
