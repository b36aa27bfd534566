"""The email-authentication plugins (``dkim``, ``arc``, ``dmarc``) given fields a hostile
sender writes, on a server on a loopback socket with keys on the suite's private NSD: every
such message gets a result and an SMTP answer, never a traceback."""

import base64

from qpsmtpd_tx import arc, codes, dkim_body, dkim_verify, dmarc_policy
from tests.plugins.test_arc import ARCCase
from tests.support import mail_dkim
from tests.support.dkim_cases import SELECTOR, text_message, with_signature


class HugeNumberTests(ARCCase):
    async def test_numbers_too_long_for_int_are_malformed_fields(self):
        """t=, x= and ARC's i= of 5000 digits: int() refuses them (ValueError), which
        escaped from the dkim and arc plugins."""
        self.serve_arc()
        digits = "1" * 5000
        fields = ("DKIM-Signature: v=1; a=rsa-sha256; d=%s; s=%s; h=from; bh=AAAA; b=AAAA;"
                  " t=%s\r\n" % (self.zone, SELECTOR, digits)
                  + "DKIM-Signature: v=1; a=rsa-sha256; d=%s; s=%s; h=from; bh=AAAA; b=AAAA;"
                  " x=%s\r\n" % (self.zone, SELECTOR, "0" * 5000)
                  + "ARC-Seal: i=%s; a=rsa-sha256; cv=none; d=%s; s=%s; b=AAAA\r\n"
                  % (digits, self.zone, SELECTOR)
                  + "ARC-Authentication-Results: i=1; %s; none\r\n" % self.zone)
        outcome = await self.send_from("me@example.net", fields + text_message(self.zone))
        self.assertEqual(outcome.data[0], 250)
        results = self.auth_results(outcome)
        self.assertTrue(results[0].startswith(
            'dkim=neutral reason="bad signature: t= value is in the future'), results[0][:200])
        self.assertTrue(results[1].startswith(
            'dkim=neutral reason="bad signature: x= value is past'), results[1][:200])
        self.assertEqual(results[2], 'arc=fail reason="ARC-Seal without a valid i=" '
                                     'smtp.remote-ip=127.0.0.1')
        self.assertEqual(self.logged(codes.LOGERROR, "."), [])


class ResultSizeTests(ARCCase):
    async def test_our_field_does_not_repeat_huge_values(self):
        """A b= of 100 KB that is no base64: the reason quoted it whole, so our
        Authentication-Results field was as big as the sender's field."""
        self.serve_dkim("reject 0")
        folded = "\r\n ".join(["!" * 1000] * 100)
        field = ("DKIM-Signature: v=1; a=rsa-sha256; d=%s; s=%s; h=from; bh=AAAA;\r\n b=%s\r\n"
                 % (self.zone, SELECTOR, folded))
        outcome = await self.send_from("me@example.net", field + text_message(self.zone))
        self.assertEqual(outcome.data[0], 250)
        [value] = outcome.header.get("Authentication-Results")
        self.assertLess(len(value), 1000, value[:300])
        [dkim_entry] = value.split("; ")[2:]
        self.assertTrue(dkim_entry.startswith(
            'dkim=neutral reason="bad signature: b= value is not valid base64'), dkim_entry)
        self.assertIn('..." header.d=%s header.i=@%s header.s=%s header.a=rsa-sha256 '
                      % ((self.zone,) * 2 + (SELECTOR,)), dkim_entry)
        # nor the log (the reason and the key name, at every level)
        self.assertLess(max(len(text) for _, text in self.logs), 1000)


    async def test_a_huge_arc_reason_is_clipped_in_the_field_and_the_log(self):
        """An ARC-Seal whose b= of 100 KB is no base64: the chain's reason quoted it whole
        in the log line of every such message."""
        self.serve_arc()
        folded = "\r\n ".join(["!" * 1000] * 100)
        fields = ("ARC-Seal: i=1; a=rsa-sha256; cv=none; d=%s; s=%s;\r\n b=%s\r\n"
                  "ARC-Message-Signature: i=1; a=rsa-sha256; d=%s; s=%s; h=from; bh=AAAA; "
                  "b=AAAA\r\nARC-Authentication-Results: i=1; %s; none\r\n"
                  % (self.zone, SELECTOR, folded, self.zone, SELECTOR, self.zone))
        outcome = await self.send_from("me@example.net", fields + text_message(self.zone))
        self.assertEqual(outcome.data[0], 250)
        [entry] = self.our_results(outcome)
        self.assertTrue(entry.startswith('arc=fail reason="malformed ARC-Seal: b= value is '
                                         'not valid base64'), entry[:200])
        self.assertLess(len(entry), 400)
        self.assertLess(max(len(text) for _, text in self.logs), 1000)


class FromFieldTests(ARCCase):
    async def test_a_from_field_the_parser_cannot_read_is_unparseable(self):
        """Thousands of nested comments or group colons: the email package's address parser
        recursed until RecursionError, raised out of the dmarc plugin."""
        self.serve_dkim("reject 0", after=["dmarc"])
        for hostile in ("(" * 3000 + "a@bank.example", "g:" * 3000 + "a@bank.example;"):
            text = text_message(self.zone).replace("Sender <sender@%s>" % self.zone, hostile, 1)
            outcome = await self.send_from("me@example.net", text)
            self.assertEqual(outcome.data, (552, "unparseable from header"))
        self.assertEqual(self.logged(codes.LOGERROR, "."), [])

    async def test_a_domain_the_parser_made_up_is_unparseable(self):
        """Python's address parser joins what follows an address to its domain and keeps
        characters no domain has: DMARC looked up the policy of a name the reader does not
        see (none: accepted). A domain of 60 KB is no domain name either."""
        self.policy_reject()
        self.serve_dkim("reject 0", after=["dmarc"])
        for hostile in ("boss@%s x", "boss@%s evil.example", "boss@%s\\",
                        "boss@%s[x]", "boss@" + ".".join(["a" * 60] * 1000) + ".%s"):
            text = text_message(self.zone).replace("Sender <sender@%s>" % self.zone,
                                                   hostile % self.zone, 1)
            outcome = await self.send_from("me@example.net", text)
            self.assertEqual(outcome.data, (552, "unparseable from header"), hostile)
            await self.last_client.command("QUIT")      # (at most 5 connections per IP)
        # as written, with a comment and a final dot: read, and refused by the policy
        text = text_message(self.zone).replace("<sender@%s>" % self.zone,
                                               "<sender@%s.> (x)" % self.zone.upper(), 1)
        outcome = await self.send_from("me@example.net", text)
        self.assertEqual(outcome.data, (552, "failed DMARC policy"))

    async def test_a_from_field_longer_than_max_from_is_not_parsed(self):
        """The address parser costs about 2 us a character: a From field of 250 KB of "@"
        held the reactor half a second per message."""
        self.policy_reject()
        self.serve_dkim("reject 0", after=["dmarc"])
        parsed = []
        original = dmarc_policy.getaddresses
        self.patch(dmarc_policy, "getaddresses",
                   lambda froms: parsed.append(sum(map(len, froms))) or original(froms))
        hostile = "\r\n ".join(["@" * 1000] * 200) + " sender@%s" % self.zone
        text = text_message(self.zone).replace("Sender <sender@%s>" % self.zone, hostile, 1)
        outcome = await self.send_from("me@example.net", text)
        self.assertEqual(outcome.data, (552, "unparseable from header"))
        self.assertEqual(parsed, [])

    def policy_reject(self):
        """Publish ``p=reject`` for our zone (beside its key)."""
        self.publish({SELECTOR: self.record}, extra=[("_dmarc", "TXT", "v=DMARC1; p=reject")])

    async def test_a_long_from_field_is_not_remembered(self):
        """The From domain's cache kept every From field it was asked about: 200 fields of
        200 KB held 80 MB, a full cache would hold 1.6 GB."""
        self.serve_dkim("reject 0", after=["dmarc reject 0"])
        before = dmarc_policy.from_domain.cache_info().currsize
        long_name = "\r\n ".join(["x" * 1000] * 3)      # (at most MAX_FROM are read)
        text = text_message(self.zone).replace("Sender <", '"%s" <' % long_name, 1)
        outcome = await self.send_from("me@example.net", text)
        self.assertEqual(outcome.data[0], 250)
        self.assertIn("header.from=%s" % self.zone, self.auth_results(outcome)[-1])
        self.assertEqual(dmarc_policy.from_domain.cache_info().currsize, before)


class KeyRecordTests(ARCCase):
    async def test_a_key_dkimpy_cannot_read_is_malformed(self):
        """A SubjectPublicKeyInfo whose NULL has a length: dkimpy's ASN.1 reader raised
        AssertionError out of the dkim plugin (found by mutating keys)."""
        der = bytearray(base64.b64decode(self.record.split("p=")[1]))
        self.assertEqual(der[17:19], b"\x05\x00")
        der[18] = 1
        self.publish({"bad": "v=DKIM1; k=rsa; p=" + base64.b64encode(bytes(der)).decode()})
        self.serve_dkim()
        text = text_message(self.zone)
        field = mail_dkim.sign(text.encode(), self.keyfile, self.zone, "bad")
        outcome = await self.send(with_signature(field, text))
        self.assertEqual(outcome.data[0], 250)
        self.assertTrue(self.auth_results(outcome)[0].startswith(
            'dkim=permerror reason="malformed rsa key" '), self.auth_results(outcome))
        self.assertEqual(self.logged(codes.LOGERROR, "."), [])


class SecondFromTests(ARCCase):
    async def test_a_from_field_with_space_before_its_colon_is_not_skipped(self):
        """``From : boss@…`` added to a signed message: a mail reader (and the dmarc plugin)
        reads it as a From field; the signature check skipped it as an mbox ``From `` line
        and passed. The header is now one it cannot read: no pass."""
        self.serve_dkim("reject 0")
        text = text_message(self.zone)
        signed = with_signature(mail_dkim.sign(text.encode(), self.keyfile, self.zone,
                                               SELECTOR), text)
        self.assertEqual(self.auth_results(await self.send(signed))[0][:10], "dkim=pass ")
        for added in ("From : boss@%s\r\n", "From\t:boss@%s\r\n"):
            outcome = await self.send((added % self.zone) + signed)
            self.assertEqual(outcome.data[0], 250)
            self.assertEqual(self.auth_results(outcome), ["dkim=none"])
        self.assertEqual(len(self.logged(codes.LOGINFO, "header not parsed: not a header "
                                                        "field: b'From")), 2)


class IDNTests(ARCCase):
    async def test_a_non_ascii_from_domain_aligns_with_its_idna_d(self):
        """From: …@bänk.<zone>, signed with d=xn--bnk-qla.<zone> (DKIM names are ASCII), under
        adkim=s: the From domain was compared as written, never the same name, and the
        message was refused by the policy of its own domain."""
        ace = "bänk".encode("idna").decode()
        self.publish({SELECTOR: self.record}, extra=[
            ("%s._domainkey.%s" % (SELECTOR, ace), "TXT", self.record),
            ("_dmarc.%s" % ace, "TXT", "v=DMARC1; p=reject; adkim=s")])
        self.serve_dkim("reject 0", after=["dmarc"])
        text = text_message("bänk." + self.zone)
        field = mail_dkim.sign(text.encode(), self.keyfile, "%s.%s" % (ace, self.zone),
                               SELECTOR)
        outcome = await self.send_from("me@example.net", with_signature(field, text))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.auth_results(outcome)[1],
                         "dmarc=pass (p=reject sp=reject dis=none) header.from=%s.%s"
                         % (ace, self.zone))


class ARCBodyHashTests(ARCCase):
    def forged_chain(self, count, lengths=True, last_cv="pass"):
        """``count`` well-formed ARC sets that verify nothing, each AMS with its own l=."""
        fields = []
        for i in range(count, 0, -1):
            cv = "none" if i == 1 else (last_cv if i == count else "pass")
            fields += ["ARC-Seal: i=%d; a=rsa-sha256; cv=%s; d=%s; s=%s; b=AAAA" % (
                           i, cv, self.zone, SELECTOR),
                       "ARC-Message-Signature: i=%d; a=rsa-sha256; c=relaxed/relaxed; d=%s;"
                       " s=%s; h=from; bh=AAAA;%s b=AAAA" % (
                           i, self.zone, SELECTOR, " l=%d;" % i if lengths else ""),
                       "ARC-Authentication-Results: i=%d; %s; none" % (i, self.zone)]
        return "\r\n".join(fields) + "\r\n"

    def count_hashes(self):
        """The body hashes each pass over a body computes."""
        passes = []
        original = dkim_body.body_hashes

        def counting(body, wanted, *args):
            passes.append(len(wanted))
            return original(body, wanted, *args)
        self.patch(dkim_body, "body_hashes", counting)
        return passes

    async def test_a_chain_gets_at_most_max_body_hashes(self):
        """50 sets whose l= all differ: 50 passes' worth of hashing per message (1.5 s for
        50 MB); a chain whose form fails got its hashes all the same."""
        self.serve_arc()
        passes = self.count_hashes()
        text = text_message(self.zone)
        outcome = await self.send_from("me@example.net", self.forged_chain(50) + text)
        self.assertEqual(outcome.data[0], 250)
        self.assertTrue(self.our_results(outcome)[0].startswith(
            'arc=fail reason="ARC-Message-Signature 50: '), self.our_results(outcome))
        self.assertEqual(passes, [arc.MAX_BODY_HASHES])
        await self.last_client.command("QUIT")
        del passes[:]
        outcome = await self.send_from("me@example.net",
                                       self.forged_chain(20, last_cv="fail") + text)
        self.assertEqual(self.our_results(outcome),
                         ['arc=fail reason="ARC-Seal 20 has cv=fail" smtp.remote-ip=127.0.0.1'])
        self.assertEqual(passes, [])

    def test_the_newest_signatures_get_them(self):
        fields = dkim_verify.parse_fields(self.forged_chain(12).replace("\r\n", "\n").encode())
        chain = arc.Chain(fields)
        self.assertIsNone(chain.problem)
        self.assertEqual(chain.body_keys(), {("relaxed", "sha256", i) for i in range(3, 13)})
        self.assertEqual((chain.signatures[2].result, chain.signatures[2].reason),
                         ("policy", "more than 10 body hashes in the chain"))
        same = arc.Chain(dkim_verify.parse_fields(
            self.forged_chain(50, lengths=False).replace("\r\n", "\n").encode()))
        self.assertEqual(same.body_keys(), {("relaxed", "sha256", None)})
