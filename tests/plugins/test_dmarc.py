"""The ``dmarc`` plugin after ``dkim`` on a server on a loopback socket, with policies and keys
on the suite's private NSD and messages signed by Perl's Mail::DKIM.

The test zones are ``<name>.qptx.test``; a ``public_suffix_list`` config of ``test`` and
``qptx.test`` makes each zone an organizational domain, as ``example.com`` is under the real
list (which the unit tests at the end check). The SPF result is sender_permitted_from's
(``reject 1``: it only records), with SPF records on the same DNS server.
"""

from twisted.trial import unittest

from qpsmtpd_tx import codes, dmarc_policy
from tests.support import mail_dkim
from tests.support.dkim_cases import SELECTOR, DKIMCase, text_message, with_signature

SUFFIXES = "test\nqptx.test"


class DMARCCase(DKIMCase):
    def serve_dmarc(self, args="", spf=False, before=()):
        before = list(before) + (["sender_permitted_from reject 1"] if spf else [])
        return self.serve_dkim("reject 0", before=before, after=[("dmarc " + args).strip()],
                               files={"public_suffix_list": SUFFIXES})

    def policy(self, text, zone=None, keys=True):
        """Publish the DMARC record ``text`` (and our key) in ``zone`` (default ours)."""
        self.publish({SELECTOR: self.record} if keys else {}, zone,
                     [("_dmarc", "TXT", text)] if text else [])

    def signed(self, from_domain, d=None, **kwargs):
        text = text_message(from_domain, **kwargs)
        return with_signature(mail_dkim.sign(text.encode(), self.keyfile, d or self.zone,
                                             SELECTOR), text)

    def dmarc_result(self, outcome):
        return [r for r in self.auth_results(outcome) if r.startswith("dmarc=")]


class AlignmentTests(DMARCCase):
    async def test_dkim_aligned_passes_p_reject(self):
        self.policy("v=DMARC1; p=reject")
        self.serve_dmarc()
        outcome = await self.send(self.signed(self.zone))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.dmarc_result(outcome),
                         ["dmarc=pass (p=reject sp=reject dis=none) header.from=%s" % self.zone])
        self.assertLogged(codes.LOGINFO, r"^pass, aligned: dkim %s$" % self.zone)

    async def test_misaligned_signature_is_refused_by_p_reject(self):
        other = self.publish({SELECTOR: self.record}, self.dns.unique_zone("signer"))
        self.policy("v=DMARC1; p=reject")
        self.serve_dmarc()
        outcome = await self.send(self.signed(self.zone, d=other))
        self.assertEqual(outcome.data, (552, "failed DMARC policy"))
        self.assertLogged(codes.LOGINFO, r"^fail, reject, policy reject$")

    async def test_p_none_only_reports(self):
        self.policy("v=DMARC1; p=none")
        self.serve_dmarc()
        outcome = await self.send(text_message(self.zone))     # unsigned, no SPF
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.dmarc_result(outcome),
                         ["dmarc=fail (p=none sp=none dis=none) header.from=%s" % self.zone])

    async def test_relaxed_and_strict_dkim_alignment(self):
        """d=<zone> with From: @mail.<zone>: aligned when relaxed, not when strict."""
        self.policy("v=DMARC1; p=reject")
        self.serve_dmarc()
        sub = "mail." + self.zone
        self.assertEqual((await self.send(self.signed(sub))).data[0], 250)
        self.policy("v=DMARC1; p=reject; adkim=s")
        self.serve_dmarc()      # a new server: a new resolver cache
        self.assertEqual((await self.send(self.signed(sub))).data,
                         (552, "failed DMARC policy"))

    async def test_spf_alignment(self):
        """sender_permitted_from's result: MAIL FROM bounce@mail.<zone> passes SPF (the
        client is 127.0.0.1); From: @<zone> is aligned when relaxed, not when strict, and a
        softfail never aligns."""
        spf = [("mail", "TXT", "v=spf1 ip4:127.0.0.1 -all"), ("@", "TXT", "v=spf1 ~all")]
        self.publish({}, extra=[("_dmarc", "TXT", "v=DMARC1; p=reject")] + spf)
        self.serve_dmarc(spf=True)
        text = text_message(self.zone)
        outcome = await self.send_from("bounce@mail." + self.zone, text)
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGINFO, r"^pass, aligned: spf mail\.%s$" % self.zone)
        self.assertIn("spf=pass smtp.mailfrom=mail.%s" % self.zone, self.auth_results(outcome))
        self.publish({}, extra=[("_dmarc", "TXT", "v=DMARC1; p=reject; aspf=s")] + spf)
        self.serve_dmarc(spf=True)
        self.assertEqual((await self.send_from("bounce@mail." + self.zone, text)).data,
                         (552, "failed DMARC policy"))
        self.publish({}, extra=[("_dmarc", "TXT", "v=DMARC1; p=reject")] + spf)
        self.serve_dmarc(spf=True)
        self.assertEqual((await self.send_from("bounce@" + self.zone, text)).data,
                         (552, "failed DMARC policy"))
        self.assertLogged(codes.LOGINFO, r"^fail, reject, policy reject$")


class PolicyTests(DMARCCase):
    async def test_subdomain_policy(self):
        """No record at _dmarc.<sub>: the organizational domain's, with its sp=."""
        sub = "news." + self.zone
        self.policy("v=DMARC1; p=none; sp=reject")
        self.serve_dmarc()
        outcome = await self.send(text_message(sub))
        self.assertEqual(outcome.data, (552, "failed DMARC policy"))
        self.policy("v=DMARC1; p=reject; sp=none")
        self.serve_dmarc()
        outcome = await self.send(text_message(sub))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.dmarc_result(outcome),
                         ["dmarc=fail (p=reject sp=none dis=none) header.from=%s" % sub])
        # the From domain itself: p=
        self.assertEqual((await self.send(text_message(self.zone))).data,
                         (552, "failed DMARC policy"))

    async def test_no_record(self):
        self.policy(None)
        self.serve_dmarc()
        outcome = await self.send(text_message(self.zone))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.dmarc_result(outcome), ["dmarc=none header.from=%s" % self.zone])
        self.assertLogged(codes.LOGINFO, "^skip, no policy$")

    async def test_pct_0_gives_the_next_less_strict_policy(self):
        self.policy("v=DMARC1; p=quarantine; pct=0")
        self.serve_dmarc()
        outcome = await self.send(text_message(self.zone))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.dmarc_result(outcome),
                         ["dmarc=fail (p=quarantine sp=quarantine dis=none) header.from=%s"
                          % self.zone])
        self.policy("v=DMARC1; p=reject; pct=0")
        self.serve_dmarc()
        # quarantine: refused, as qpsmtpd 0.94 does
        self.assertEqual((await self.send(text_message(self.zone))).data,
                         (552, "failed DMARC policy"))

    async def test_dns_failure_is_temperror_and_accepted(self):
        zone = self.dns.servfail_zone(self.dns.unique_zone("dmarcfail"))
        self.serve_dmarc()
        outcome = await self.send(text_message(zone))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.dmarc_result(outcome), ["dmarc=temperror header.from=%s" % zone])

    async def test_from_field_problems_and_reject_0(self):
        self.policy("v=DMARC1; p=reject")
        self.serve_dmarc()
        no_from = "To: alice@example.com\r\nSubject: x\r\n\r\nhi\r\n"
        self.assertEqual((await self.send(no_from)).data,
                         (552, "empty from address, null sender?"))
        two = text_message(self.zone, extra="From: other@bank.example\r\n")
        self.assertEqual((await self.send(two)).data, (552, "unparseable from header"))
        self.serve_dmarc("reject 0")
        self.assertEqual((await self.send(text_message(self.zone))).data[0], 250)
        self.assertLogged(codes.LOGINFO, r"^fail, tolerated, failed DMARC policy$")

    async def test_relay_client_is_skipped(self):
        self.policy("v=DMARC1; p=reject")
        self.serve_dmarc(before=["relay"])
        self.server.config.forget("relayclients")
        with open(self.server.config.config_dir + "/relayclients", "w") as f:
            f.write("127.0.0.1\n")
        self.assertEqual((await self.send(text_message(self.zone))).data[0], 250)
        self.assertLogged(codes.LOGINFO, "^skip, relay client$")


class RecordTests(unittest.TestCase):
    def test_records(self):
        record = dmarc_policy.select_record(["v=spf1 -all", "v=DMARC1; p=Reject; pct=50; sp=x"])
        self.assertEqual((record.p, record.sp, record.pct, record.adkim), ("reject", "reject",
                                                                          50, "r"))
        self.assertIsNone(dmarc_policy.select_record(["v=DMARC1; p=none", "v=DMARC1; p=reject"]))
        self.assertIsNone(dmarc_policy.parse_record("v=DMARC2; p=reject"))
        # an unknown p= with a report address: p=none (RFC 7489 section 6.6.3)
        self.assertEqual(dmarc_policy.parse_record("v=DMARC1; p=bogus; rua=mailto:a@b").p,
                         "none")

    def test_organizational_domain_from_the_current_list(self):
        psl = dmarc_policy.suffix_list()
        org = dmarc_policy.organizational_domain
        self.assertEqual(org("mail.example.co.uk", psl), "example.co.uk")
        self.assertEqual(org("a.b.Example.COM", psl), "example.com")
        # a private-section suffix: every project there is its own organization
        self.assertEqual(org("x.project.github.io", psl), "project.github.io")
        self.assertFalse(dmarc_policy.aligned("other.github.io", "project.github.io", "r", psl))
