"""A 200 MiB message through each queue plugin: delivered byte for byte, and the server's peak
memory (VmHWM of a real twistd process) grows by less than 16 MiB.

The body is generated line by line as it is sent and compared by its SHA-256, so the test
process never holds it either. These tests move 200 MiB each: keep them few.
"""

import os
import re
import smtplib
import socket
import threading

from twisted.trial import unittest

from tests.support.clamd import start_clamd
from tests.support.bigmail import MIB, body_digest_of_file, rss_growth_kib
from tests.support.exim import private_exim
from tests.support.harness import write_config
from tests.support.postfix import start_postfix
from tests.support.processes import CHECKOUT, start_twistd
from tests.support.qmail import QmailTestCase
from tests.support.rspamd import start_rspamd
from tests.support.spamd import shared_spamd

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


class QmailQueueTests(BigMessageTestCase, QmailTestCase):
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


class FilterTests(BigMessageTestCase):
    """Content filters with a 200 MiB message, delivered to a Maildir after them."""

    def maildir_plugins(self, *filters):
        self.maildir = os.path.join(os.path.abspath(self.mktemp()), "maildir")
        self.start(["rcpt_ok"] + list(filters) + ["queue/maildir %s" % self.maildir])

    def delivered_digest(self):
        return body_digest_of_file(largest_file(os.path.join(self.maildir, "new")))

    def test_spamassassin_skips_a_message_above_size_limit(self):
        # the default size_limit (500000 bytes, as qpsmtpd): nothing is sent to spamd
        spamd = shared_spamd()
        self.maildir_plugins("spamassassin spamd_socket 127.0.0.1:%d" % spamd.port)
        digest = self.deliver()
        self.assertEqual(self.delivered_digest(), digest)
        with open(largest_file(os.path.join(self.maildir, "new")), "rb") as f:
            self.assertNotIn(b"X-Spam-", f.read(4096))

    def test_spamassassin_streams_to_spamd(self):
        # A STAND-IN for spamd (FakeSpamd): the real one would take minutes over 200 MiB.
        # It checks that the request is as long as its Content-length says.
        fake = FakeSpamd(os.path.abspath(self.mktemp()))
        self.addCleanup(fake.stop)
        self.maildir_plugins("spamassassin spamd_socket 127.0.0.1:%d size_limit %d"
                             % (fake.port, 2 * SIZE))
        digest = self.deliver()
        self.assertEqual(self.delivered_digest(), digest)
        requests = fake.requests()
        self.assertEqual(len(requests), 2)   # the warm-up message and the big one
        for content_length, received, path in requests:
            self.assertEqual(content_length, received)
        self.assertEqual(body_digest_of_file(max(requests, key=lambda r: r[1])[2]), digest)

    def test_clamdscan_streams_to_clamd(self):
        clamd = start_clamd(stream_max=2 * SIZE)
        self.addCleanup(clamd.stop)
        self.maildir_plugins("virus/clamdscan clamd_socket %s scan_all 1 max_size %d"
                             % (clamd.socket, 2 * SIZE // 1024))
        digest = self.deliver()
        self.assertEqual(self.delivered_digest(), digest)
        with open(largest_file(os.path.join(self.maildir, "new")), "rb") as f:
            self.assertIn(b"\nX-Virus-Found: No\n", f.read(4096))


class FakeSpamd:
    """A STAND-IN for spamd (the real one cannot scan 200 MiB in a test's time): accepts
    connections in a thread, reads a SPAMC request, stores its message with LF line endings
    in a file (never in memory), answers "not spam" and closes."""

    ANSWER = (b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 5.0\r\n\r\n"
              b"X-Spam-Status: No, score=0.0 required=5.0 tests=NONE autolearn=no\r\n\r\n")

    def __init__(self, directory):
        os.makedirs(directory)
        self.dir = directory
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self._requests = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def requests(self):
        """[(Content-length, bytes received after the request header, stored file)]."""
        return list(self._requests)

    def stop(self):
        self.sock.close()
        self._thread.join(10)

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._handle(conn)

    def _handle(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-length: (\d+)", head, re.I).group(1))
        path = os.path.join(self.dir, "%d.request" % (len(self._requests) + 1))
        received = 0
        carry = b""
        with open(path, "wb") as out:
            while received < length:
                received += len(rest)
                data, carry = carry + rest, b""
                if data.endswith(b"\r"):
                    data, carry = data[:-1], b"\r"
                out.write(data.replace(b"\r\n", b"\n"))
                if received >= length:
                    break
                rest = conn.recv(1 << 20)
                if not rest:
                    break
            out.write(carry)
        conn.sendall(self.ANSWER)
        self._requests.append((length, received, path))


class RspamdTests(BigMessageTestCase):
    def test_rspamd_above_its_max_message(self):
        # rspamd refuses a message above its max_message (50 MiB) after reading it; with
        # fail_open the message is delivered unscanned, and nothing was held in memory.
        rspamd = start_rspamd()
        self.addCleanup(rspamd.stop)
        maildir = os.path.join(os.path.abspath(self.mktemp()), "maildir")
        self.start(["rcpt_ok", "rspamd url %s fail_open 1" % rspamd.url,
                    "queue/maildir %s" % maildir])
        digest = self.deliver()
        big = largest_file(os.path.join(maildir, "new"))
        self.assertEqual(body_digest_of_file(big), digest)
        with open(big, "rb") as f:
            self.assertIn(b"\nX-Spam-Not-Scanned: rspamd could not be asked", f.read(4096))


class ShippedConfigTests(unittest.TestCase):
    """The shipped ``etc/`` limits the message size (etc/databytes) instead of taking any."""

    def test_shipped_databytes(self):
        cwd = os.path.abspath(self.mktemp())   # the shipped plugins deliver to ./var/maildir
        os.makedirs(cwd)
        _, port, _ = start_twistd(self, os.path.join(CHECKOUT, "etc"), cwd=cwd)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example")
            self.assertEqual(client.esmtp_features.get("size"), "50000000")
            code, text = client.mail("a@b.example", ["SIZE=50000001"])
            self.assertEqual(code, 552, text)
            client.rset()
            self.assertEqual(client.sendmail("a@b.example", ["u@example.com"],
                                             b"Subject: small\r\n\r\nbody\r\n"), {})
