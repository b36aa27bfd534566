"""``sender_permitted_from`` with a result the connection already has (the usual message of
a bulk sender: the same sender and HELO name): the MAIL hook answers at once, without a
Deferred, and the same as the first check (replies, results, notes). Records on the
suite's private NSD."""

from qpsmtpd_tx import codes
from tests.plugins.test_sender_permitted_from import SPFCase


class ReusedResultTests(SPFCase):
    """A connection's second MAIL FROM of one sender makes no Deferred."""

    async def test_reused_results_answer_at_once(self):
        self.serve_spf("reject 4")
        answers = self.record_answers("sender_permitted_from", "mail")
        for result, code in (("pass", 250), ("fail", 550), ("softfail", 550),
                             ("neutral", 250)):
            del answers[:]
            sender = "a@" + self.domain(result)
            first, second = await self.mail([sender, sender], helo=self.domain("helopass"))
            self.assertEqual((first[0], second[0]), (code, code), result)
            self.assertEqual(second, first)
            self.assertEqual(answers, [True, False], result)
        self.assertEqual(len(self.logged(codes.LOGINFO, r"^pass, ")), 2)

    async def test_helo_failure_reused_at_once(self):
        """A HELO name whose check fails decides at once on the next MAIL FROM too."""
        self.serve_spf("reject 3")
        answers = self.record_answers("sender_permitted_from", "mail")
        sender = "a@" + self.domain("pass")
        first, second = await self.mail([sender, sender], helo=self.domain("helofail"))
        self.assertEqual((first[0], second[0]), (550, 550))
        self.assertEqual(second, first)
        self.assertEqual(answers, [True, False])

    async def test_null_sender_checks_the_helo_name_at_once(self):
        self.serve_spf("reject 3")
        answers = self.record_answers("sender_permitted_from", "mail")
        first, second = await self.mail(["", ""], helo=self.domain("helopass"))
        self.assertEqual((first[0], second[0]), (250, 250))
        self.assertEqual(answers, [True, False])
