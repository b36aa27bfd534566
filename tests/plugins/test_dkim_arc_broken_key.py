"""dkim signing and arc sealing with a key directory whose ``private`` file is no key: the
message goes unsigned (unsealed); the key is read once per change of its files, not for each
message, and the error is logged at LOGERROR once (each further message at LOGINFO); a good key
written over it signs at once. A server on a loopback socket, the suite's private DNS (as the
other dkim and arc tests); KeyCache itself directly."""

import os

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.dkim_sign import KeyCache, SigningError
from tests.plugins.test_arc import ARCCase
from tests.support.dkim_cases import SELECTOR, DKIMCase, text_message

#: messages sent while the key is broken
MESSAGES = 5


NOT_A_KEY = b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"


def replace_file(path, data):
    """Write ``data`` to ``path`` as a new file renamed over the old one."""
    with open(path + ".new", "wb") as f:
        f.write(data)
    os.rename(path + ".new", path)


class KeyCacheTests(unittest.TestCase):
    def test_a_broken_key_is_not_read_again_until_its_files_change(self):
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        with open(os.path.join(path, "selector"), "w") as f:
            f.write("s1\n")
        replace_file(os.path.join(path, "private"), NOT_A_KEY)
        keys = KeyCache()
        errors = [self.assertRaises(SigningError, keys.get, "example.com", path)
                  for _ in range(3)]
        # the same error each time: the files were not read again
        self.assertTrue(errors[1] is errors[0] and errors[2] is errors[0])


class BrokenKeyTests(DKIMCase):
    async def test_a_broken_key_is_read_and_logged_once(self):
        server = self.serve_dkim(before=["relay"], files={"relayclients": "127.0.0.1"})
        path = os.path.join(server.config.config_dir, "dkim", self.zone)
        os.makedirs(path)
        with open(os.path.join(path, "selector"), "w") as f:
            f.write(SELECTOR + "\n")
        private = os.path.join(path, "private")
        replace_file(private, NOT_A_KEY)
        for _ in range(MESSAGES):
            outcome = await self.send_from("me@" + self.zone, text_message(self.zone))
            self.assertEqual(outcome.data[0], 250)
            self.assertEqual(outcome.header.count("DKIM-Signature"), 0)
            await self.last_client.command("QUIT")   # (the per-IP limit counts open ones)
        self.assertEqual(len(self.logged(codes.LOGERROR, "^error, not signed: %s: " % path)), 1,
                         self.logs)
        self.assertEqual(len(self.logged(codes.LOGINFO, "^error, not signed: %s: " % path)),
                         MESSAGES - 1, self.logs)

        with open(self.keyfile, "rb") as src:
            replace_file(private, src.read())
        outcome = await self.send_from("me@" + self.zone, text_message(self.zone))
        self.assertIn("d=%s;" % self.zone, outcome.header.get_first("DKIM-Signature"))


class BrokenSealKeyTests(ARCCase):
    async def test_a_key_broken_after_start_up_is_read_and_logged_once(self):
        server = self.serve_arc("seal all domain %s" % self.zone)
        private = os.path.join(server.config.config_dir, "dkim", self.zone, "private")
        with open(private, "rb") as f:
            good = f.read()
        replace_file(private, NOT_A_KEY)
        for _ in range(MESSAGES):
            outcome = await self.send_from("me@example.net", text_message(self.zone))
            self.assertEqual(outcome.data[0], 250)
            self.assertEqual(outcome.header.count("ARC-Seal"), 0)
            await self.last_client.command("QUIT")
        pattern = "^not sealed: %s: " % os.path.dirname(private)
        self.assertEqual(len(self.logged(codes.LOGERROR, pattern)), 1, self.logs)
        self.assertEqual(len(self.logged(codes.LOGINFO, pattern)), MESSAGES - 1, self.logs)

        replace_file(private, good)
        outcome = await self.send_from("me@example.net", text_message(self.zone))
        self.assertEqual(outcome.header.count("ARC-Seal"), 1)
