"""The milter packet codec (qpsmtpd_tx/milter/codec.py), bytes only: the packets we build are
checked byte for byte against the protocol's layout, written out here by hand."""

import struct

from twisted.trial import unittest

from qpsmtpd_tx.milter import codec
from qpsmtpd_tx.milter.codec import ProtocolError


def raw(command, data=b""):
    return struct.pack("!I", len(data) + 1) + command + data


class PacketTests(unittest.TestCase):
    def test_optneg(self):
        self.assertEqual(codec.optneg_packet(0x1ff, 0x1fffff),
                         b"\0\0\0\x0dO\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff")

    def test_connect_inet_and_unknown(self):
        self.assertEqual(codec.connect_packet("client.example", codec.FAMILY_INET, 40000,
                                              "192.0.2.1"),
                         raw(b"C", b"client.example\x004\x9c\x40192.0.2.1\0"))
        self.assertEqual(codec.connect_packet("localhost", codec.FAMILY_UNKNOWN, 0, ""),
                         raw(b"C", b"localhost\0U"))

    def test_macros_helo_envelope_header(self):
        self.assertEqual(codec.macro_packet(codec.MAIL, [("i", "1.1"), ("{mail_addr}", "a@b")]),
                         raw(b"D", b"Mi\x001.1\x00{mail_addr}\x00a@b\0"))
        self.assertEqual(codec.helo_packet("client.example"), raw(b"H", b"client.example\0"))
        self.assertEqual(codec.envelope_packet(codec.MAIL, "<a@b>", ["SIZE=10", "BODY=8BITMIME"]),
                         raw(b"M", b"<a@b>\0SIZE=10\0BODY=8BITMIME\0"))
        self.assertEqual(codec.header_packet("Subject", "hi"), raw(b"L", b"Subject\0hi\0"))


class ReaderTests(unittest.TestCase):
    def test_packets_split_anywhere(self):
        stream = raw(b"c") + raw(b"h", b"X-A\0b\0") + raw(b"a")
        reader = codec.PacketReader()
        got = []
        for i in range(len(stream)):
            got.extend(reader.feed(stream[i:i + 1]))
        self.assertEqual(got, [(b"c", b""), (b"h", b"X-A\0b\0"), (b"a", b"")])

    def test_zero_or_huge_length_is_an_error(self):
        self.assertRaises(ProtocolError, codec.PacketReader().feed, b"\0\0\0\0")
        self.assertRaises(ProtocolError, codec.PacketReader(100).feed, b"\0\0\0\x65c")


class ReplyTests(unittest.TestCase):
    def test_simple_replies(self):
        for command in (b"a", b"c", b"d", b"p", b"r", b"s", b"t", b"4", b"f"):
            self.assertEqual(codec.parse_reply(command, b"").command, command)

    def test_header_changes(self):
        self.assertEqual(codec.parse_reply(b"h", b"X-A\0value\0"),
                         codec.Reply(b"h", name="X-A", value="value"))
        self.assertEqual(codec.parse_reply(b"i", b"\0\0\0\x02X-B\0v\0"),
                         codec.Reply(b"i", name="X-B", value="v", index=2))
        self.assertEqual(codec.parse_reply(b"m", b"\0\0\0\x01Subject\0\0"),
                         codec.Reply(b"m", name="Subject", value="", index=1))
        self.assertRaises(ProtocolError, codec.parse_reply, b"h", b"X-A\0")
        self.assertRaises(ProtocolError, codec.parse_reply, b"m", b"\0\0")

    def test_envelope_changes(self):
        self.assertEqual(codec.parse_reply(b"+", b"<x@y>\0").address, "<x@y>")
        self.assertEqual(codec.parse_reply(b"-", b"x@y\0").address, "x@y")
        reply = codec.parse_reply(b"e", b"<new@y>\0SIZE=5 BODY=7BIT\0")
        self.assertEqual((reply.address, reply.parameters), ("<new@y>", ("SIZE=5", "BODY=7BIT")))
        self.assertRaises(ProtocolError, codec.parse_reply, b"e", b"")
        self.assertEqual(codec.parse_reply(b"q", b"held\0").reason, "held")
        self.assertEqual(codec.parse_reply(b"b", b"new body\r\n").data, b"new body\r\n")

    def test_unknown_reply(self):
        self.assertRaises(ProtocolError, codec.parse_reply, b"Z", b"")

    def test_replycode(self):
        reply = codec.parse_reply(b"y", b"554 5.7.1 go away\0")
        self.assertEqual((reply.code, reply.lines), (554, ("5.7.1 go away",)))
        reply = codec.parse_reply(b"y", b"451-4.3.0 one\r\n451 4.3.0 100%% two\0")
        self.assertEqual((reply.code, reply.lines), (451, ("4.3.0 one", "4.3.0 100% two")))
        self.assertEqual(codec.parse_reply(b"y", b"550\0").lines, ("",))

    def test_bad_replycodes(self):
        for text in (b"250 fine", b"abc", b"", b"5500 x", b"550-a\r\n551 b", b"550-only",
                     b"550 a\r\n550 b", b"550 5.7.1 ok\x07bell", b"450 5.7.1 mixed", b"999 x"):
            self.assertRaises(ProtocolError, codec.parse_reply, b"y", text + b"\0")


class OptnegTests(unittest.TestCase):
    def test_answer_with_macro_lists(self):
        data = struct.pack("!III", 6, 0x101, 0x400) + struct.pack("!I", 2) + b"i {mail_addr}\0"
        data += struct.pack("!I", 0) + b"{client_addr} j\0"
        answer = codec.parse_optneg(data)
        self.assertEqual((answer.version, answer.actions, answer.protocol), (6, 0x101, 0x400))
        self.assertEqual(answer.macros, {2: ["i", "{mail_addr}"], 0: ["{client_addr}", "j"]})

    def test_short_or_broken_answers(self):
        self.assertRaises(ProtocolError, codec.parse_optneg, b"\0" * 11)
        self.assertRaises(ProtocolError, codec.parse_optneg, b"\0" * 12 + b"\0\0\0\x02i")

    def test_macro_names_compare_with_or_without_braces(self):
        self.assertEqual(codec.normal_macro_name("{i}"), "i")
        self.assertEqual(codec.normal_macro_name("auth_authen"), "{auth_authen}")
        self.assertEqual(codec.normal_macro_name("{auth_authen}"), "{auth_authen}")
