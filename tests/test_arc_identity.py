"""An ARC-Message-Signature has no agent identity: its ``i=`` is the instance number, and
what a key's ``t=s`` and the Authentication-Results entry take as its identity is
``@<d=>`` (qpsmtpd_tx/arc.py MessageSignature)."""

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial import unittest

from qpsmtpd_tx import arc, dkim_verify

FIELD = (b"ARC-Message-Signature",
         b" i=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1;\r\n"
         b" h=from:to; bh=AAAA; b=AAAA\r\n")


def _strict_key_record():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; t=s; p=" + base64.b64encode(der).decode()


class MessageSignatureIdentityTests(unittest.TestCase):

    def setUp(self):
        self.signature = arc.MessageSignature(FIELD)
        self.assertIsNone(self.signature.result, self.signature.reason)

    def test_identity_is_the_domain(self):
        self.assertEqual(self.signature.identity, "@example.org")

    def test_strict_key_accepted(self):
        kind, _ = dkim_verify.parse_key(_strict_key_record(), self.signature)
        self.assertEqual(kind, "rsa")

    def test_entry_names_the_domain(self):
        self.signature.result = "pass"
        self.assertIn(" header.i=@example.org ", self.signature.auth_result())
