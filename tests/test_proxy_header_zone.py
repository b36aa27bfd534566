"""A version 1 PROXY header naming an IPv6 address with a zone index (``fe80::1%eth0``):
Python's ipaddress accepts any text after the ``%``, a CR included, which would then be the
client's address in the Received field, the notes and the logs. Refused as a bad header."""

from twisted.trial import unittest

from qpsmtpd_tx.proxy_header import BadHeader, parse


class ZoneIndexTests(unittest.TestCase):
    def test_zone_index_is_refused(self):
        for line in [b"PROXY TCP6 fe80::1%eth0 2001:db8::25 1 25\r\n",
                     b"PROXY TCP6 fe80::1%\rX-Forged:1 2001:db8::25 1 25\r\n",
                     b"PROXY TCP6 2001:db8::7 fe80::1%1 1 25\r\n"]:
            with self.assertRaises(BadHeader) as caught:
                parse(line)
            self.assertIn("zone index", str(caught.exception))

    def test_plain_ipv6_still_parses(self):
        header = parse(b"PROXY TCP6 fe80::1 2001:db8::25 1 25\r\n")
        self.assertEqual((header.remote_ip, header.local_ip), ("fe80::1", "2001:db8::25"))
