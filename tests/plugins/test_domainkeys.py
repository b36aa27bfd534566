"""Tests of domainkeys: an obsolete plugin whose line stops start-up, pointing to dkim."""

from twisted.trial import unittest

from tests.support.harness import StartupErrorMixin


class DomainKeysTests(StartupErrorMixin, unittest.TestCase):
    def test_refused_pointing_to_dkim(self):
        for line in ("domainkeys", "domainkeys reject 1", "domainkeys warn_only 1"):
            self.assertStartupError(["rcpt_ok", line], [
                ":2: plugin domainkeys: DomainKeys is obsolete", "replace this line with 'dkim'"])
