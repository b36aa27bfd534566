"""A 200 MiB message through a program-based scanner (qpsmtpd_tx/scanner.py, here
virus/clamav): the scanner gets the whole message as a file, byte for byte, and the server's
peak memory (VmHWM of a real twistd process) grows by less than 16 MiB while it writes it.

The scanner is a STAND-IN (tests/support/scanners.py) that records the SHA-256 of the body
of the file it was given: the real clamscan would take minutes over 200 MiB.
"""

import os

from tests.support.processes import CHECKOUT
from tests.support.scanners import standin
from tests.test_big_messages import SIZE, BigMessageTestCase, largest_file

DIGEST_OF_FILE = '''
sys.path.insert(0, %r)
from tests.support.bigmail import body_digest_of_file
with open(os.path.join(HERE, "digests.log"), "a") as log:
    log.write(body_digest_of_file(sys.argv[-1]) + "\\n")
'''


class ScannerFileTests(BigMessageTestCase):
    def test_scanner_gets_the_whole_message_as_a_file(self):
        program = standin(self, "clamscan", DIGEST_OF_FILE % CHECKOUT)
        maildir = os.path.join(os.path.abspath(self.mktemp()), "maildir")
        self.start(["rcpt_ok", "virus/clamav clamscan_path=%s max_size=%d" % (program, 2 * SIZE),
                    "queue/maildir %s" % maildir])
        digest = self.deliver()
        with open(os.path.join(os.path.dirname(program), "digests.log")) as f:
            self.assertEqual(f.read().split()[-1], digest)
        with open(largest_file(os.path.join(maildir, "new")), "rb") as f:
            self.assertIn(b"\nX-Virus-Checked: Checked by ClamAV on ", f.read(4096))
