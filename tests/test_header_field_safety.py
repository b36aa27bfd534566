"""Header fields that plugins add or replace with text they were given (a back end's answer,
a milter's change, a client's words): no value may start another field or end the header,
and a name must be a field name (qpsmtpd_tx.message.Header.add/replace, field_bytes)."""

from twisted.trial import unittest

from qpsmtpd_tx.message import Header


class FieldSafetyTests(unittest.TestCase):
    def test_line_breaks_that_would_start_a_field_are_unfolded(self):
        header = Header.parse(b"Subject: s\n")
        header.add("X-A", "one\nBcc: forged@example.net")
        header.add("X-B", "two\r\nX-Forged: yes", prepend=True)
        header.replace("Subject", "three\rX-Other: 1")
        header.add("X-C", "four\n\nbody")
        self.assertEqual(header.as_bytes(),
                         b"X-B: two X-Forged: yes\nSubject: three X-Other: 1\n"
                         b"X-A: one Bcc: forged@example.net\nX-C: four body\n")
        self.assertEqual(len(Header.parse(header.as_bytes())), 4)

    def test_folding_is_kept(self):
        from qpsmtpd_tx.message import field_value
        self.assertEqual(field_value("a\n\tb\n c"), "a\n\tb\n c")
        self.assertEqual(field_value("a\r\n\tb\n"), "a\n\tb")
        self.assertEqual(field_value("a\n \n\tb"), "a\n\tb")     # no blank continuation line
        self.assertEqual(field_value("plain"), "plain")

    def test_bad_names_are_refused(self):
        header = Header()
        for name in ["", "X:Y", "X Y", "X\nY", "X-\xe4"]:
            self.assertRaises(ValueError, header.add, name, "v")
            self.assertRaises(ValueError, header.replace, name, "v")
        self.assertEqual(len(header), 0)
