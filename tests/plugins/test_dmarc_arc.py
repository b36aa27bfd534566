"""The ``dmarc`` plugin's override by a trusted ARC sealer (config ``arc_trusted_sealers``),
end to end on a server on a loopback socket, keys and policies on the suite's private NSD.

The story of every test: the author's domain (the test's zone, ``p=reject``) signs with
Mail::DKIM; a forwarder (a second zone, the same key published there) finds DKIM and DMARC
passing, tags the subject (which breaks the author's signature) and seals the message with
its own ARC set; the message then reaches our server (dkim, dmarc, arc) from the
forwarder's bounce address, so DMARC fails here.
"""

from twisted.trial import unittest

from qpsmtpd_tx import arc, arc_override, codes
from tests.plugins.test_dmarc import SUFFIXES, DMARCCase
from tests.support.arc_forwarder import forwarder_sealed
from tests.support.dkim_cases import SELECTOR
from tests.support.filter_cases import record_calls

GOOD_AAR = ("lists.{fwd}; dkim=pass header.d={author}; dmarc=pass (p=reject) "
            "header.from={author}")


class OverrideCase(DMARCCase):
    def setUp(self):
        DMARCCase.setUp(self)
        self.policy("v=DMARC1; p=reject")
        self.forwarder = self.publish({SELECTOR: self.record}, self.dns.unique_zone("fwd"))

    def forwarded(self, aar=GOOD_AAR):
        """The author's signed message, changed and sealed by the forwarder, whose checks
        found ``aar`` (formatted with the forwarder's and the author's domain)."""
        original = self.signed(self.zone).encode()
        changed = original.replace(b"Subject: hello", b"Subject: [list] hello")
        results = aar.format(fwd=self.forwarder, author=self.zone)
        return forwarder_sealed(changed, self.keyfile, self.forwarder, results, cv="none")

    def serve_override(self, trusted, arc=True):
        files = {"public_suffix_list": SUFFIXES, "arc_trusted_sealers": trusted}
        return self.serve_dkim("reject 0", after=["dmarc"] + (["arc"] if arc else []),
                               files=files)

    async def send_forwarded(self, message):
        return await self.send_from("bounce@" + self.forwarder, message.decode())

    def assertRefused(self, outcome):
        self.assertEqual(outcome.data, (552, "failed DMARC policy"))
        self.assertLogged(codes.LOGINFO, r"^fail, reject, policy reject$")


class OverrideTests(OverrideCase):
    async def test_trusted_sealer_overrides_the_failure(self):
        self.serve_override("# the list server\n%s\n" % self.forwarder)
        checks = record_calls(self, arc, "check_chain", lambda *args: args[0].count)
        outcome = await self.send_forwarded(self.forwarded())
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(checks, [1])       # by dmarc; the arc plugin used its result
        comment = "overridden by trusted ARC sealer %s i=1: dmarc=pass" % self.forwarder
        self.assertEqual(self.dmarc_result(outcome), [
            "dmarc=fail (p=reject sp=reject dis=none, %s) header.from=%s"
            % (comment, self.zone)])
        self.assertIn("arc=pass smtp.remote-ip=127.0.0.1 header.oldest-pass=0",
                      self.auth_results(outcome))
        self.assertTrue([r for r in self.auth_results(outcome) if r.startswith("dkim=fail")],
                        self.auth_results(outcome))
        self.assertLogged(codes.LOGINFO, r"^fail, reject, policy reject, %s$"
                          % comment.replace(".", r"\."))

    async def test_without_the_arc_plugin(self):
        self.serve_override(self.forwarder.upper(), arc=False)
        outcome = await self.send_forwarded(self.forwarded())
        self.assertEqual(outcome.data[0], 250)
        [result] = self.dmarc_result(outcome)
        self.assertIn("overridden by trusted ARC sealer %s i=1" % self.forwarder, result)

    async def test_aligned_dkim_pass_in_the_sealers_results(self):
        self.serve_override(self.forwarder)
        aar = "lists.{fwd}; dkim=pass header.d={author}"
        outcome = await self.send_forwarded(self.forwarded(aar))
        self.assertEqual(outcome.data[0], 250)
        [result] = self.dmarc_result(outcome)
        self.assertIn("i=1: dkim=pass header.d=%s)" % self.zone, result)

    async def test_untrusted_sealer_is_refused(self):
        self.serve_override("elsewhere.example")
        self.assertRefused(await self.send_forwarded(self.forwarded()))
        self.assertLogged(codes.LOGINFO, r"^no override: no trusted ARC sealer$")

    async def test_no_trusted_sealers_by_default(self):
        self.serve_dkim("reject 0", after=["dmarc", "arc"],
                        files={"public_suffix_list": SUFFIXES})
        self.assertRefused(await self.send_forwarded(self.forwarded()))

    async def test_broken_chain_is_refused(self):
        self.serve_override(self.forwarder)
        broken = self.forwarded().replace(b"see you", b"see You")   # after the seal
        outcome = await self.send_forwarded(broken)
        self.assertRefused(outcome)
        self.assertLogged(codes.LOGINFO,
                          r"^no override: ARC chain fail \(ARC-Message-Signature 1: fail")

    async def test_sealer_that_saw_dmarc_fail_is_refused(self):
        self.serve_override(self.forwarder)
        saw_fail = "lists.{fwd}; dkim=pass header.d={author}; dmarc=fail header.from={author}"
        self.assertRefused(await self.send_forwarded(self.forwarded(saw_fail)))
        self.assertLogged(codes.LOGINFO, r"^no override: trusted ARC sealer %s did not find"
                          % self.forwarder.replace(".", r"\."))

    async def test_sealer_that_vouched_for_another_domain_is_refused(self):
        self.serve_override(self.forwarder)
        other = "lists.{fwd}; dkim=pass header.d={author}; dmarc=pass header.from=other.example"
        self.assertRefused(await self.send_forwarded(self.forwarded(other)))


class UncheckableChainTests(OverrideCase):
    """The forwarder's key cannot be fetched now (its zone answers SERVFAIL): the chain is
    ``temperror``, so a trusted sealer might still vouch once it can be checked."""

    def forwarded_unverifiable(self):
        message = self.forwarded()
        self.dns.servfail_zone(self.forwarder)
        return message

    async def test_trusted_sealer_defers_instead_of_refusing(self):
        self.serve_override(self.forwarder)
        outcome = await self.send_forwarded(self.forwarded_unverifiable())
        self.assertEqual(outcome.data,
                         (452, "failed DMARC policy, trusted ARC sealer not verifiable now"))
        self.assertLogged(codes.LOGINFO, r"^no override: ARC chain temperror")
        self.assertLogged(codes.LOGINFO, r"^deferred: trusted ARC sealer %s not verifiable now$"
                          % self.forwarder.replace(".", r"\."))

    async def test_disconnect_becomes_temporary_disconnect(self):
        self.serve_dkim("reject 0", after=["dmarc reject_type disconnect", "arc"],
                        files={"public_suffix_list": SUFFIXES,
                               "arc_trusted_sealers": self.forwarder})
        outcome = await self.send_forwarded(self.forwarded_unverifiable())
        # data_post's DENYSOFT_DISCONNECT: 452, then the connection is closed (qpsmtpd's)
        self.assertEqual(outcome.data[0], 452)
        await self.last_client.wait_closed()
        self.assertTrue(self.last_client.closed)

    async def test_untrusted_sealer_is_refused_as_before(self):
        self.serve_override("elsewhere.example")
        self.assertRefused(await self.send_forwarded(self.forwarded_unverifiable()))
        self.assertEqual(self.logged(codes.LOGINFO, r"^deferred"), [])

class ConfigTests(OverrideCase):
    def test_a_bad_line_stops_start_up(self):
        self.assertStartupError(
            "dmarc", "arc_trusted_sealers:2: not a domain name: 'not a domain'",
            {"arc_trusted_sealers": "lists.example\nnot a domain\n"})


class ParseTests(unittest.TestCase):
    def test_results_of_an_arc_authentication_results_value(self):
        value = ('i=2; mx.lists.example (version; 1) 1; spf=pass (a; b) '
                 'smtp.mailfrom=bounce@lists.example;\r\n\tdkim=fail reason="bad; sig" '
                 'header.d=Example.ORG; DMARC=Pass header.from=example.org; none')
        self.assertEqual(arc_override.parse_results(value), [
            ("spf", "pass", {"smtp.mailfrom": "bounce@lists.example"}),
            ("dkim", "fail", {"reason": "bad; sig", "header.d": "Example.ORG"}),
            ("dmarc", "pass", {"header.from": "example.org"})])
