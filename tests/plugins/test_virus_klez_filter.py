"""virus/klez_filter on a loopback SMTP server: a Klez-shaped message (a big multipart message
whose audio part is a base64 Windows executable, as Klez sent itself) is refused with
qpsmtpd's text; small messages, and executables beyond the first 41 body lines, pass. The
same messages get the same replies from Perl qpsmtpd 0.94's plugin (when it is installed)."""

import base64

from twisted.trial import unittest

from qpsmtpd_tx import codes
from tests.support.filter_cases import FilterTestCase, message
from tests.support.perl_qpsmtpd import start_both
from tests.support.smtp_session import data_reply

#: the start of a Windows executable (MZ header), as Klez attached itself
EXECUTABLE = (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00\xb8" + b"\x00" * 7
              + b"\x40" + b"\x00" * 35 + b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21" * 6000)


def klez_shaped(filler_lines=0, part_type="audio/x-wav"):
    """A Klez-shaped multipart message body (CRLF), over 60,000 bytes."""
    encoded = base64.encodebytes(EXECUTABLE).decode().replace("\n", "\r\n")
    return ('From: friend@client.example\r\nSubject: a game\r\nMIME-Version: 1.0\r\n'
            'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
            + "filler\r\n" * filler_lines +
            '--b1\r\nContent-Type: text/html\r\n\r\n<html>hi</html>\r\n'
            '--b1\r\nContent-Type: %s;\r\n name=setup.exe\r\n'
            'Content-Transfer-Encoding: base64\r\nContent-ID: <id1>\r\n\r\n' % part_type
            + encoded + "--b1--\r\n")


class KlezFilterTests(FilterTestCase):
    async def test_klez_shaped_message_is_refused(self):
        self.serve(["rcpt_ok", "virus/klez_filter"])
        text = klez_shaped()
        self.assertGreater(len(text), 60000)
        outcome = await self.send(text)
        self.assertEqual(outcome.data, (552, "Klez Virus Detected"))
        self.assertIsNone(outcome.queued)
        self.assertLogged(codes.LOGNOTICE, "^fail, Klez found$")

    async def test_application_part_counts_too(self):
        self.serve(["rcpt_ok", "virus/klez_filter"])
        outcome = await self.send(klez_shaped(part_type="application/octet-stream"))
        self.assertEqual(outcome.data, (552, "Klez Virus Detected"))

    async def test_executable_after_line_41_passes(self):
        self.serve(["rcpt_ok", "virus/klez_filter"])
        outcome = await self.send(klez_shaped(filler_lines=40))
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGINFO, "^pass$")

    async def test_text_part_with_executable_passes(self):
        self.serve(["rcpt_ok", "virus/klez_filter"])
        outcome = await self.send(klez_shaped(part_type="text/plain"))
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGINFO, "^pass$")

    async def test_small_message_is_not_looked_at(self):
        self.serve(["rcpt_ok", "virus/klez_filter"])
        small = ("Content-Type: audio/x-wav\r\n"
                 + base64.encodebytes(EXECUTABLE[:3000]).decode().replace("\n", "\r\n"))
        outcome = await self.send(message(small))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.logged(codes.LOGINFO, "^pass$"), [])

    def test_bad_arguments_are_refused(self):
        prefix = "plugin virus/klez_filter: "
        self.assertStartupError("virus/klez_filter strict", prefix + "arguments must be "
                                "key/value pairs, got 'strict'")
        self.assertStartupError("virus/klez_filter action delete", prefix + "action must be "
                                "reject or tag, not 'delete'")
        self.assertStartupError("virus/klez_filter colour blue", prefix + "unknown argument "
                                "'colour'")

    async def test_action_tag_accepts_with_headers(self):
        self.serve(["rcpt_ok", "virus/klez_filter action tag"])
        outcome = await self.send(klez_shaped())
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual([raw.decode() for _, raw in outcome.header.fields[-2:]],
                         ["X-Virus-Found: Yes\n", "X-Virus-Details: Klez\n"])


class PerlComparisonTests(unittest.TestCase):
    def test_same_replies_as_qpsmtpd(self):
        plugins = ["rcpt_ok", "virus/klez_filter", "queue/maildir {}"]
        perl, ours, _ = start_both(self, plugins, {}, None, "qptx-klez-")
        messages = [klez_shaped(), klez_shaped(part_type="application/x-msdownload"),
                    klez_shaped(filler_lines=40), klez_shaped(part_type="text/plain")]
        replies = {port: [data_reply(port, m) for m in messages] for port in (perl, ours)}
        self.assertEqual([code for code, _ in replies[ours]], [552, 552, 250, 250])
        self.assertEqual([code for code, _ in replies[perl]], [552, 552, 250, 250])
        self.assertEqual(replies[ours][:2], replies[perl][:2])
        self.assertEqual(replies[ours][0], (552, "Klez Virus Detected"))
