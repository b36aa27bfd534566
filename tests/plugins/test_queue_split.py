"""The queue plugins with ``recipient_policy split``: each delivers to the accepted recipients
only, one submission per copy of the message (recipients whose headers differ).

One message to three recipients through the ``split_score`` test filter (score 3 in
``X-Test-Score``): ``low`` (threshold 2) refuses it and its copy is quarantined, ``mid`` (5)
and ``high`` (10) take it, each copy with its own ``X-Test-Threshold`` field, so the back end
gets two submissions. The back ends are the suite's: the qmail-queue STAND-IN
(tests/support/qmail.py; Debian has no qmail), and the REAL Postfix (cleanup and smtpd) and
Exim (tests/support/postfix.py, tests/support/exim.py), skipped with the reason where they
cannot run. queue/maildir is covered by tests/test_outcomes.py.
"""

import os

from qpsmtpd_tx.testing import maildir_messages
from tests.plugins.test_queue_exim_bsmtp import EximTestCase, split_delivered
from tests.support.postfix import start_postfix
from tests.support.postfix_cases import PostfixTestCase
from tests.support.qmail import QmailTestCase
from tests.support.server import start_server

FILTER = ["note_rcpt low@example.com test_threshold=2 mid@example.com test_threshold=5"
          " high@example.com test_threshold=10", "split_score"]
RECIPIENTS = ["<low@example.com>", "<mid@example.com>", "<high@example.com>"]
MESSAGE = b"Subject: split\r\nX-Test-Score: 3\r\n\r\nbody\r\n"


class SplitCase:
    """Mixin: the config, the transaction and the checks every back end shares."""

    def files(self, **more):
        self.quarantine = os.path.abspath(self.mktemp())
        return dict({"quarantine_dir": self.quarantine}, **more)

    async def deliver(self, port):
        client = await self.session(port)
        code, lines = await self.send(client, recipients=RECIPIENTS, data=MESSAGE)
        self.assertEqual(code, 250, lines)
        [held] = maildir_messages(self.quarantine)
        self.assertIn(b"Delivered-To: low@example.com\n", held)
        return lines

    def assert_copies(self, copies):
        """``copies``: [(recipients, message bytes)] the back end got, in any order."""
        self.assertEqual(sorted(r for r, _ in copies), [["high@example.com"], ["mid@example.com"]])
        for recipients, message in copies:
            threshold = b"10.0" if recipients == ["high@example.com"] else b"5.0"
            self.assertIn(b"\nX-Test-Threshold: " + threshold + b"\n", message)
            self.assertEqual(message.count(b"X-Test-Threshold"), 1)
            self.assertIn(b"\nbody\n", message)


class QmailQueueSplitTests(SplitCase, QmailTestCase):
    async def test_one_run_per_copy(self):
        server, port = start_server(self, FILTER + ["rcpt_ok", "queue/qmail-queue %s" % self.qq],
                                    self.files())
        await self.deliver(port)
        copies = []
        for message, envelope in self.queued():
            # F<sender>\0 T<rcpt>\0 ... \0
            fields = envelope.split(b"\0")
            copies.append(([f[1:].decode() for f in fields if f.startswith(b"T")], message))
        self.assert_copies(copies)


class PostfixSplitTests(SplitCase, PostfixTestCase):
    async def check(self, queue_line):
        """Deliver through the line ``queue_line(postfix)`` gives; ``(reply lines, postfix)``."""
        postfix = start_postfix(self)
        server, port = self.start_front(queue_line(postfix), self.files(), plugins=FILTER)
        lines = await self.deliver(port)
        await self.settle(postfix)
        self.assert_copies([(d.recipients, d.message) for d in postfix.deliveries()])
        return lines, postfix

    async def test_postfix_queue_one_cleanup_submission_per_copy(self):
        lines, postfix = await self.check(
            lambda postfix: "queue/postfix-queue %s" % postfix.cleanup_socket)
        self.assertRegex(lines[0], r"^Queued! \(Queue-Id: [0-9A-F]+\)$")
        self.assertEqual(len({d.queue_id for d in postfix.deliveries()}), 2)

    async def test_smtp_forward_one_transaction_per_copy(self):
        lines, postfix = await self.check(
            lambda postfix: "queue/smtp-forward 127.0.0.1 %d" % postfix.port)
        self.assertRegex(lines[0], r"^queued as [0-9A-F]+$")


class EximSplitTests(SplitCase, EximTestCase):
    async def test_one_batch_per_copy(self):
        self.exim()
        server, port = start_server(self, FILTER + ["rcpt_ok", self.mta.plugin_line()],
                                    self.files(rcpthosts="example.com"))
        await self.deliver(port)
        await self.idle()
        copies = [([envelope_to], message) for _, envelope_to, _, message in
                  (split_delivered(d) for d in self.mta.delivered())]
        self.assert_copies(copies)
        self.assertEqual(len(self.received_lines()), 2)
