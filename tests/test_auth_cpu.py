"""What the email-authentication plugins do to cost less per message, checked to change
nothing they answer: a hook's already-known answer handed over at once
(qpsmtpd_tx.hook_result), the b= blanking of DKIM signatures, DMARC's cached From parsing,
and SPF texts made once per result. Their effect is measured by bench/auth_bench.py."""

import random
import re

from twisted.internet import defer
from twisted.trial import unittest

from qpsmtpd_tx import dkim_verify, dmarc_policy
from qpsmtpd_tx.hook_result import now_if_ready
from qpsmtpd_tx.spf import SPFResult
from tests.support.dkim_cases import DKIMCase, text_message


class NowIfReadyTests(unittest.TestCase):
    def test_fired_deferred_gives_its_result(self):
        self.assertEqual(now_if_ready(defer.succeed((901, "x"))), (901, "x"))

    def test_pending_failed_and_plain_answers_pass_through(self):
        pending = defer.Deferred()
        self.assertIs(now_if_ready(pending), pending)
        pending.callback(1)
        self.assertEqual(self.successResultOf(pending), 1)
        failed = defer.fail(ValueError("x"))
        self.assertIs(now_if_ready(failed), failed)
        self.failureResultOf(failed, ValueError)
        self.assertEqual(now_if_ready(909), 909)


#: the b= blanking as first written (a character at a time): the reference
_REFERENCE_B = re.compile(rb"([;\s]b\s*=)(?:\s*[a-zA-Z0-9+/=])*(?:\r?\n\Z)?")


class BlankBTests(unittest.TestCase):
    def test_same_as_the_reference(self):
        value = b"QUJD" * 86
        cases = [
            b" v=1; a=rsa-sha256; bh=YWJj; b=" + value[:70] + b"\r\n\t" + value[70:] + b"\r\n",
            b" v=1; b= abc \r\n; d=x\r\n", b" b=\r\n", b" v=1; b=abc d=; x=y", b"b=abc",
            b" v=1;\tb = a b  c  \r\n", b" v=1; b=;h=x\r\n", b"; b=abc\r\n\r\n",
            b" v=1; bh=x; b=q\n", b" v=1; b=ab\r\n\tcd; s=x\r\n"]
        for case in cases:
            self.assertEqual(dkim_verify.blank_b(case), _REFERENCE_B.sub(rb"\1", case), case)

    def test_random_values_same_as_the_reference(self):
        # b= tags among white space, line ends, other tags and bytes that end a value
        rng = random.Random(12)
        alphabet = [b"b", b"=", b";", b" ", b"\t", b"\r", b"\n", b"\r\n", b"Q", b"+", b"/",
                    b"!", b"h", b"\x00", b"\xff", b"b=", b" b=", b";b =", b"QUJD"]
        for _ in range(5000):
            case = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 30)))
            self.assertEqual(dkim_verify.blank_b(case), _REFERENCE_B.sub(rb"\1", case), case)


class FromDomainTests(unittest.TestCase):
    def test_answers(self):
        self.assertEqual(dmarc_policy.from_domain(("A <a@Example.ORG.>",)), "example.org")
        self.assertEqual(dmarc_policy.from_domain(("a@x.example",)), "x.example")
        for froms in (("a@x.example, b@y.example",), ("a@x.example", "b@x.example"),
                      ("nobody",), ("a@",), ("",)):
            self.assertIsNone(dmarc_policy.from_domain(froms), froms)


class SPFTextTests(unittest.TestCase):
    def test_made_once_per_result(self):
        result = SPFResult(result="pass", scope="mfrom", identity="a@example.com",
                           domain="example.com", ip="192.0.2.1", helo="h.example",
                           mechanism="ip4:192.0.2.1")
        made = []
        original = result._local_explanation
        self.patch(result, "_local_explanation", lambda: made.append(1) or original())
        first = result.received_spf("mx.example.org")
        self.assertEqual(result.received_spf("mx.example.org"), first)
        self.assertTrue(first.startswith("pass (%s) " % result.local_explanation()), first)
        self.assertEqual(len(made), 1)
        self.assertIn("receiver=mx2.example.org", result.received_spf("mx2.example.org"))


class SynchronousAnswerTests(DKIMCase):
    """With the key in the DNS cache, dkim and dmarc answer a small message at once: the
    hook machinery sets no time limit for them (no Deferred to wait for)."""

    async def test_no_wait_with_a_warm_cache(self):
        server = self.serve_dkim("reject 0", after=["dmarc"])
        waited = []
        original = server.hooks._limit
        self.patch(server.hooks, "_limit",
                   lambda pending, hook, plugin, transaction: waited.append(
                       (hook, plugin.name)) or original(pending, hook, plugin, transaction))
        self.publish({}, extra=[("_dmarc", "TXT", "v=DMARC1; p=none")])
        for _ in range(2):
            outcome = await self.send_from("me@" + self.zone, text_message(self.zone))
            self.assertEqual(outcome.data[0], 250)
        # the first message asks the DNS (dmarc's record; no key: no signature); the second
        # finds everything cached
        self.assertEqual([w for w in waited if w[0] == "data_post"], [("data_post", "dmarc")])
