"""The email-authentication plugins (``dkim``, ``arc``, ``dmarc``) given fields a hostile
sender writes, on a server on a loopback socket with keys on the suite's private NSD: every
such message gets a result and an SMTP answer, never a traceback."""

from qpsmtpd_tx import codes
from tests.plugins.test_arc import ARCCase
from tests.support.dkim_cases import SELECTOR, text_message


class HugeNumberTests(ARCCase):
    async def test_numbers_too_long_for_int_are_malformed_fields(self):
        """t=, x= and ARC's i= of 5000 digits: int() refuses them (ValueError), which
        escaped from the dkim and arc plugins."""
        self.serve_arc()
        digits = "1" * 5000
        fields = ("DKIM-Signature: v=1; a=rsa-sha256; d=%s; s=%s; h=from; bh=AAAA; b=AAAA;"
                  " t=%s\r\n" % (self.zone, SELECTOR, digits)
                  + "DKIM-Signature: v=1; a=rsa-sha256; d=%s; s=%s; h=from; bh=AAAA; b=AAAA;"
                  " x=%s\r\n" % (self.zone, SELECTOR, "0" * 5000)
                  + "ARC-Seal: i=%s; a=rsa-sha256; cv=none; d=%s; s=%s; b=AAAA\r\n"
                  % (digits, self.zone, SELECTOR)
                  + "ARC-Authentication-Results: i=1; %s; none\r\n" % self.zone)
        outcome = await self.send_from("me@example.net", fields + text_message(self.zone))
        self.assertEqual(outcome.data[0], 250)
        results = self.auth_results(outcome)
        self.assertTrue(results[0].startswith(
            'dkim=neutral reason="bad signature: t= value is in the future'), results[0][:200])
        self.assertTrue(results[1].startswith(
            'dkim=neutral reason="bad signature: x= value is past'), results[1][:200])
        self.assertEqual(results[2], 'arc=fail reason="ARC-Seal without a valid i=" '
                                     'smtp.remote-ip=127.0.0.1')
        self.assertEqual(self.logged(codes.LOGERROR, "."), [])
