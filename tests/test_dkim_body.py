"""The streaming DKIM body hash against dkimpy's canonicalization of the whole body (the
reference implementation), on bodies built to hit the edge cases: trailing empty lines and
white space, lines of only white space, no final LF, lines longer than a chunk, and every
chunk boundary; and its memory on a large body."""

import hashlib
import io
import os
import random
import subprocess
import sys

from dkim.canonicalization import Relaxed, Simple
from twisted.trial import unittest

from qpsmtpd_tx import dkim_body
from qpsmtpd_tx.dkim_body import body_hashes

PIECES = [b"a", b"b c", b" ", b"\t", b"  \t ", b"\n", b"\n", b"\n", b"x\t\ty", b"\r", b"z "]


def reference(body, canon, limit=None):
    """dkimpy's canonical body (it takes CRLF text), cut at ``limit``, hashed."""
    text = (Relaxed if canon == "relaxed" else Simple).canonicalize_body(
        body.replace(b"\n", b"\r\n"))
    return hashlib.sha256(text[:limit] if limit is not None else text).digest(), len(text)


class BodyHashTests(unittest.TestCase):
    def check(self, body, chunk_size):
        wanted = [(c, "sha256", limit) for c in ("simple", "relaxed") for limit in (None, 5)]
        got = body_hashes(io.BytesIO(body), wanted, chunk_size)
        for key in wanted:
            digest, length = reference(body, key[0], key[2])
            self.assertEqual(got[key].digest(), digest, (key, body, chunk_size))
            self.assertEqual(got[key].length, length, (key, body))

    def test_edge_cases(self):
        for body in [b"", b"\n", b"\n\n", b"  \n", b"a", b"a\n\n\n", b"a \n \n\t\n",
                     b" a  b \t\n\nc\n\n", b"\n\na\n", b"a\r\nb\n"]:
            for size in (1, 2, 3, 64):
                self.check(body, size)

    def test_random_bodies_and_long_lines(self):
        # lines longer than a chunk are passed on in pieces
        self.patch(dkim_body, "HASH_CHUNK", 4)
        rng = random.Random(7)
        for _ in range(400):
            body = b"".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 40)))
            self.check(body, rng.choice((1, 2, 3, 5, 8)))

    def test_one_piece_and_streamed_bodies(self):
        """A body that fits one chunk is canonicalized whole (canonical_body), one a byte
        longer streamed: every edge case of either, at the size where the path changes."""
        rng = random.Random(11)
        for _ in range(300):
            body = b"".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 40)))
            for size in (len(body), len(body) + 1, max(1, len(body) - 1)):
                self.check(body, size)

    def test_sha1(self):
        got = body_hashes(io.BytesIO(b"hi\n"), [("simple", "sha1", None)])
        self.assertEqual(got[("simple", "sha1", None)].digest(),
                         hashlib.sha1(b"hi\r\n").digest())


class MemoryTests(unittest.TestCase):
    def test_a_50_mb_body_is_hashed_in_bounded_memory(self):
        """A child process hashes a 50 MB spool file: its peak RSS grows by far less than
        the body (dkimpy, given the whole message, needs several copies of it)."""
        line = b"Lorem ipsum dolor  sit amet,\t consectetur adipiscing elit   \n"
        self.assertHashedInBoundedMemory([line] * (50 * 1024 * 1024 // len(line)))

    def test_millions_of_empty_lines_are_hashed_in_bounded_memory(self):
        """20 MB of empty lines, then one that is not: they were held back (trailing empty
        lines are not hashed) and then passed on at once, 40 MB for each canonicalization."""
        self.assertHashedInBoundedMemory([b"\n" * (1024 * 1024)] * 20 + [b"x\n"])

    def assertHashedInBoundedMemory(self, pieces):
        """A child process hashes a spool file of ``pieces``, simple and relaxed: its peak
        RSS grows by less than 8 MiB."""
        path = self.mktemp()
        with open(path, "wb") as f:
            for piece in pieces:
                f.write(piece)
        script = (
            "import resource, sys\n"
            "from qpsmtpd_tx.dkim_body import body_hashes\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "with open(sys.argv[1], 'rb') as f:\n"
            "    body_hashes(f, [('relaxed', 'sha256', None), ('simple', 'sha256', None)])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
        root = os.path.dirname(os.path.dirname(os.path.abspath(dkim_body.__file__)))
        grown_kib = int(subprocess.check_output([sys.executable, "-c", script, path],
                                                env=dict(os.environ, PYTHONPATH=root)))
        self.assertLess(grown_kib, 8 * 1024, "peak RSS grew by %d KiB" % grown_kib)
