"""The ``dkim`` plugin's check at once, with the keys already in the DNS cache (the usual
message: the same few signers): the same results as a check that waits for DNS, and no
Deferred made. Keys on the suite's private NSD, messages signed by Mail::DKIM."""

from tests.support import mail_dkim
from tests.support.dkim_cases import SELECTOR, DKIMCase, text_message, with_signature


class CachedKeyTests(DKIMCase):
    """A second message whose keys are cached gets the first one's result."""

    async def test_pass_fail_and_no_key_as_without_the_cache(self):
        self.serve_dkim("reject 0")
        text = text_message(self.zone)
        field = mail_dkim.sign(text.encode(), self.keyfile, self.zone, SELECTOR)
        good = with_signature(field, text)
        tampered = with_signature(field, text.replace("see you", "pay me"))
        keyless = with_signature(field.replace("s=%s" % SELECTOR, "s=gone"), text)
        for message, start in ((good, "dkim=pass "),
                               (tampered, 'dkim=fail reason="body has been altered" '),
                               (keyless, 'dkim=permerror reason="no key" ')):
            first, second = await self.twice(message)
            self.assertEqual((first.data[0], second.data[0]), (250, 250))
            [uncached], [cached] = self.auth_results(first), self.auth_results(second)
            self.assertTrue(uncached.startswith(start), uncached)
            self.assertEqual(cached, uncached)

    async def test_a_cached_key_makes_no_deferred(self):
        self.serve_dkim()
        answers = self.record_answers("dkim")
        text = text_message(self.zone)
        field = mail_dkim.sign(text.encode(), self.keyfile, self.zone, SELECTOR)
        first, second = await self.twice(with_signature(field, text))
        self.assertEqual((first.data[0], second.data[0]), (250, 250))
        self.assertEqual(answers, [True, False])
