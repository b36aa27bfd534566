"""dkim, dmarc and arc check the header as the client sent it, which the core keeps
(``transaction.received_fields``) before it adds its own fields and removes spoofed
Authentication-Results ones: none of them needs a data_headers_end hook (a hook run per
message less), and a signature covering a field the core removes still passes."""

import dkim

from tests.support.dkim_cases import SELECTOR, DKIMCase, text_message


class ReceivedHeaderTests(DKIMCase):
    def test_no_data_headers_end_hook(self):
        self.serve_dkim("reject 0", after=["dmarc", "arc"], files={
            "arc_trusted_sealers": "lists.example"})
        self.assertFalse(self.server.hooks.has("data_headers_end"))

    async def test_a_signed_field_the_core_removes_still_passes(self):
        self.serve_dkim("reject 0")
        spoofed = "Authentication-Results: mx.example.org; dkim=pass\r\n"
        text = text_message(self.zone, extra=spoofed)
        with open(self.keyfile, "rb") as f:
            field = dkim.sign(text.encode(), SELECTOR.encode(), self.zone.encode(), f.read(),
                              include_headers=[b"from", b"to", b"subject",
                                               b"authentication-results"]).decode()
        self.assertIn("authentication-results", field.lower())
        outcome = await self.send(field.replace("\r\n", "\n").replace("\n", "\r\n") + text)
        self.assertEqual(outcome.data[0], 250)
        [result] = self.auth_results(outcome)
        self.assertTrue(result.startswith("dkim=pass "), result)
        self.assertNotIn(spoofed.strip(), outcome.queued.decode())
