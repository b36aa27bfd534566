"""The streamed DKIM body hashes against dkimpy's canonicalization on larger random bodies,
read in the default chunk size and in odd ones: runs of spaces and tabs (also across chunk
ends), trailing white space, empty lines, base64-like and text-like lines."""

import io
import random

from twisted.trial import unittest

from qpsmtpd_tx.dkim_body import body_hashes
from tests.test_dkim_body import reference

_WORDS = [b"lorem", b"ipsum", b"QUJD+/9=", b"x", b"", b"\t", b" ", b"  ", b" \t ", b"\r"]


def _body(rng):
    lines = []
    for _ in range(rng.randrange(0, 300)):
        words = [rng.choice(_WORDS) for _ in range(rng.randrange(0, 14))]
        lines.append(rng.choice((b" ", b"  ", b"\t")).join(words) + rng.choice(
            (b"", b"", b" ", b"\t", b"  ")))
    return b"\n".join(lines) + rng.choice((b"", b"\n", b"\n\n\n", b" "))


class RandomBodyTests(unittest.TestCase):
    """Every canonicalization and length of a random body is dkimpy's."""

    def test_random_bodies(self):
        rng = random.Random(20261207)
        wanted = [(c, "sha256", None) for c in ("simple", "relaxed")]
        for _ in range(150):
            body = _body(rng)
            chunk = rng.choice((64 * 1024, 1000, 7, 333))
            got = body_hashes(io.BytesIO(body), wanted, chunk)
            for key in wanted:
                digest, length = reference(body, key[0])
                self.assertEqual((got[key].digest(), got[key].length), (digest, length),
                                 (key, chunk, body[:200]))

    def test_random_bodies_one_key(self):
        """One key wanted (the usual single signature), with l= limits: the reference's hash."""
        rng = random.Random(20261208)
        for _ in range(150):
            body = _body(rng)
            chunk = rng.choice((64 * 1024, 1000, 7, 333))
            key = (rng.choice(("simple", "relaxed")), "sha256", rng.choice((None, 0, 5, 80)))
            got = body_hashes(io.BytesIO(body), {key}, chunk)[key]
            digest, length = reference(body, key[0], key[2])
            self.assertEqual((got.digest(), got.length), (digest, length),
                             (key, chunk, body[:200]))
