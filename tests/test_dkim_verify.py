"""qpsmtpd_tx.dkim_verify on its own: key records (RFC 6376 section 3.6.1 tags), malformed
signatures, and what reaches the Authentication-Results field. The RFC 8301 key size limit
and the end-to-end checks against Mail::DKIM and Exim are in tests/plugins/test_dkim.py."""

import base64
import random
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial import unittest

from qpsmtpd_tx import dkim_verify
from tests.support.authresults_cases import entry_in_field

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

    def test_key_tag_values_are_case_sensitive(self):
        """RFC 6376 section 3.2: tag values are case sensitive unless a tag says otherwise,
        and s=, h= and t= do not: ``EMAIL`` is an unknown service, ``SHA256`` an unknown
        hash, ``S`` an unknown flag (ignored). These passed while the values were lowered."""
        self.assertEqual(self.problem("s=EMAIL; p=" + P), ("permerror", "key is not for email"))
        self.assertEqual(self.problem("h=SHA256; p=" + P),
                         ("permerror", "key does not allow sha256"))
        subdomain = signature("v=1; a=rsa-sha256; d=example.org; i=@mail.example.org; "
                              "s=sel; h=from; bh=AAAA; b=AAAA")
        kind, _ = dkim_verify.parse_key("t=S; s=email : *; h=sha1 : sha256; p=" + P, subdomain)
        self.assertEqual(kind, "rsa")


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
        entry = entry_in_field(sig.auth_result())
        self.assertNotIn("\r", entry)
        self.assertNotIn("\n", entry)
        self.assertIn("header.s=s?el", entry)
        self.assertTrue(entry.startswith("dkim=fail reason=\"body 'hash'??X-Injected: 1\""), entry)


class HeaderHashTests(unittest.TestCase):
    """Our header parsing, field selection and canonicalization give the same hash input
    as dkimpy's (the reference here: it is the library the rest of the check builds on)."""

    BLOCKS = [
        b"From: A <a@example.com>\nTo: b@example.net\nSubject: hi\n",
        b"Received: x\n\tby y\nFrom:  A\t\t<a@example.com>  \nSubject: two\n  lines\t \n"
        b"subject: again\nTO:b@example.net\nFrom: second@example.com\n",
        b"From: a@example.com\nX-Empty:\nX-Spaces:    \nDate: Sun, 6 Dec 2026 22:00:00 +0000\n",
    ]
    SIGNATURES = [
        b" v=1; a=rsa-sha256; d=example.com; s=s; c=relaxed/relaxed; h=from:to:subject:"
        b"subject:from:x-empty:x-missing; bh=abc=; b=AbC+/d\r\n ef=\r\n",
        b" v=1; a=rsa-sha256; b=\r\n\tAbCd+/==; d=example.com; s=s; h=From : Subject;"
        b" bh=abc=\r\n",
        b" v=1;\tb= AbC ;d=example.com;s=s;h=from:x-spaces:date;bh=x=\r\n",
    ]

    def test_same_hash_input_as_dkimpy(self):
        import hashlib

        import dkim
        from dkim.canonicalization import CanonicalizationPolicy
        from dkim.util import parse_tag_value

        checked = 0
        for block in self.BLOCKS:
            ours = dkim_verify.parse_fields(block)
            theirs, _ = dkim.rfc822_parse(block.replace(b"\n", b"\r\n") + b"\r\n")
            self.assertEqual(ours, theirs)
            for value in self.SIGNATURES:
                tags = parse_tag_value(value)
                names = [n.strip().lower() for n in tags[b"h"].split(b":")] + [b"from"]
                for c in (b"relaxed/relaxed", b"simple/simple"):
                    policy = CanonicalizationPolicy.from_c_value(c)
                    expected, got = hashlib.sha256(), hashlib.sha256()
                    dkim.hash_headers(expected, policy, policy.canonicalize_headers(theirs),
                                      names, (b"DKIM-Signature", value), tags)
                    dkim_verify.hash_header_fields(got, c.startswith(b"relaxed"), ours,
                                                   names, (b"DKIM-Signature", value))
                    self.assertEqual(got.hexdigest(), expected.hexdigest(), (block, value, c))
                    checked += 1
        self.assertEqual(checked, 18)

    def test_a_line_that_is_no_field_is_an_error(self):
        with self.assertRaises(ValueError):
            dkim_verify.parse_fields(b"From: a\nno colon here\n")
        with self.assertRaises(ValueError):
            dkim_verify.parse_fields(b" continued\nFrom: a\n")
        self.assertEqual(dkim_verify.parse_fields(b"From someone Sun Dec 6\nFrom: a\n"),
                         [[b"From", b" a\r\n"]])


class BlankBWithTagValueTests(unittest.TestCase):
    """blank_b given the b= tag's value (its shortcut when that tag is last) blanks as the
    reference pattern does, on random signature fields whose b= tag is strict base64."""

    REFERENCE = re.compile(rb"([;\s]b\s*=)(?:\s*[a-zA-Z0-9+/=])*(?:\r?\n\Z)?")

    def test_random_fields(self):
        from qpsmtpd_tx import dkim_tags, tag_value
        from dkim.util import InvalidTagValueList
        rng = random.Random(20261207)
        pieces = [b"b", b"=", b";", b" ", b"\t", b"\r\n ", b"\n", b"QUJD", b"+/", b"==",
                  b"b=", b" b=", b"; b =", b";b=", b"bh=", b"z=x b=QUJD", b"!", b"\r\n"]
        others = [b"v=1", b"a=rsa-sha256", b"bh=QUJD", b"z=x b=QUJD", b"h=from : b",
                  b"d=b.example", b"x b=y"]
        spaces = [b"", b" ", b"\t", b"\r\n ", b"\r\n\t", b"\n"]

        def structured():
            b_tag = b"b" + rng.choice(spaces) + b"=" + rng.choice(spaces) + b"".join(
                rng.choice([b"QUJD", b"+/ab", b"\r\n ", b" ", b"=", b"=="])
                for _ in range(rng.randrange(0, 6))) + rng.choice(spaces)
            tags = rng.sample(others, rng.randrange(0, 4))
            tags.insert(rng.randrange(0, len(tags) + 1), b_tag)
            return (rng.choice(spaces) + (b";" + rng.choice(spaces)).join(tags)
                    + rng.choice([b"", b";", b"\r\n", b";\r\n", b" \r\n"]))

        tried = 0
        for _ in range(20000):
            if rng.random() < 0.5:
                field = structured()
            else:
                field = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 16)))
            try:
                b_value = tag_value.parse(field).get(b"b")
            except InvalidTagValueList:
                continue
            if not b_value or dkim_tags.base64_value(b_value)[1] is None:
                continue
            tried += 1
            self.assertEqual(dkim_verify.blank_b(field, b_value),
                             self.REFERENCE.sub(rb"\1", field), field)
        self.assertGreater(tried, 500)
