"""``sender_permitted_from`` with a result the connection already has (the usual message of
a bulk sender: the same sender and HELO name): the MAIL hook answers at once, without a
Deferred, and the same as the first check (replies, results, notes). Records on the
suite's private NSD."""

from qpsmtpd_tx import codes
from tests.plugins.test_sender_permitted_from import SPFCase
from tests.support.filter_cases import record_calls
from tests.support.server import connect


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


class DataPostTests(SPFCase):
    """At data_post a pass is accepted for every recipient without reading their notes."""

    async def test_pass_reads_no_recipient_settings(self):
        server = self.serve_spf("reject 3", before=[
            "note_rcpt alice@example.com spf_reject=6"])
        [plugin] = [p for p, _ in server.hooks.handlers("data_post")
                    if p.name == "sender_permitted_from"]
        groups = record_calls(self, plugin, "recipient_groups", lambda transaction: 1)
        header = await self.deliver("user@" + self.domain("pass"))
        self.assertTrue(header[0].startswith("Received-SPF: pass "), header)
        self.assertEqual(groups, [])
        # a neutral result is decided per recipient: alice's level 6 refuses it
        client = await connect(self, self.port)
        await client.command("EHLO client.example")
        self.assertEqual((await client.command(
            "MAIL FROM:<user@%s>" % self.domain("neutral")))[0], 250)
        self.assertEqual((await client.command("RCPT TO:<alice@example.com>"))[0], 250)
        self.assertEqual((await client.command("DATA"))[0], 354)
        client.send("Subject: spf\r\n\r\nhello\r\n.")
        self.assertEqual((await client.reply())[0], 552)
        self.assertEqual(groups, [1])
