"""DNSError.no_record: which lookup failures mean "there is no such record" (a policy or key
lookup treats them as none) and which mean "the DNS could not say" (a temporary error)."""

from twisted.trial import unittest

from qpsmtpd_tx.dns import errors


class NoRecordTests(unittest.TestCase):
    def test_definite_answers_and_bad_names_mean_no_record(self):
        for kind in (errors.NXDomain, errors.NoData, errors.BadName):
            self.assertTrue(kind("example.com", "TXT").no_record, kind.__name__)

    def test_failures_to_answer_do_not(self):
        for kind in (errors.ServFail, errors.DNSTimeout, errors.DNSError):
            self.assertFalse(kind("example.com", "TXT").no_record, kind.__name__)

    def test_a_bad_name_is_still_not_a_definite_answer(self):
        self.assertFalse(errors.BadName("a..b", "TXT").definite)
