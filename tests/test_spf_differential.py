"""Our SPF evaluator against Perl's Mail::SPF (qpsmtpd 0.94's), differentially: SPF
policies made at random from a fixed seed (tests/support/spf_cases.py: mechanisms,
qualifiers, modifiers, macros, CIDR lengths, include chains, void lookups, lookup limits,
syntax errors; IPv4, IPv6 and mapped clients; HELO and MAIL FROM identities) are published
on the suite's private NSD and checked by both (tests/support/spf_differential.py), the
results compared; where the results and the deciding term agree, the local explanations
(the text of qpsmtpd's replies) are compared too.

Every disagreement must belong to a class of ``INTENDED`` (RFC 7208 decides for us: the
section is given) or ``KNOWN`` (a bug of ours not fixed yet, with where); anything else
fails the test and is printed. ``QPTX_SPF_DIFF_CASES`` sets the number of cases (default
400), ``QPTX_SPF_DIFF_SEED`` another seed; the big run (20,000 cases) is
``python -m tests.support.spf_differential``.
"""

import os

from twisted.internet import reactor
from twisted.trial import unittest

from tests.support import mail_spf, spf_differential
from tests.support.dns import private_dns

CASES = int(os.environ.get("QPTX_SPF_DIFF_CASES", "400"))
SEED = int(os.environ.get("QPTX_SPF_DIFF_SEED", "20261207"))


class DifferentialTests(unittest.TestCase):
    """Our results against Mail::SPF's, case by case."""

    def setUp(self):
        if not mail_spf.available():
            raise unittest.SkipTest("Perl's Mail::SPF (libmail-spf-perl) is not installed "
                                    "(.ci/run installs it)")
        self.dns = private_dns()

    async def test_same_results_as_mail_spf(self):
        run = await spf_differential.run(reactor, self.dns, CASES, SEED, batch_size=200)
        print(run.report(examples=20))
        self.assertEqual([spf_differential.describe(*found) for found in run.unexplained], [])
        # where the results and deciding terms agree, so do the texts of qpsmtpd's replies
        self.assertEqual([spf_differential.describe(*found) for found in run.other_texts], [])
        self.assertEqual(run.counts["cases"], CASES)
        if CASES < 400:     # a short exploratory run need not cover everything
            return
        # a comparison of every result, not of errors only; every part of the generator used
        self.assertGreater(run.counts["same"], CASES * 8 // 10)
        for result in ("pass", "fail", "softfail", "neutral", "none", "permerror"):
            self.assertGreater(run.counts["ours " + result], 0, result)
        for part in ("ipv4", "ipv6", "mapped", "helo", "mfrom", "include", "redirect", "exp",
                     "mx", "ptr", "exists", "macro", "odd macro", "cidr", "void",
                     "lookup limit", "long label", "two records"):
            self.assertGreater(run.made_by[part], 0, part)

    test_same_results_as_mail_spf.timeout = 120
