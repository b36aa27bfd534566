"""The ``spamassassin`` plugin against a broken or hostile spamd: a malformed or non-finite
score, an answer of megabytes, one that never ends, header values holding line breaks.
Against stand-in spamds on 127.0.0.1 ports written here (the real spamd of
tests/plugins/test_spamassassin.py never answers like this); the SMTP server is real, on a
loopback socket (tests/support/filter_cases.py)."""

from qpsmtpd_tx import codes
from tests.support.endless import endless_server
from tests.support.filter_cases import FilterTestCase, answering_server, message

UNABLE = (452, "Unable to scan for spam")


def spamd_answer(fields, headers):
    """A spamd answer to HEADERS: the status line, ``fields``, then the message's header."""
    return (b"SPAMD/1.1 0 EX_OK\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"
            + b"".join(h + b"\r\n" for h in headers) + b"\r\n")


class HostileSpamdTests(FilterTestCase):
    def spamd(self, answer):
        port = answering_server(self, answer)
        self.serve(["rcpt_ok", "spamassassin spamd_socket 127.0.0.1:%d reject 5" % port])

    async def test_non_finite_score_is_no_score(self):
        for status in [b"No, score=nan required=5.0", b"Yes, score=inf required=5.0",
                       b"No, score=1.0 required=nan"]:
            self.spamd(spamd_answer([], [b"X-Spam-Status: " + status]))
            self.assertEqual((await self.send(message("x"))).data, UNABLE, status)
            self.assertLogged(codes.LOGERROR, "cannot scan: no score in spamd's answer")

    async def test_malformed_spam_line_is_a_clear_failure(self):
        for line in [b"Spam: True ; 1.2.3 / 5.0", b"Spam: True ; . / 5.0"]:
            self.spamd(spamd_answer([line], []))
            self.assertEqual((await self.send(message("x"))).data, UNABLE, line)
            self.assertLogged(codes.LOGERROR, "cannot scan: malformed score in spamd's answer")

    async def test_answer_of_megabytes(self):
        self.spamd(spamd_answer([b"Spam: False ; 1.0 / 5.0"],
                                [b"X-Spam-Big: " + b"y" * (3 << 20)]))
        self.assertEqual((await self.send(message("x"))).data, UNABLE)
        self.assertLogged(codes.LOGERROR, "answer longer than 1048576 bytes")

    async def test_answer_that_never_ends(self):
        port, factory = endless_server(
            self, b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.0 / 5.0\r\n\r\nX-Spam-X: ",
            b"y" * 65536)
        self.serve(["rcpt_ok", "spamassassin spamd_socket 127.0.0.1:%d timeout 60" % port])
        self.assertEqual((await self.send(message("x"))).data, UNABLE)
        self.assertLogged(codes.LOGERROR, "answer longer than 1048576 bytes")
        self.assertEqual(factory.connections, 1)

    async def test_header_values_cannot_forge_fields(self):
        self.spamd(spamd_answer([b"Spam: False ; 1.0 / 5.0"],
                                [b"X-Spam-Status: No, score=1.0 required=5.0"
                                 b"\rBcc: forged@example.net",
                                 b"X-Spam-Level: *\r\rX-Forged: yes"]))
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data[0], 250)
        head = outcome.queued.split(b"\n\n", 1)[0]
        self.assertNotIn(b"\r", head)
        self.assertEqual(outcome.header.get("Bcc"), [])
        self.assertEqual(outcome.header.get("X-Forged"), [])
        self.assertEqual(outcome.header.get("X-Spam-Level"), ["* X-Forged: yes"])
