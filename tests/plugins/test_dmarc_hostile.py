"""The ``dmarc`` plugin with policy records a hostile DNS zone publishes, on the suite's
private NSD: reading one costs work in proportion to its size."""

from qpsmtpd_tx import dmarc_policy
from tests.plugins.test_dmarc import DMARCCase
from tests.support.dkim_cases import text_message


class RecordTests(DMARCCase):
    async def test_a_tag_with_a_long_run_of_spaces_is_read_at_once(self):
        """60,000 spaces inside a tag value: the old tag pattern went back over the run at
        each of its characters (about 13 s of reactor CPU). The bound below is generous for
        reading 60 KB once."""
        self.policy("v=DMARC1; p=reject; x=a" + " " * 60000 + "b")
        self.serve_dmarc()
        remembered = dmarc_policy.parse_record.cache_info().currsize
        outcome = await self.send(text_message(self.zone))     # unsigned, no SPF
        self.assertEqual(outcome.data, (552, "failed DMARC policy"))
        # nor is such a record remembered (the cache keeps what it is given)
        self.assertEqual(dmarc_policy.parse_record.cache_info().currsize, remembered)

    test_a_tag_with_a_long_run_of_spaces_is_read_at_once.timeout = 8
