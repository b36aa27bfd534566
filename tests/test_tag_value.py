"""qpsmtpd_tx.tag_value against dkimpy's parse_tag_value, whose reading it must keep."""

import random

from dkim.util import InvalidTagValueList, parse_tag_value
from twisted.trial import unittest

from qpsmtpd_tx import tag_value

#: what random lists are made of: tag letters, separators, white space (folding included),
#: a digit and an underscore (not allowed first), a non-ASCII letter byte
_PIECES = [b"a", b"b", b"bh", b"d", b"h", b"v", b"Z", b"1", b"_", b"\xe9", b"=", b";",
           b" ", b"\t", b"\r\n ", b"\n", b"\x0b", b"DKIM1", b"rsa-sha256", b"x=y", b"; "]


def _outcome(parse, data):
    try:
        return ("ok", parse(data))
    except InvalidTagValueList as e:
        return (type(e), e.args)


class TagValueTests(unittest.TestCase):
    """Same tags, or the same error with the same arguments, as dkimpy."""

    def test_examples(self):
        for data in [b"", b";", b" v=1; a=rsa-sha256;\r\n\tb=abc def ;", b"a=1;;b=2",
                     b"=x", b"1a=x", b"_a=x", b"a", b"a=1; a=2", b"a=1; A=2",
                     b"a = b = c", b"\xe9=1", b"a=1 ;  ", b"  ;a=1"]:
            self.assertEqual(_outcome(tag_value.parse, data),
                             _outcome(parse_tag_value, data), data)

    def test_random_lists(self):
        rng = random.Random(20261207)
        differ = []
        for _ in range(20000):
            data = b"".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 14)))
            ours, theirs = _outcome(tag_value.parse, data), _outcome(parse_tag_value, data)
            if ours != theirs:
                differ.append((data, ours, theirs))
        self.assertEqual(differ[:5], [])

    def test_parses_a_signature(self):
        self.assertEqual(tag_value.parse(b"v=1; a=rsa-sha256; d=example.com;\r\n s=sel"),
                         {b"v": b"1", b"a": b"rsa-sha256", b"d": b"example.com", b"s": b"sel"})
