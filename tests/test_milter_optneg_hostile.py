"""A hostile milter's OPTNEG answer: its macro lists. libmilter sends at most one list per
stage (0 to 6); a megabyte of tiny lists was read list by list, each step copying the rest
(seconds of the reactor's time per connection), and a list for an unknown stage was taken.
Both are now protocol errors. The codec alone (no I/O)."""

import struct

from twisted.trial import unittest

from qpsmtpd_tx.milter import codec
from qpsmtpd_tx.milter.codec import ProtocolError

HEAD = struct.pack("!III", 6, codec.F_SETSYMLIST, 0)


def macro_list(stage, names):
    return struct.pack("!I", stage) + names + b"\0"


class MacroListTests(unittest.TestCase):
    def test_a_megabyte_of_lists_is_refused(self):
        data = HEAD + macro_list(codec.M_CONNECT, b"j") * 170000
        with self.assertRaises(ProtocolError) as caught:
            codec.parse_optneg(data)
        self.assertIn("one list each", str(caught.exception))

    def test_unknown_stage_is_refused(self):
        self.assertRaises(ProtocolError, codec.parse_optneg, HEAD + macro_list(7, b"j"))
        self.assertRaises(ProtocolError, codec.parse_optneg, HEAD + macro_list(1 << 31, b"j"))

    def test_one_list_per_stage_is_read(self):
        data = HEAD + b"".join(macro_list(stage, b"i {xy}") for stage in range(7))
        self.assertEqual(codec.parse_optneg(data).macros, {stage: ["i", "{xy}"] for stage in range(7)})
