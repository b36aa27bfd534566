"""qpsmtpd_tx.crypt_hash: crypt(3) hashes as vpopmail and /etc/shadow store them, checked
against hashes made by the system's own tool (openssl passwd), not by the module itself."""

import subprocess

from twisted.trial import unittest

from qpsmtpd_tx.crypt_hash import available, crypt_matches


class CryptHashTests(unittest.TestCase):
    def setUp(self):
        if not available():
            raise unittest.SkipTest("this Python has neither crypt nor crypt_r")

    def openssl_hash(self, scheme, password, salt):
        return subprocess.run(["openssl", "passwd", scheme, "-salt", salt, password],
                              capture_output=True, text=True, check=True).stdout.strip()

    def test_md5_and_sha512_hashes(self):
        for scheme in ("-1", "-6"):
            hashed = self.openssl_hash(scheme, "s3cret pw", "abcdefgh")
            self.assertTrue(crypt_matches("s3cret pw", hashed), hashed)
            self.assertFalse(crypt_matches("s3cret pX", hashed), hashed)

    def test_no_hash_matches_nothing(self):
        self.assertFalse(crypt_matches("x", "$1$abcdefgh$"))
