"""The ``qpsmtpd-tx`` command line, run as a real process (``python -m qpsmtpd_tx``)."""

import os
import subprocess
import sys

from twisted.trial import unittest

from test.support.processes import CHECKOUT, server_env


def run_cli(args, **kwargs):
    """Run ``python -m qpsmtpd_tx ARGS`` from the checkout; the CompletedProcess."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "qpsmtpd_tx"] + list(args), cwd=CHECKOUT,
                          env=server_env(), timeout=60, **kwargs)


class BrokenPipeTests(unittest.TestCase):
    """``qpsmtpd-tx plugins doc X | head``: the reader going away is not an error to report."""

    def run_into_closed_pipe(self, args):
        read_end, write_end = os.pipe()
        os.close(read_end)   # as `head` does once it has its lines: every write now fails
        try:
            return run_cli(args, stdout=write_end)
        finally:
            os.close(write_end)

    def test_doc_into_closed_pipe(self):
        result = self.run_into_closed_pipe(["plugins", "doc", "aliases"])
        self.assertEqual(result.stderr, b"")
        self.assertNotEqual(result.returncode, 0)

    def test_listing_into_closed_pipe(self):
        result = self.run_into_closed_pipe(["plugins"])
        self.assertEqual(result.stderr, b"")
