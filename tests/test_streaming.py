"""qpsmtpd_tx.streaming: bounded chunks out of a spooled body, with real files and pipes."""

import io
import os

from twisted.trial import unittest

from qpsmtpd_tx import streaming


class WriteToFdTests(unittest.TestCase):
    def setUp(self):
        self.path = os.path.abspath(self.mktemp())
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        self.addCleanup(os.close, self.fd)
        self.calls = []
        real = os.writev

        def counting(fd, pieces):
            self.calls.append(sum(len(p) for p in pieces))
            return real(fd, pieces)
        self.patch(streaming.os, "writev", counting)

    def written(self):
        with open(self.path, "rb") as f:
            return f.read()

    def test_small_message_is_one_writev(self):
        total = streaming.write_to_fd(self.fd, [b"Return-Path: <>\n", b"H: v\n\n"],
                                      io.BytesIO(b"body\n"))
        self.assertEqual(self.written(), b"Return-Path: <>\nH: v\n\nbody\n")
        self.assertEqual(total, len(self.written()))
        self.assertEqual(len(self.calls), 1)

    def test_large_body_in_chunks_of_at_most_chunk_size(self):
        body = bytes(range(256)) * 1000             # 256000 bytes
        with open(self.mktemp(), "w+b") as spool:
            spool.write(body)
            spool.seek(0)
            streaming.write_to_fd(self.fd, [b"head\n"], spool, chunk_size=65536)
        self.assertEqual(self.written(), b"head\n" + body)
        self.assertLessEqual(max(self.calls), 65536 + len(b"head\n"))
        self.assertEqual(len(self.calls), 4)        # 3 full chunks (+ head), then the rest


class CrlfTests(unittest.TestCase):
    def test_chunks_and_length_agree(self):
        body = b"line\n" * 30000 + b"no newline at the end"
        head = b"X-Envelope-From: <a@b>\nSubject: s\n\n"
        f = io.BytesIO(body)
        length = streaming.crlf_length(head, f, chunk_size=4096)
        data = b"".join(streaming.message_chunks(head, f, chunk_size=4096, crlf=True))
        self.assertEqual(data, (head + body).replace(b"\n", b"\r\n"))
        self.assertEqual(length, len(data))

    def test_an_empty_head_still_sends_the_body(self):
        """crlf_length counts the body after an empty head: the chunks must carry it too."""
        f = io.BytesIO(b"body\n" * 3)
        length = streaming.crlf_length(b"", f)
        data = b"".join(streaming.message_chunks(b"", f, crlf=True))
        self.assertEqual((data, length), (b"body\r\n" * 3, 18))

    def test_lazy(self):
        """The body is read only as the consumer asks for chunks."""
        f = io.BytesIO(b"a\n" * 10)
        chunks = streaming.message_chunks(b"h\n", f, chunk_size=4)
        self.assertEqual(next(chunks), b"h\n")
        self.assertEqual(f.tell(), 0)
        self.assertEqual(next(chunks), b"a\na\n")
        self.assertEqual(f.tell(), 4)
