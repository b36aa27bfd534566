"""dkim_verify.header_fields (the dkim plugin's fields from the Header the core parsed)
against parse_fields on the same header's bytes (what the plugin parsed before): the same
fields, or the same error, on many generated headers."""

import random

from twisted.trial import unittest

from qpsmtpd_tx import dkim_verify
from qpsmtpd_tx.message import Header

#: what generated header lines are made of: names, colons, folding, CRs, odd bytes
_PIECES = [b"From", b"To", b"DKIM-Signature", b"X-y", b":", b": ", b" :", b"\t", b" ", b"a",
           b"v=1; b=abc", b"\r", b"\r\n", b"\xe9", b"From ", b"=", b";"]


def _header(rng):
    lines = []
    for _ in range(rng.randint(0, 8)):
        roll = rng.random()
        if roll < 0.6:
            line = rng.choice([b"From", b"To", b"Subject", b"X-Odd_1"]) + rng.choice(
                [b": ", b":", b" : ", b":\t"]) + b"".join(
                rng.choice(_PIECES) for _ in range(rng.randint(0, 5)))
        elif roll < 0.85:
            line = rng.choice([b" ", b"\t"]) + b"".join(
                rng.choice(_PIECES) for _ in range(rng.randint(0, 4)))
        else:
            line = b"".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 5)))
        lines.append(line)
    return b"".join(line + b"\n" for line in lines)


def _outcome(function, argument):
    try:
        return function(argument)
    except ValueError as e:
        return ("ValueError", str(e))


class HeaderFieldsTests(unittest.TestCase):
    def test_generated_headers(self):
        rng = random.Random(20261207)
        differ, fast = [], 0
        for _ in range(20000):
            header = Header.parse(_header(rng))
            for _ in range(rng.choice([0, 0, 0, 1, 2])):    # fields plugins add
                header.add(rng.choice(["X-Added", "To"]), "".join(
                    rng.choice(["a", " ", "\n", "\n ", "\n\t", "\r", ";"])
                    for _ in range(rng.randint(0, 5))), prepend=rng.random() < 0.5)
            ours = _outcome(dkim_verify.header_fields, header.fields)
            theirs = _outcome(dkim_verify.parse_fields, header.as_bytes())
            if ours != theirs:
                differ.append((header.fields, ours, theirs))
            fast += all(name and raw.count(b"\n") == 1 for name, raw in header.fields)
        self.assertEqual(differ[:3], [])
        self.assertGreater(fast, 2000)      # many take the path without parsing

    def test_a_folded_header(self):
        header = Header.parse(b"DKIM-Signature: v=1;\n\tb=abc\nFrom: a@example.com\n")
        self.assertEqual(dkim_verify.header_fields(header.fields), [
            [b"DKIM-Signature", b" v=1;\r\n\tb=abc\r\n"], [b"From", b" a@example.com\r\n"]])
        with self.assertRaises(ValueError):
            dkim_verify.header_fields(Header.parse(b"From: a\nno colon\n").fields)

    def test_fields_made_without_parsing(self):
        # fields a plugin put together itself: a folded value whose second line is no
        # continuation, a raw without its LF, a name that is not the raw's: each read as
        # parse_fields reads the bytes
        for fields in ([("X-A", b"X-A: a\nb: c\n")], [("X-A", b"X-A: a\n\tb\nc\n")],
                       [("X-A", b"X-A: a")], [("X-Ab", b"X-A: a\n")],
                       [("X-A", b"X-A: a\n \tb\n\tc\n"), ("To", b"To: d\n")]):
            header = Header(fields)
            self.assertEqual(_outcome(dkim_verify.header_fields, header.fields),
                             _outcome(dkim_verify.parse_fields, header.as_bytes()), fields)
