"""qpsmtpd_tx.dkim_verify on its own: key records (RFC 6376 section 3.6.1 tags), malformed
signatures, and what reaches the Authentication-Results field. The RFC 8301 key size limit
and the end-to-end checks against Mail::DKIM and Exim are in tests/plugins/test_dkim.py."""

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial import unittest

from qpsmtpd_tx import dkim_verify

KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
P = base64.b64encode(KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def signature(tags="v=1; a=rsa-sha256; d=example.org; s=sel; h=from:to; bh=AAAA; b=AAAA"):
    return dkim_verify.Signature((b"DKIM-Signature", (" " + tags + "\r\n").encode()))


class KeyTests(unittest.TestCase):
    def problem(self, record, sig=None):
        with self.assertRaises(dkim_verify.KeyProblem) as caught:
            dkim_verify.parse_key(record, sig or signature())
        return caught.exception.result, caught.exception.reason

    def test_good_key(self):
        kind, key = dkim_verify.parse_key("v=DKIM1; k=rsa; p=" + P, signature())
        self.assertEqual((kind, key.key_size), ("rsa", 1024))

    def test_key_problems(self):
        self.assertEqual(self.problem("v=DKIM1; p="), ("permerror", "key revoked"))
        self.assertEqual(self.problem("v=DKIM2; p=" + P),
                         ("permerror", "key record is not v=DKIM1"))
        self.assertEqual(self.problem("k=ed25519; p=" + P),
                         ("permerror", "key type does not match a="))
        self.assertEqual(self.problem("h=sha1; p=" + P),
                         ("permerror", "key does not allow sha256"))
        self.assertEqual(self.problem("s=tlsrpt; p=" + P), ("permerror", "key is not for email"))
        self.assertEqual(self.problem("p=AAAA"), ("permerror", "malformed rsa key"))
        subdomain = signature("v=1; a=rsa-sha256; d=example.org; i=@mail.example.org; "
                              "s=sel; h=from; bh=AAAA; b=AAAA")
        self.assertEqual(self.problem("t=s; p=" + P, subdomain),
                         ("permerror", "i= is a subdomain of d= but the key has t=s"))


class SignatureTests(unittest.TestCase):
    def test_malformed_signatures(self):
        self.assertEqual(signature("v=1; a=rsa-sha256; d=example.org; s=sel; bh=AAAA; b=AAAA"
                                   ).result, "neutral")          # no h=
        self.assertEqual(signature("v=1; a=rsa-sha256; d=example.org; s=sel; h=to; bh=AAAA; "
                                   "b=AAAA").reason, "From is not signed")
        self.assertEqual(signature("v=1; a=rsa-sha1; d=example.org; s=sel; h=from; bh=AAAA; "
                                   "b=AAAA").result, "policy")
        self.assertEqual(signature("v=1; a=rsa-sha256; d=example.org; s=sel; h=from; "
                                   "c=bogus/simple; bh=AAAA; b=AAAA").result, "neutral")

    def test_the_entry_cannot_split_the_field(self):
        sig = signature("v=1; a=rsa-sha256; d=exa\x01mple.org; s=s\x7fel; h=from; bh=AAAA; "
                        "b=AAAA")
        sig._set("fail", 'body "hash"\r\nX-Injected: 1')
        entry = sig.auth_result()
        self.assertNotIn("\r", entry)
        self.assertNotIn("\n", entry)
        self.assertIn("header.s=s?el", entry)
        self.assertTrue(entry.startswith("dkim=fail reason=\"body 'hash'??X-Injected: 1\""), entry)
