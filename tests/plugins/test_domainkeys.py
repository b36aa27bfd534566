"""Tests of domainkeys: an obsolete plugin that loads disabled (as Perl qpsmtpd 0.94 on Debian,
which lacks Mail::DomainKeys), logging a pointer to dkim, and changes no reply."""

import os
import smtplib

from twisted.trial import unittest

from qpsmtpd_tx.testing import write_config
from tests.support.harness import StartupErrorMixin
from tests.support.processes import start_twistd


class DomainKeysTests(StartupErrorMixin, unittest.TestCase):
    def test_loads_disabled_pointing_to_dkim(self):
        maildir = os.path.abspath(self.mktemp())
        config = write_config(os.path.abspath(self.mktemp()), [
            "rcpt_ok", "domainkeys reject 1 reject_type perm", "queue/maildir " + maildir])
        _, port, log = start_twistd(self, config)
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        self.addCleanup(client.close)
        # an unsigned message (0.94's plugin with reject 1 refused those): accepted
        refused = client.sendmail("a@example.net", ["b@example.com"],
                                  b"From: a@example.net\r\nSubject: x\r\n\r\nbody\r\n")
        self.assertEqual(refused, {})
        client.quit()
        with open(log, encoding="utf-8", errors="replace") as f:
            text = f.read()
        self.assertIn("domainkeys", text)
        self.assertIn("disabled: DomainKeys is obsolete", text)
        self.assertIn("replace this line with 'dkim'", text)

    def test_unknown_arguments_are_refused(self):
        self.assertStartupError(["rcpt_ok", "domainkeys nonsense 1"], [
            ":2: plugin domainkeys: unknown argument 'nonsense'"])
