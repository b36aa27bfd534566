"""qpsmtpd_tx.dkim_tags against dkimpy's validate_signature_fields, whose decisions and
error texts it must keep: many generated signatures, each tag valid, absent or mutated."""

import random
import time

import dkim
from twisted.trial import unittest

from qpsmtpd_tx import dkim_tags, dkim_verify

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: bytes that mutations insert: white space of every kind, padding, specials, digits,
#: letters, a non-ASCII byte, and the vertical white space \s knows but strip() does not
_NOISE = [b" ", b"\t", b"\r\n ", b"\n", b"\x0b", b"\x0c", b"\x1c", b"=", b"==", b"@", b".",
          b"(", b";", b"\\", b",", b"[", b":", b"-", b"_", b"0", b"9", b"a", b"Z", b"+",
          b"/", b"\xe9", b"\x00", b"*"]


def _base64(rng, length):
    text = bytes(rng.choice(_B64) for _ in range(length))
    return text + b"=" * rng.choice([0, 0, 1, 2])


def _valid(rng, now):
    """A signature's tags that pass (mostly): values as real signers write them."""
    domain = rng.choice([b"example.com", b"Mail.Example.ORG", b"x.y", b"\xe9x.example"])
    t = now - rng.randint(0, 10 ** 6)
    return {
        b"v": b"1", b"a": rng.choice([b"rsa-sha256", b"rsa-sha1", b"ed25519-sha256"]),
        b"b": _base64(rng, rng.choice([4, 8, 86, 344, 343])),
        b"bh": _base64(rng, rng.choice([44, 43, 28])), b"d": domain,
        b"h": b"from:to:subject", b"s": b"sel", b"c": b"relaxed/relaxed",
        b"i": rng.choice([b"@", b"user@", b"a.", b"x@sub."]) + domain,
        b"l": str(rng.randint(0, 10 ** 6)).encode(), b"q": b"dns/txt",
        b"t": str(t).encode(), b"x": str(t + rng.randint(-100, 10 ** 6)).encode(),
        b"cv": rng.choice([b"pass", b"fail", b"none"]),
    }


def _mutate(rng, value):
    value = bytearray(value)
    for _ in range(rng.randint(1, 3)):
        what = rng.random()
        at = rng.randint(0, len(value))
        if what < 0.5:
            value[at:at] = rng.choice(_NOISE)
        elif what < 0.8 and value:
            del value[min(at, len(value) - 1)]
        else:
            value[at:] = b""
    return bytes(value)


def _signature(rng, now):
    tags = _valid(rng, now)
    for tag in list(tags):
        roll = rng.random()
        if roll < 0.08:
            del tags[tag]
        elif roll < 0.2:
            tags[tag] = _mutate(rng, tags[tag])
    if rng.random() < 0.05:
        tags[b"t"] = str(now + rng.randint(30000, 40000)).encode()     # near the slack
    if rng.random() < 0.05:
        tags[b"x"] = str(now - rng.randint(30000, 40000)).encode()
    return tags


def _outcome(check, tags, mandatory, arc):
    try:
        check(tags, list(mandatory), arc)
        return "ok"
    except dkim.ValidationError as e:
        return ("ValidationError", str(e))
    except Exception as e:     # dkimpy's own failures (KeyError): the same type here
        return (type(e).__name__,)


_KINDS = [((b"v", b"a", b"b", b"bh", b"d", b"h", b"s"), False),     # DKIM-Signature
          ((b"i", b"a", b"b", b"bh", b"d", b"h", b"s"), True),      # ARC-Message-Signature
          ((b"i", b"a", b"b", b"cv", b"d", b"s"), True),            # ARC-Seal
          ((b"a", b"bh", b"d"), False)]                             # b= not mandatory


def _same(dkimpy, ours):
    """dkimpy's outcome, but where it crashes with IndexError (an i= as long as d=) ours is
    the "not a subdomain" error (dkim_tags' intended difference)."""
    if dkimpy == ("IndexError",):
        return ours[0] == "ValidationError" and "not a subdomain" in ours[1]
    return dkimpy == ours


class TagChecks(unittest.TestCase):
    """Same decision and text as dkimpy's validate_signature_fields."""

    def test_generated_signatures(self):
        rng = random.Random(20261207)
        now = int(time.time())
        differ, outcomes = [], set()
        for n in range(40000):
            tags = _signature(rng, now)
            mandatory, arc = _KINDS[n % len(_KINDS)]
            theirs = _outcome(dkim.validate_signature_fields, tags, mandatory, arc)
            ours = _outcome(dkim_tags.validate, tags, mandatory, arc)
            outcomes.add(theirs if theirs == "ok" else
                         " ".join([theirs[0]] + ([theirs[1].split()[0]] if theirs[1:] else [])))
            if not _same(theirs, ours):
                differ.append((tags, mandatory, arc, theirs, ours))
        self.assertEqual(differ[:3], [])
        # the generator reaches every check (a test whose cases all pass proves nothing)
        for reached in ["missing", "b=", "bh=", "d=", "i=", "l=", "q=", "t=", "v=", "x=",
                        "cv=", "unknown"]:
            self.assertIn("ValidationError " + reached, outcomes)
        self.assertIn("ok", outcomes)
        self.assertIn("KeyError", outcomes)

    def test_base64_forms(self):
        for value in [b"", b" ", b"=", b" =", b"= ", b"ab==", b"ab=c", b"a b\r\n c==",
                      b"ab\n", b"\nab", b"==\n", b"\x0b", b"ab\x1c", b"a-b", b"abcd \x0c="]:
            theirs = _outcome(dkim.validate_signature_fields,
                              {b"b": value, b"d": b"x"}, [], False)
            ours = _outcome(dkim_tags.validate, {b"b": value, b"d": b"x"}, [], False)
            self.assertEqual(ours, theirs, value)

    def test_i_as_long_as_d(self):
        """dkimpy crashes (IndexError) on i=example.com d=example.com; we refuse it."""
        tags = {b"d": b"example.com", b"i": b"example.com"}
        self.assertRaises(IndexError, dkim.validate_signature_fields, tags, [], False)
        e = self.assertRaises(dkim.ValidationError, dkim_tags.validate, tags, [], False)
        self.assertIn("i= domain is not a subdomain of d=", str(e))

    def test_signature_with_i_as_long_as_d_is_malformed(self):
        """Such a signature is ``neutral`` (malformed), not an exception in the plugin."""
        signature = dkim_verify.Signature((b"DKIM-Signature", (
            b" v=1; a=rsa-sha256; d=example.com; i=example.com; s=sel; h=from;"
            b" bh=AAAA; b=AAAA\r\n")))
        self.assertEqual(signature.result, "neutral")
        self.assertIn("not a subdomain", signature.reason)


class Base64ValueTests(unittest.TestCase):
    """dkim_tags.base64_value, which validate, the signature check and header.b share, gives
    what each computed on its own before: the value without white space, and its bytes by
    binascii's strict mode (None where that refuses it)."""

    def test_against_translate_and_strict_decode(self):
        import binascii
        rng = random.Random(20261207)
        differ = []
        for _ in range(3000):
            value = _mutate(rng, _base64(rng, rng.choice([4, 44, 344, 3000])))
            if rng.random() < 0.1:
                value = b" \n".join([value] * 3)        # over the split limit too
            clean = value.translate(None, dkim_tags.WHITE_SPACE)
            try:
                raw = binascii.a2b_base64(clean, strict_mode=True)
            except (binascii.Error, ValueError):
                raw = None
            if dkim_tags.base64_value(value) != (clean, raw):
                differ.append(value)
        self.assertEqual(differ[:3], [])

    def test_padding_after_a_full_quad_is_refused(self):
        # binascii's strict mode accepts "AAAA=" (extra padding): dkimpy's length check not
        sig = {b"v": b"1", b"a": b"rsa-sha256", b"b": b"AAAA=", b"bh": b"AAAA", b"d": b"x.y",
               b"h": b"from", b"s": b"s"}
        with self.assertRaises(dkim.ValidationError) as caught:
            dkim_tags.validate(sig, dkim_verify.Signature.MANDATORY)
        self.assertEqual(str(caught.exception), "b= value is not valid base64 (b'AAAA=')")
        with self.assertRaises(dkim.ValidationError) as theirs:
            dkim.validate_signature_fields(sig, [b"v", b"a", b"b", b"bh", b"d", b"h", b"s"])
        self.assertEqual(str(caught.exception), str(theirs.exception))
