"""auth/auth_vpopmail: loads, logs that it is disabled naming the plugins that replace it, and
offers no AUTH (as qpsmtpd 0.94 does where the vpopmail Perl module is not installed)."""

import os
import smtplib

from twisted.trial import unittest

from qpsmtpd_tx.testing import write_config
from tests.support.harness import assertStartupError
from tests.support.processes import start_twistd


class AuthVpopmailTests(unittest.TestCase):
    def test_starts_disabled_naming_the_replacements(self):
        config = write_config(os.path.abspath(self.mktemp()), ["auth/auth_vpopmail", "rcpt_ok"])
        _, port, log = start_twistd(self, config)
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        self.addCleanup(client.close)
        client.ehlo("client.example")
        self.assertFalse(client.has_extn("auth"))
        client.quit()
        with open(log, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for part in ["auth/auth_vpopmail", "disabled: needs vpopmail's C library",
                     "auth/auth_checkpassword with vpopmail's vchkpw", "auth/auth_vpopmaild",
                     "auth/auth_vpopmail_sql"]:
            self.assertIn(part, text)

    def test_arguments_are_refused(self):
        message = assertStartupError(self, ["auth/auth_vpopmail x"], [
            "plugin auth/auth_vpopmail: takes no arguments"])
        self.assertIn("plugins:1:", message)
