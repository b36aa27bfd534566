"""BodySpool makes its in-memory buffer at the first write (a connection's transactions
mostly end without a body: five per connection at one message): reading, spilling to disk and
discarding behave as before whether or not anything was written."""

import os

from twisted.trial import unittest

from qpsmtpd_tx.message import BodySpool


class LazyBufferTests(unittest.TestCase):
    """An empty spool, a spool spilled at its first write, and one reused after discard."""

    def test_empty(self):
        body = BodySpool()
        self.assertEqual((body.getvalue(), body.size, body.filename), (b"", 0, None))
        with body.open() as f:
            self.assertEqual(f.read(), b"")
        body.write(b"")
        body.finish()
        body.discard()
        self.assertEqual(body.getvalue(), b"")

    def test_in_memory(self):
        body = BodySpool(self.mktemp(), 100)
        body.write(b"abc")
        body.write(b"def")
        self.assertEqual((body.getvalue(), body.size, body.filename), (b"abcdef", 6, None))

    def test_spilled_at_the_first_write(self):
        spool = os.path.abspath(self.mktemp())
        body = BodySpool(spool, 0)
        body.write(b"abc")
        self.assertIsNotNone(body.filename)
        body.write(b"def")
        self.assertEqual(body.getvalue(), b"abcdef")
        name = body.filename
        body.discard()
        self.assertFalse(os.path.exists(name))

    def test_spilled_later_keeps_what_was_in_memory(self):
        body = BodySpool(os.path.abspath(self.mktemp()), 4)
        body.write(b"abc")
        body.write(b"def")
        self.assertIsNotNone(body.filename)
        self.assertEqual(body.getvalue(), b"abcdef")
        body.discard()

    def test_written_again_after_discard(self):
        body = BodySpool(None, 0)
        body.write(b"old")
        body.discard()
        self.assertEqual((body.getvalue(), body.size), (b"", 0))
        body.write(b"new")
        self.assertEqual((body.getvalue(), body.size), (b"new", 3))
