"""SASL answers a hostile client may send (invalid or wrongly padded base64, NUL in odd places,
non-ASCII, ``=``, ``*`` with blanks) and AUTH out of place: each gets its clear reply, and
nothing is logged as an error. Through auth/auth_flat_file, in memory."""

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.testing import capture_log
from tests.support.harness import MemoryClient, make_server
from tests.test_auth import NO_DELAY, PLUGINS, b64

BAD_PLAIN = "501 Invalid base64 data or PLAIN response\r\n"
GOOD = b64("\0u@example.org\0s3cr:et")

EXCHANGES = [
    (["AUTH PLAIN =", "="], ["334  \r\n", BAD_PLAIN]),
    (["AUTH PLAIN " + GOOD[:-1]], [BAD_PLAIN]),
    (["AUTH PLAIN ===="], [BAD_PLAIN]),
    (["AUTH PLAIN " + b64("\0\0")], ["535 Authentication invalid\r\n"]),
    (["AUTH PLAIN " + b64("u\0u\0p\0")], [BAD_PLAIN]),
    (["AUTH PLAIN \xe9\xe9"], [BAD_PLAIN]),
    (["AUTH LOGIN ="], ["501 Invalid base64 data\r\n"]),
    (["AUTH LOGIN", b64("u@example.org"), "="],
     ["334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n", "501 Invalid base64 data\r\n"]),
    (["AUTH LOGIN " + b64("u\0x"), b64("\0")],
     ["334 UGFzc3dvcmQ6\r\n", "535 5.7.8 Authentication credentials invalid\r\n"]),
    (["AUTH PLAIN", " * "], ["334  \r\n", "501 Authentication cancelled\r\n"]),
    (["AUTH", "AUTH  PLAIN", "*"],
     ["504 Unimplemented authentification mechanism: \r\n", "334  \r\n",
      "501 Authentication cancelled\r\n"]),
]


class HostileAnswerTests(unittest.TestCase):
    def test_answers(self):
        server = make_server(self, PLUGINS, dict(NO_DELAY, auth_max_failures="0"))
        client = MemoryClient(server)
        self.assertEqual(client.command("AUTH PLAIN " + GOOD), "500 Unrecognized command\r\n")
        client.command("EHLO c.example")
        lines = capture_log(self, server)
        self.patch(server.chain.hooks, "log", lambda level, text, **kw: lines.append((level, text)))
        for commands, replies in EXCHANGES:
            self.assertEqual([client.command(c) for c in commands], replies, commands)
        cram = client.command("AUTH CRAM-MD5")
        self.assertTrue(cram.startswith("334 "), cram)
        self.assertEqual(client.command(b64("u@example.org")),
                         "504 Invalid authentication string\r\n")
        self.assertEqual([text for level, text in lines if level <= codes.LOGWARN], [])
        self.assertEqual(client.command("MAIL FROM:<a@b.example>")[:3], "250")
        self.assertEqual(client.command("AUTH PLAIN " + GOOD),
                         "503 5.5.1 MAIL transaction in progress\r\n")
        client.command("RSET")
        self.assertEqual(client.command("AUTH PLAIN " + GOOD)[:3], "235")
        self.assertEqual(client.command("AUTH PLAIN " + GOOD), "503 but you already said AUTH ...\r\n")
