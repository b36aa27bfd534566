"""The ``dmarc`` plugin's answer at once when the ``_dmarc`` records are in the DNS cache
(the usual message: the same few From domains): the same results as an answer that waits
for DNS, and no Deferred made. Policies on the suite's private NSD."""

import os

from qpsmtpd_tx import codes
from tests.plugins.test_dmarc import DMARCCase
from tests.support.dkim_cases import text_message


class CachedPolicyTests(DMARCCase):
    """A second message whose policy is cached gets the first one's result."""

    async def test_results_as_without_the_cache(self):
        sub = "news." + self.zone
        self.policy("v=DMARC1; p=quarantine; sp=none")
        self.serve_dmarc()
        answers = self.record_answers("dmarc")
        for message, reply, entry, waited in (
                (self.signed(self.zone), 250,
                 "dmarc=pass (p=quarantine sp=none dis=none) header.from=%s" % self.zone, True),
                (text_message(self.zone), 552, None, False),     # the same policy, cached
                # no record at _dmarc.<sub>: the organizational domain's, with its sp=
                (text_message(sub), 250,
                 "dmarc=fail (p=quarantine sp=none dis=none) header.from=%s" % sub, True)):
            del answers[:]
            first, second = await self.twice(message)
            self.assertEqual((first.data[0], second.data[0]), (reply, reply))
            self.assertEqual(answers, [waited, False])
            if entry is not None:
                self.assertEqual(self.dmarc_result(first), [entry])
                self.assertEqual(self.dmarc_result(second), [entry])

    async def test_no_record_and_dns_failure_as_without_the_cache(self):
        failing = self.dns.servfail_zone(self.dns.unique_zone("dmarcfail"))
        self.policy(None)
        self.serve_dmarc()
        for domain, entry in ((self.zone, "dmarc=none header.from=%s" % self.zone),
                              (failing, "dmarc=temperror header.from=%s" % failing)):
            first, second = await self.twice(text_message(domain))
            self.assertEqual((first.data[0], second.data[0]), (250, 250))
            self.assertEqual(self.dmarc_result(first), [entry])
            self.assertEqual(self.dmarc_result(second), [entry])

    async def test_arc_override_still_waits_for_the_chain(self):
        """With trusted sealers, a failing message's ARC chain is checked (a Deferred) even
        when its policy is cached; its result is the same as without the cache."""
        self.policy("v=DMARC1; p=reject")
        self.serve_dkim("reject 0", after=["dmarc"], files={
            "public_suffix_list": "test\nqptx.test", "arc_trusted_sealers": "lists.example"})
        answers = self.record_answers("dmarc")
        first, second = await self.twice(text_message(self.zone))
        self.assertEqual((first.data, second.data), ((552, "failed DMARC policy"),) * 2)
        self.assertEqual(answers, [True, True])
        self.assertEqual(len(self.logged(codes.LOGINFO, r"^no override: ARC chain none$")), 2)


class ReloadTests(DMARCCase):
    """The plugin keeps its config values between messages; a reload (SIGHUP clears the
    config cache) still brings a changed file in."""

    async def test_changed_suffix_list_takes_effect_after_a_reload(self):
        sub = "news." + self.zone
        self.policy("v=DMARC1; p=none; sp=reject")
        self.serve_dmarc()
        # the zone is an organizational domain: its sp= applies to the subdomain
        self.assertEqual((await self.send(text_message(sub))).data,
                         (552, "failed DMARC policy"))
        with open(os.path.join(self.server.config.config_dir, "public_suffix_list"), "w") as f:
            f.write("test\nqptx.test\n%s\n" % self.zone)
        # not read again before the reload
        self.assertEqual((await self.send(text_message(sub))).data,
                         (552, "failed DMARC policy"))
        self.server.config.clear_cache()
        # now the subdomain is an organizational domain, and it has no policy
        outcome = await self.send(text_message(sub))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.dmarc_result(outcome), ["dmarc=none header.from=%s" % sub])

    async def test_changed_trusted_sealers_take_effect_after_a_reload(self):
        self.policy("v=DMARC1; p=reject")
        self.serve_dmarc()
        self.assertEqual((await self.send(text_message(self.zone))).data,
                         (552, "failed DMARC policy"))
        self.assertEqual(self.logged(codes.LOGINFO, r"^no override"), [])
        with open(os.path.join(self.server.config.config_dir, "arc_trusted_sealers"),
                  "w") as f:
            f.write("lists.example\n")
        self.server.config.clear_cache()
        # with a trusted sealer the ARC chain is asked (it has none here)
        self.assertEqual((await self.send(text_message(self.zone))).data,
                         (552, "failed DMARC policy"))
        self.assertEqual(len(self.logged(codes.LOGINFO, r"^no override: ARC chain none$")), 1)
