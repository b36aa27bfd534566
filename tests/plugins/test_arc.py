"""The ``arc`` plugin against an independent ARC implementation (rspamd's ``arc`` module,
tests/support/rspamd_arc.py) and dkimpy's ``arc_verify``, keys on the suite's private NSD.

Our seals are checked by rspamd and dkimpy; sets rspamd seals are checked by the plugin
(and sealed on top again, which rspamd then checks); a changed message fails.
"""

import dkim

from qpsmtpd_tx import codes
from tests.support import mail_dkim
from tests.support.arc_forwarder import forwarder_sealed
from tests.support.dkim_cases import SELECTOR, DKIMCase, text_message
from tests.support.rspamd_arc import shared_arc_rspamd


def crlf(message):
    """A queued message (LF) as it goes on the wire (CRLF)."""
    return message.replace(b"\n", b"\r\n")


class ARCCase(DKIMCase):
    """A server with the arc plugin; our key (the DKIM case's) under ``dkim/<zone>``."""

    def serve_arc(self, args="", files=None, before=()):
        with open(self.keyfile) as f:
            key = f.read()
        files = dict(files or {})
        files.update({"dkim/%s/selector" % self.zone: SELECTOR,
                      "dkim/%s/private" % self.zone: key})
        return self.serve_dkim("reject 0", before=before, files=files,
                               after=[("arc " + args).strip()])

    def dkimpy_result(self, message):
        """dkimpy's chain result for ``message`` (CRLF), keys from the private NSD."""
        def txt(name, timeout=5):
            answers = self.dns.query(name.decode().rstrip("."), "TXT").answers
            return b"".join(answers[0].payload.data) if answers else None
        return dkim.arc_verify(message, dnsfunc=txt)[0].decode()

    def assertChainPasses(self, rspamd, outcome, instance):
        """rspamd and dkimpy find the queued message's chain good, our seal its newest."""
        message = crlf(outcome.queued)
        symbols = rspamd.check(message)
        self.assertEqual(symbols.get("ARC_ALLOW"),
                         ["%s:s=%s:i=%d" % (self.zone, SELECTOR, instance)], symbols)
        self.assertEqual(self.dkimpy_result(message), "pass")

    def our_results(self, outcome, method="arc"):
        return [r for r in self.auth_results(outcome) if r.startswith(method + "=")]


class SealTests(ARCCase):
    async def test_our_seal_passes_rspamd_and_dkimpy(self):
        rspamd = shared_arc_rspamd()
        self.serve_arc("seal all domain %s" % self.zone)
        outcome = await self.send_from("me@example.net", text_message(self.zone))
        self.assertEqual(outcome.data[0], 250)
        names = [name for name, _ in outcome.header.fields[:3]]
        self.assertEqual(names, ["ARC-Seal", "ARC-Message-Signature",
                                 "ARC-Authentication-Results"])
        self.assertEqual(self.our_results(outcome), ["arc=none"])
        aar = outcome.header.get_first("ARC-Authentication-Results")
        self.assertTrue(aar.startswith("i=1; mx.example.org; auth=none; dkim=none; arc=none"),
                        aar)
        self.assertIn("cv=none", outcome.header.get_first("ARC-Seal"))
        self.assertChainPasses(rspamd, outcome, 1)
        self.assertLogged(codes.LOGINFO, r"^sealed \(d=%s s=%s cv=none\)$"
                          % (self.zone, SELECTOR))

    async def test_changed_message_fails_rspamd(self):
        rspamd = shared_arc_rspamd()
        self.serve_arc("seal all domain %s" % self.zone)
        outcome = await self.send_from("me@example.net", text_message(self.zone))
        for old, new in ((b"Subject: hello", b"Subject: hellO"), (b"see you", b"see You")):
            changed = crlf(outcome.queued).replace(old, new)
            self.assertIn("ARC_REJECT", rspamd.check(changed))
            self.assertEqual(self.dkimpy_result(changed), "fail")

    async def test_seal_relay_seals_only_relay_clients(self):
        self.serve_arc("seal relay domain %s" % self.zone)
        outcome = await self.send_from("me@example.net", text_message(self.zone))
        self.assertEqual(outcome.header.count("ARC-Seal"), 0)
        self.assertEqual(self.our_results(outcome), ["arc=none"])

        self.serve_arc("seal relay domain %s" % self.zone, before=["relay"],
                       files={"relayclients": "127.0.0.1"})
        outcome = await self.send_from("me@example.net", text_message(self.zone))
        self.assertEqual(outcome.header.count("ARC-Seal"), 1)
        self.assertEqual(self.dkimpy_result(crlf(outcome.queued)), "pass")


class CheckTests(ARCCase):
    async def test_rspamd_sealed_message_passes_and_we_extend_the_chain(self):
        rspamd = shared_arc_rspamd()
        sealed = rspamd.seal(text_message(rspamd.zone).encode())
        self.serve_arc("seal all domain %s" % self.zone)
        outcome = await self.send_from("me@example.net", sealed.decode())
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.our_results(outcome),
                         ["arc=pass smtp.remote-ip=127.0.0.1 header.oldest-pass=0"])
        self.assertIn("cv=pass", outcome.header.get_first("ARC-Seal"))
        self.assertIn("i=2;", outcome.header.get_first("ARC-Seal"))
        self.assertChainPasses(rspamd, outcome, 2)

    async def test_big_message_is_hashed_in_pieces(self):
        # a body of several hash pieces (dkim_body.HASH_CHUNK) goes through the thread pool
        rspamd = shared_arc_rspamd()
        body = "".join("line %d of a long message, with  two spaces \r\n" % i
                       for i in range(6000))
        sealed = rspamd.seal(text_message(rspamd.zone, body=body).encode())
        self.serve_arc("seal all domain %s" % self.zone)
        outcome = await self.send_from("me@example.net", sealed.decode())
        self.assertEqual(self.our_results(outcome),
                         ["arc=pass smtp.remote-ip=127.0.0.1 header.oldest-pass=0"])
        self.assertChainPasses(rspamd, outcome, 2)

    async def test_oldest_pass_names_the_oldest_signature_that_still_verifies(self):
        rspamd = shared_arc_rspamd()
        sealed = rspamd.seal(text_message(rspamd.zone).encode())
        changed = sealed.replace(b"Subject: hello", b"Subject: [list] hello")
        # a forwarder that checked the chain, then changed the subject, seals it as passing:
        # rspamd's ARC-Message-Signature (i=1) no longer verifies, every seal does
        message = forwarder_sealed(changed, self.keyfile, self.zone,
                                   "forwarder.example; arc=pass")
        self.assertIn("ARC_ALLOW", rspamd.check(message))
        self.serve_arc()
        outcome = await self.send_from("me@example.net", message.decode())
        self.assertEqual(self.our_results(outcome),
                         ["arc=pass smtp.remote-ip=127.0.0.1 header.oldest-pass=2"])

    async def test_changed_after_rspamd_sealed_fails(self):
        rspamd = shared_arc_rspamd()
        sealed = rspamd.seal(text_message(rspamd.zone).encode())
        self.serve_arc("seal all domain %s" % self.zone)
        for old, new in ((b"Subject: hello", b"Subject: hellO"), (b"see you", b"see You")):
            outcome = await self.send_from("me@example.net", sealed.replace(old, new).decode())
            self.assertEqual(outcome.data[0], 250)
            [result] = self.our_results(outcome)
            self.assertTrue(result.startswith('arc=fail reason="ARC-Message-Signature 1: fail'),
                            result)
            # sealed with cv=fail, over our own set only: a checker says the chain failed
            self.assertIn("cv=fail", outcome.header.get_first("ARC-Seal"))
            self.assertIn("ARC_REJECT", rspamd.check(crlf(outcome.queued)))

    async def test_changed_seal_fails(self):
        rspamd = shared_arc_rspamd()
        sealed = rspamd.seal(text_message(rspamd.zone).encode())
        self.serve_arc()
        # folding white space is not seen by relaxed canonicalization
        self.assertIn(b"cv=none;\r\n\tb=", sealed)
        outcome = await self.send_from(
            "me@example.net", sealed.replace(b"cv=none;\r\n\tb=", b"cv=none;\r\n  b=").decode())
        self.assertEqual(self.our_results(outcome),
                         ["arc=pass smtp.remote-ip=127.0.0.1 header.oldest-pass=0"])
        changed = sealed.replace(b"ARC-Authentication-Results: i=1;",
                                 b"ARC-Authentication-Results: i=1; x.example;")
        outcome = await self.send_from("me@example.net", changed.decode())
        [result] = self.our_results(outcome)
        self.assertTrue(result.startswith('arc=fail reason="ARC-Seal 1: signature does not'),
                        result)

    async def test_key_lookup_failure_is_temperror_and_not_sealed(self):
        rspamd = shared_arc_rspamd()
        sealed = rspamd.seal(text_message(rspamd.zone).encode())
        # rspamd's key name in a zone that answers SERVFAIL
        broken = self.dns.unique_zone("arcbroken")
        self.dns.servfail_zone(broken)
        sealed = sealed.replace(("d=%s" % rspamd.zone).encode(), ("d=%s" % broken).encode())
        self.serve_arc("seal all domain %s" % self.zone)
        outcome = await self.send_from("me@example.net", sealed.decode())
        self.assertEqual(outcome.data[0], 250)
        [result] = self.our_results(outcome)
        self.assertTrue(result.startswith('arc=temperror reason="key lookup'), result)
        self.assertEqual(outcome.header.count("ARC-Seal"), 1)     # rspamd's only
        self.assertLogged(codes.LOGINFO, r"^not sealed: chain result temperror")

    async def test_incomplete_chain_fails(self):
        rspamd = shared_arc_rspamd()
        sealed = rspamd.seal(text_message(rspamd.zone).encode())
        self.serve_arc()
        start = sealed.index(b"ARC-Authentication-Results:")
        end = sealed.index(b"\r\n", start) + 2
        while sealed[end:end + 1] in (b" ", b"\t"):       # its continuation lines
            end = sealed.index(b"\r\n", end) + 2
        without_aar = sealed[:start] + sealed[end:]
        outcome = await self.send_from("me@example.net", without_aar.decode())
        self.assertEqual(self.our_results(outcome), [
            'arc=fail reason="ARC set 1 is incomplete" smtp.remote-ip=127.0.0.1'])


class StartupTests(ARCCase):
    def test_bad_arguments_and_keys_stop_start_up(self):
        self.assertStartupError("arc seal sometimes", "seal must be one of none, relay, all")
        self.assertStartupError("arc seal all domain nokey.example",
                                "no key directory dkim/nokey.example")
        directory = self.mktemp()
        ed_key, _ = mail_dkim.make_key(directory, "ed25519")
        with open(ed_key) as f:
            files = {"dkim/ed.example/selector": "s", "dkim/ed.example/private": f.read()}
        self.assertStartupError("arc seal all domain ed.example",
                                "ARC seals with RSA keys only", files)
