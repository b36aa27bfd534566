"""A 200 MiB message through each queue plugin: delivered byte for byte, and the server's peak
memory (VmHWM of a real twistd process) grows by less than 16 MiB.

The body is generated line by line as it is sent and compared by its SHA-256, so the test
process never holds it either. These tests move 200 MiB each: keep them few.
"""

import os

from twisted.trial import unittest

from test.support.bigmail import MIB, body_digest_of_file, rss_growth_kib
from test.support.harness import maildir_messages, write_config
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
        new = os.path.join(maildir, "new")
        files = sorted(os.listdir(new))
        self.assertEqual(len(files), 2)   # the warm-up message and the big one
        sizes = [os.path.getsize(os.path.join(new, name)) for name in files]
        big = os.path.join(new, files[sizes.index(max(sizes))])
        self.assertEqual(body_digest_of_file(big), digest)
