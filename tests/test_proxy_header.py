"""Tests of the PROXY header parser (versions 1 and 2), fed the header cut at every byte.

A proxy's header may arrive in any number of reads (Twisted's own parser drops a connection
whose first read is short, Twisted issue 8287): every prefix of a good header must ask for
more, the whole header must parse, and the client's first command after it must stay unread.
"""

import ipaddress
import struct

from twisted.trial import unittest

from qpsmtpd_tx.proxy_header import (MAX_V1_LENGTH, MAX_V2_LENGTH, NEED_MORE, NOT_PROXY,
                                     V2_SIGNATURE, BadHeader, ProxyHeader, parse)

AFTER = b"EHLO client.example\r\n"


def v2(command=1, family=0x11, addresses=b"", tlvs=b"", version=2, length=None):
    """A version 2 header; ``length`` overrides the length field."""
    body = addresses + tlvs
    return V2_SIGNATURE + struct.pack("!BBH", version << 4 | command, family,
                                      len(body) if length is None else length) + body


def tcp(remote, local, remote_port, local_port):
    """The address block of a TCP4/TCP6 version 2 header."""
    return (ipaddress.ip_address(remote).packed + ipaddress.ip_address(local).packed
            + struct.pack("!HH", remote_port, local_port))


GOOD = [
    (b"PROXY TCP4 192.0.2.7 198.51.100.25 50060 25\r\n",
     (1, "TCP4", "192.0.2.7", "198.51.100.25", 50060, 25)),
    (b"PROXY TCP6 2001:db8::7 2001:db8::25 65535 0\r\n",
     (1, "TCP6", "2001:db8::7", "2001:db8::25", 65535, 0)),
    (b"PROXY UNKNOWN\r\n", (1, "UNKNOWN", None, None, None, None)),
    (b"PROXY UNKNOWN ffff:f...f:ffff 1 2\r\n", (1, "UNKNOWN", None, None, None, None)),
    (v2(addresses=tcp("192.0.2.7", "198.51.100.25", 50060, 25)),
     (2, "TCP4", "192.0.2.7", "198.51.100.25", 50060, 25)),
    (v2(family=0x21, addresses=tcp("2001:db8::7", "2001:db8::25", 1, 587)),
     (2, "TCP6", "2001:db8::7", "2001:db8::25", 1, 587)),
    # an IPv4 client of a dual-stack proxy is reported as IPv4, as our listeners do
    (v2(family=0x21, addresses=tcp("::ffff:192.0.2.9", "2001:db8::25", 1, 25)),
     (2, "TCP6", "192.0.2.9", "2001:db8::25", 1, 25)),
    # TLVs (here AWS's VPC endpoint id and a NOOP) are skipped
    (v2(addresses=tcp("192.0.2.7", "198.51.100.25", 1, 25),
        tlvs=b"\xea\x00\x09\x01vpce-123" + b"\x04\x00\x03abc"),
     (2, "TCP4", "192.0.2.7", "198.51.100.25", 1, 25)),
    (v2(command=0, family=0), (2, "LOCAL", None, None, None, None)),
    # LOCAL ignores the family and the addresses
    (v2(command=0, family=0x31, addresses=b"\x00" * 216),
     (2, "LOCAL", None, None, None, None)),
    (v2(family=0), (2, "UNKNOWN", None, None, None, None)),
]

BAD = [
    (b"PROXY TCP4 192.0.2.7 198.51.100.25 50060\r\n", "expected PROXY TCP4|TCP6"),
    (b"PROXY TCP4 2001:db8::7 ::1 1 2\r\n", "is not an IPv4 address"),
    (b"PROXY TCP6 192.0.2.7 192.0.2.8 1 2\r\n", "is not an IPv6 address"),
    (b"PROXY TCP4 192.0.2.999 198.51.100.25 1 2\r\n", "bad address"),
    (b"PROXY TCP4 192.0.2.7 198.51.100.25 1 65536\r\n", "bad port"),
    (b"PROXY TCP4 192.0.2.7 198.51.100.25 01 2\r\n", "bad port"),
    (b"PROXY TCP4  192.0.2.7 198.51.100.25 1 2\r\n", "expected PROXY TCP4|TCP6"),
    (b"PROXY TCP5 a b 1 2\r\n", "expected PROXY TCP4|TCP6"),
    (b"PROXY TCP4 192.0.2.7 198.51.100.25 1 2\n", "a line end without CR"),
    (b"PROXY UNKNOWN " + b"x" * MAX_V1_LENGTH, "no CRLF within 107 bytes"),
    (v2(version=1), "version 1, not 2"),
    (v2(command=2), "unknown command 2"),
    (v2(family=0x12, addresses=tcp("192.0.2.7", "198.51.100.25", 1, 25)), "UDP over IPv4"),
    (v2(family=0x22), "UDP over IPv6"),
    (v2(family=0x31, addresses=b"\x00" * 216), "UNIX stream"),
    (v2(family=0x32), "UNIX datagram"),
    (v2(family=0x41), "unknown family 0x41"),
    (v2(addresses=b"\x00" * 11), "11 address bytes are too few for TCP4"),
    (v2(family=0x21, addresses=tcp("192.0.2.7", "198.51.100.25", 1, 25)),
     "12 address bytes are too few for TCP6"),
    (v2(length=MAX_V2_LENGTH - 15), "2049 bytes, more than the 2048 allowed"),
]


class GoodHeaderTests(unittest.TestCase):
    def test_every_split_point(self):
        for header, fields in GOOD:
            expected = ProxyHeader(*fields, length=len(header))
            data = header + AFTER
            for cut in range(len(header)):
                self.assertIs(parse(data[:cut]), NEED_MORE, (header, cut))
            self.assertEqual(parse(header), expected, header)
            self.assertEqual(parse(data), expected, header)
            self.assertEqual(data[expected.length:], AFTER)

    def test_bytearray_input(self):
        header, fields = GOOD[4]
        self.assertEqual(parse(bytearray(header)), ProxyHeader(*fields, length=28))

    def test_has_addresses(self):
        self.assertEqual([parse(header).has_addresses for header, _ in GOOD],
                         [True, True, False, False, True, True, True, True, False, False, False])

    def test_longest_v2_header_allowed(self):
        header = v2(addresses=tcp("192.0.2.7", "198.51.100.25", 1, 25),
                    tlvs=b"\x04" + struct.pack("!H", MAX_V2_LENGTH - 31) + b"\x00" * (MAX_V2_LENGTH - 31))
        self.assertEqual(len(header), MAX_V2_LENGTH)
        self.assertEqual(parse(header).length, MAX_V2_LENGTH)


class BadHeaderTests(unittest.TestCase):
    def test_every_split_point(self):
        """A malformed header never parses: each prefix asks for more or is refused, and the
        whole is refused with its reason."""
        for header, reason in BAD:
            for cut in range(len(header)):
                try:
                    result = parse(header[:cut])
                except BadHeader:
                    continue
                self.assertIs(result, NEED_MORE, (header, cut))
            with self.assertRaises(BadHeader) as caught:
                parse(header + AFTER)
            self.assertIn(reason, str(caught.exception), header)

    def test_length_refused_before_the_bytes_arrive(self):
        """A v2 head announcing too much is refused at once, not after buffering it."""
        with self.assertRaises(BadHeader):
            parse(v2(length=65535))

    def test_v1_line_without_crlf_refused_at_the_limit(self):
        self.assertIs(parse(b"PROXY UNKNOWN " + b"x" * (MAX_V1_LENGTH - 15)), NEED_MORE)
        self.assertRaises(BadHeader, parse, b"PROXY UNKNOWN " + b"x" * (MAX_V1_LENGTH - 14))


class NotProxyTests(unittest.TestCase):
    def test_smtp_commands_are_not_headers(self):
        for data in (b"E", b"EHLO x\r\n", b"PROXYX", b"PROXY\r\n", b"\r\n\r\nX",
                     b"proxy TCP4 1.2.3.4 1.2.3.5 1 2\r\n"):
            self.assertIs(parse(data), NOT_PROXY, data)

    def test_empty_input_and_signature_prefixes_need_more(self):
        for data in (b"", b"P", b"PROXY", b"\r\n", V2_SIGNATURE):
            self.assertIs(parse(data), NEED_MORE, data)
