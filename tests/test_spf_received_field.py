"""The Received-SPF field's value is made once per result, escaped as
qpsmtpd_tx.printable escapes client text: a control character in the identity or the HELO
name cannot split the header (the plugin adds the value as it is)."""

from twisted.trial import unittest

from qpsmtpd_tx.spf import SPFResult


class ReceivedSPFTests(unittest.TestCase):
    def test_control_characters_are_escaped(self):
        result = SPFResult(result="neutral", scope="mfrom", identity="a\nb@example.com",
                           domain="example.com", ip="192.0.2.1", helo="x\x1by.example",
                           mechanism="?all")
        value = result.received_spf("mx.example.org")
        self.assertNotIn("\n", value)
        self.assertNotIn("\x1b", value)
        self.assertIn("envelope-from=\"a\\x0ab@example.com\"", value)
        self.assertIn("helo=\"x\\x1by.example\"", value)
        self.assertIs(result.received_spf("mx.example.org"), value)
