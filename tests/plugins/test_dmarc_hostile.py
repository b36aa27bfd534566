"""The ``dmarc`` plugin with policy records a hostile DNS zone publishes, on the suite's
private NSD: reading one costs work in proportion to its size."""

from tests.plugins.test_dmarc import DMARCCase
from tests.support.dkim_cases import text_message


class RecordTests(DMARCCase):
    async def test_a_tag_with_a_long_run_of_spaces_is_read_at_once(self):
        """60,000 spaces inside a tag value: the old tag pattern went back over the run at
        each of its characters (about 13 s of reactor CPU). The bound below is generous for
        reading 60 KB once."""
        self.policy("v=DMARC1; p=reject; x=a" + " " * 60000 + "b")
        self.serve_dmarc()
        outcome = await self.send(text_message(self.zone))     # unsigned, no SPF
        self.assertEqual(outcome.data, (552, "failed DMARC policy"))

    test_a_tag_with_a_long_run_of_spaces_is_read_at_once.timeout = 8
