"""A 200 MiB message through each queue plugin: delivered byte for byte, and the server's peak
memory (VmHWM of a real twistd process) grows by less than 16 MiB.

The body is generated line by line as it is sent and compared by its SHA-256, so the test
process never holds it either. These tests move 200 MiB each: keep them few.
"""

import os

from twisted.trial import unittest

from test import test_queue_qmail as qmail_tests
from test.support.bigmail import MIB, body_digest_of_file, rss_growth_kib
from test.support.exim import private_exim
from test.support.harness import write_config
from test.support.postfix import start_postfix
from test.support.processes import start_twistd

SIZE = 200 * MIB
#: the allowed growth of the server's peak RSS while it takes and delivers SIZE bytes
MAX_GROWTH_KIB = 16 * 1024
#: enough for SIZE plus the header (the shipped etc/databytes is 50 MB)
DATABYTES = str(SIZE + MIB)


class BigMessageTestCase(unittest.TestCase):
    """A twistd server with the given plugins; ``deliver`` sends the big message."""

    def start(self, plugins, files=None):
        self.dir = os.path.abspath(self.mktemp())
        contents = {"databytes": DATABYTES}
        contents.update(files or {})
        config = write_config(os.path.join(self.dir, "config"), plugins, contents)
        self.process, self.port, self.log = start_twistd(self, config)

    def deliver(self):
        """Send the big message; assert it was accepted within the memory bound; its digest."""
        growth, code, text, digest = rss_growth_kib(self.process, self.port, SIZE)
        self.assertEqual(code, 250, text)
        print("\npeak RSS growth for %d MiB: %.1f MiB" % (SIZE // MIB, growth / 1024.0))
        self.assertLess(growth, MAX_GROWTH_KIB,
                        "peak RSS grew by %d KiB for a %d MiB message" % (growth, SIZE // MIB))
        return digest


class MaildirTests(BigMessageTestCase):
    def test_200_mib_message(self):
        maildir = os.path.join(os.path.abspath(self.mktemp()), "maildir")
        self.start(["rcpt_ok", "queue/maildir %s" % maildir])
        digest = self.deliver()
        self.assertEqual(len(os.listdir(os.path.join(maildir, "new"))), 2)  # warm-up and big
        self.assertEqual(body_digest_of_file(largest_file(os.path.join(maildir, "new"))), digest)


class QmailQueueTests(BigMessageTestCase, qmail_tests.QmailTestCase):
    def test_200_mib_message(self):
        self.start(["rcpt_ok", "queue/qmail-queue %s" % self.qq])
        digest = self.deliver()
        message = os.path.join(self.queue, "2.message")
        self.assertTrue(os.path.exists(os.path.join(self.queue, "2.envelope")))
        self.assertEqual(body_digest_of_file(message), digest)


class EximTests(BigMessageTestCase):
    def test_200_mib_message(self):
        exim = private_exim(self, message_size_limit="300M")
        self.start(["rcpt_ok", exim.plugin_line()])
        digest = self.deliver()
        self.assertTrue(exim.wait_idle_blocking(timeout=120), "Exim still has %s" % exim.queued())
        self.assertEqual(body_digest_of_file(largest_file(os.path.join(exim.maildir, "new"))),
                         digest)


class PostfixTests(BigMessageTestCase):
    """Through Postfix's cleanup (queue/postfix-queue) and its smtpd (queue/smtp-forward)."""

    def through_postfix(self, plugin_line):
        postfix = start_postfix(self, settings={"message_size_limit": str(SIZE + 2 * MIB)})
        self.start(["rcpt_ok", plugin_line(postfix)])
        digest = self.deliver()
        self.assertTrue(postfix.wait_idle(timeout=120), "Postfix still has %s" % postfix.queued())
        # a delivery file: the envelope block, an empty line, the message
        delivered = largest_file(os.path.join(postfix.delivered_dir, "new"))
        self.assertEqual(body_digest_of_file(delivered, empty_lines=2), digest)

    def test_200_mib_message_postfix_queue(self):
        self.through_postfix(lambda postfix: "queue/postfix-queue %s" % postfix.cleanup_socket)

    def test_200_mib_message_smtp_forward(self):
        self.through_postfix(lambda postfix: "queue/smtp-forward 127.0.0.1 %d" % postfix.port)


def largest_file(directory):
    """The path of the largest file in ``directory`` (the big message, not the warm-up one)."""
    paths = [os.path.join(directory, name) for name in os.listdir(directory)]
    return max(paths, key=os.path.getsize)
