"""DKIM and ARC fields a hostile sender writes: the work they cost is bounded by their size
(counted here, not timed), and no value makes the checks raise instead of giving a result."""

from twisted.trial import unittest

from qpsmtpd_tx import dkim_verify


class _Counted(bytes):
    """A field name that counts the comparisons made with it (bytes compare in C: this is
    how the work of a selection is seen)."""

    compared = 0

    def __eq__(self, other):
        _Counted.compared += 1
        return bytes.__eq__(self, other)

    def __hash__(self):
        return bytes.__hash__(self)


class SelectFieldsTests(unittest.TestCase):
    def test_work_is_linear_in_names_and_fields(self):
        """An h= of 2,000 names none of the 2,000 fields has: the old search looked through
        every field for each name (4,000,000 comparisons; 20,000 of each took 28 s)."""
        fields = [[b"X-%d" % (i % 7), b" v\r\n"] for i in range(2000)]
        names = [_Counted(b"n%d" % i) for i in range(2000)] + [_Counted(b"x-1")] * 3
        _Counted.compared = 0
        selected = dkim_verify.select_fields(fields, names)
        self.assertLess(_Counted.compared, 10 * (len(fields) + len(names)))
        # the last three X-1 fields, newest first (RFC 6376 5.4.2)
        ones = [i for i in range(2000) if i % 7 == 1]
        self.assertEqual(selected, [fields[i] for i in reversed(ones[-3:])])

    def test_selection(self):
        fields = [[b"From", b" a\r\n"], [b"To", b" b\r\n"], [b"from", b" c\r\n"],
                  [b"Subject", b" d\r\n"]]
        self.assertEqual(
            dkim_verify.select_fields(fields, [b"from", b"subject", b"from", b"from", b"date",
                                               b"to"]),
            [fields[2], fields[3], fields[0], fields[1]])
