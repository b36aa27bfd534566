"""Tests of the tls_cert name: qpsmtpd's certificate script is the ``qpsmtpd-tx tls-cert``
command here (tested in test_tls.py); a ``plugins`` line naming it stops start-up, saying so."""

from twisted.trial import unittest

from tests.support.harness import StartupErrorMixin


class TlsCertTests(StartupErrorMixin, unittest.TestCase):
    def test_line_is_refused_pointing_to_the_command(self):
        self.assertStartupError(["rcpt_ok", "tls_cert"], [
            ":2: plugin tls_cert: tls_cert is qpsmtpd's script", "run `qpsmtpd-tx tls-cert --config DIR`"])
