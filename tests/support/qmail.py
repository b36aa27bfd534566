"""The stand-in for qmail-queue (``fake_qmail_queue``, see tests/plugins/test_queue_qmail_queue.py)
and the test case that installs it, for queue/qmail-queue's tests and the big-message tests."""

import os
import shutil
import sys
import tempfile

from twisted.trial import unittest

from tests.support.processes import setenv
from tests.support.server import TransactionMixin, start_server

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_qmail_queue")

HEADER = b"From: a@b.example\r\nTo: u@example.com\r\nSubject: qq\r\nMessage-Id: <qq-1@b.example>\r\n"
BODY = b"line one\r\n..dot stuffed\r\n\r\ncr\rinside\r\n8bit \xc3\xa9\r\nlast line\r\n"


def message_bytes(header=HEADER, body=BODY):
    """What the client sends between DATA and the final dot (already dot-stuffed)."""
    return header + b"\r\n" + body


class QmailTestCase(TransactionMixin, unittest.TestCase):
    """Copies the stand-in to a safe path and gives it a queue directory."""

    default_message = message_bytes()

    def setUp(self):
        # The plugin accepts only [/-_.A-Za-z0-9] in the path (qpsmtpd's rule), so the
        # stand-in is run from a fresh directory under /tmp whatever the checkout's path is.
        self.bindir = tempfile.mkdtemp(prefix="qptx-qq-")
        self.addCleanup(shutil.rmtree, self.bindir, True)
        self.qq = os.path.join(self.bindir, "qmail-queue")
        # Run by this test's own Python (faster than an `env python3` that may be a shim).
        with open(FAKE, "rb") as f:
            script = f.read()
        with open(self.qq, "wb") as f:
            f.write(b"#!" + sys.executable.encode() + b"\n" + script.split(b"\n", 1)[1])
        os.chmod(self.qq, 0o755)
        self.queue = os.path.join(self.bindir, "queue")
        os.mkdir(self.queue)
        for name in [n for n in os.environ if n.startswith("FAKE_QMAIL_QUEUE_")] + ["QMAILQUEUE"]:
            self.setenv(name, None)
        self.setenv("FAKE_QMAIL_QUEUE_DIR", self.queue)

    setenv = setenv

    def queued(self):
        """[(message bytes, envelope bytes)] of every message the stand-in queued."""
        out = []
        n = 1
        while os.path.exists(os.path.join(self.queue, "%d.envelope" % n)):
            with open(os.path.join(self.queue, "%d.message" % n), "rb") as f:
                message = f.read()
            with open(os.path.join(self.queue, "%d.envelope" % n), "rb") as f:
                envelope = f.read()
            out.append((message, envelope))
            n += 1
        return out

    def envelope_errors(self):
        path = os.path.join(self.queue, "error")
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return f.read()

    def start(self, args="", files=None):
        line = "queue/qmail-queue %s %s" % (self.qq, args)
        return start_server(self, ["rcpt_ok", line.strip()], files)
