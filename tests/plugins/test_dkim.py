"""The ``dkim`` plugin against independent DKIM code and a real DNS server.

Messages signed by Perl's Mail::DKIM (tests/support/mail_dkim.py) and by Exim's smtp
transport (RSA and Ed25519), their public keys on the suite's private NSD
(tests/support/dns.py), are checked by a server on a loopback socket; messages the plugin
signs for a relay client (RSA) are checked by Mail::DKIM with the keys on the same DNS
server. No independent verifier of Ed25519 is at hand (Mail::DKIM would need CryptX; Exim's
verifier needs its own resolv.conf): the plugin's Ed25519 signatures are checked by the
plugin, and a different Ed25519 key published shows that check is real.
"""

import os
import shutil
import tempfile

from twisted.internet import threads

from qpsmtpd_tx import codes
from tests.support import mail_dkim
from tests.support.dkim_cases import SELECTOR, DKIMCase, text_message, with_signature
from tests.support.exim import private_exim
from tests.support.perl_qpsmtpd import start_both
from tests.support.smtp_session import data_reply

class VerifyTests(DKIMCase):
    async def test_signed_by_mail_dkim_passes(self):
        self.serve_dkim()
        for method in ("relaxed/relaxed", "simple/simple", "relaxed/simple"):
            text = text_message(self.zone)
            field = mail_dkim.sign(text.encode(), self.keyfile, self.zone, SELECTOR, method)
            outcome = await self.send(with_signature(field, text))
            self.assertEqual(outcome.data[0], 250, method)
            [result] = self.auth_results(outcome)
            self.assertRegex(result, r"^dkim=pass header\.d=%s header\.i=@%s header\.s=%s "
                             r"header\.a=rsa-sha256 header\.b=\S{8}$"
                             % (self.zone, self.zone, SELECTOR))

    async def test_tampered_body_fails(self):
        self.serve_dkim()
        text = text_message(self.zone)
        field = mail_dkim.sign(text.encode(), self.keyfile, self.zone, SELECTOR)
        outcome = await self.send(with_signature(field, text.replace("see you", "pay me")))
        self.assertEqual(outcome.data,
                         (552, "signature invalid: fail (body has been altered)"))
        self.assertIsNone(outcome.queued)

    async def test_tampered_header_fails_and_reject_0_only_records_it(self):
        self.serve_dkim("reject 0")
        text = text_message(self.zone)
        field = mail_dkim.sign(text.encode(), self.keyfile, self.zone, SELECTOR)
        outcome = await self.send(with_signature(field, text.replace("hello", "invoice")))
        self.assertEqual(outcome.data[0], 250)
        [result] = self.auth_results(outcome)
        self.assertTrue(result.startswith('dkim=fail reason="message has been altered" '
                                          'header.d=%s ' % self.zone), result)
        self.assertLogged(codes.LOGINFO,
                          r"^fail, tolerated, result: fail \(message has been altered\)")

    async def test_a_second_from_field_fails(self):
        self.serve_dkim()
        text = text_message(self.zone)
        field = mail_dkim.sign(text.encode(), self.keyfile, self.zone, SELECTOR)
        forged = text.replace("To: ", "From: boss@bank.example\r\nTo: ", 1)
        outcome = await self.send(with_signature(field, forged))
        self.assertEqual(outcome.data, (552, "signature invalid: fail (message has been altered)"))

    async def test_body_length_limit(self):
        """l=: text added after the signed part still passes (the entry says how much was
        signed), as Mail::DKIM also decides; a body shorter than l= fails."""
        self.serve_dkim()
        text = text_message(self.zone, body="signed part\r\n")
        field = mail_dkim.sign(text.encode(), self.keyfile, self.zone, SELECTOR, length=13)
        appended = with_signature(field, text + "unsubscribe here\r\n")
        self.assertEqual(mail_dkim.verify(appended.encode(), self.dns.address)[0], "pass")
        outcome = await self.send(appended)
        self.assertEqual(outcome.data[0], 250)
        [result] = self.auth_results(outcome)
        self.assertTrue(result.startswith('dkim=pass reason="l=13 of 31 body bytes signed"'),
                        result)
        cut = with_signature(field, text.replace("signed part", "signed"))
        self.assertEqual((await self.send(cut)).data,
                         (552, "signature invalid: fail (l= is longer than the body)"))

    async def test_every_signature_is_reported_and_one_pass_is_enough(self):
        self.serve_dkim()
        text = text_message(self.zone)
        good = mail_dkim.sign(text.encode(), self.keyfile, self.zone, SELECTOR)
        other_key, other_record = mail_dkim.make_key(self.mktemp())
        self.publish({SELECTOR: self.record, "other": other_record})
        # signed by the other key, published under the other selector, then the body changed
        bad = mail_dkim.sign(text.replace("see you", "bye").encode(), other_key, self.zone,
                             "other")
        outcome = await self.send(with_signature(bad, with_signature(good, text)))
        self.assertEqual(outcome.data[0], 250)
        results = self.auth_results(outcome)
        self.assertEqual([r.split(" ")[0] for r in results], ["dkim=fail", "dkim=pass"])
        self.assertIn("header.s=other", results[0])

    async def test_no_key_and_no_signature(self):
        self.serve_dkim()
        self.publish({})
        text = text_message(self.zone)
        field = mail_dkim.sign(text.encode(), self.keyfile, self.zone, SELECTOR)
        outcome = await self.send(with_signature(field, text))
        self.assertEqual(outcome.data[0], 250)     # invalid: accepted, as 0.94
        [result] = self.auth_results(outcome)
        self.assertTrue(result.startswith('dkim=permerror reason="no key" '), result)
        outcome = await self.send(text)
        self.assertEqual(self.auth_results(outcome), ["dkim=none"])

    async def test_a_key_name_that_cannot_exist_is_no_key(self):
        """d= that is no DNS name: no key (permerror, accepted), never a deferral."""
        self.serve_dkim()
        text = text_message(self.zone)
        field = mail_dkim.sign(text.encode(), self.keyfile, self.zone, SELECTOR)
        outcome = await self.send(with_signature(field.replace("d=" + self.zone, "d=a..b"),
                                                 text))
        self.assertEqual(outcome.data[0], 250)
        self.assertTrue(self.auth_results(outcome)[0].startswith(
            'dkim=permerror reason="no key" header.d=a..b '), self.auth_results(outcome))

    async def test_odd_messages_are_none(self):
        """No header block, a line that is no field, a DKIM-Signature that is no tag list:
        accepted, never an error."""
        self.serve_dkim()
        for text in ("\r\njust a body\r\n",
                     "From nobody Sun Dec  6 2026\r\nSubject: x\r\n\r\nbody\r\n",
                     "DKIM-Signature: \x01garbage;;==\r\nFrom: a@b.example\r\n\r\nbody\r\n"):
            outcome = await self.send(text)
            self.assertEqual(outcome.data[0], 250, text)
        self.assertEqual(self.logged(codes.LOGCRIT, "."), [])
        self.assertTrue(self.auth_results(outcome)[0].startswith("dkim=neutral "),
                        self.auth_results(outcome))

    async def test_dns_failure_defers_unless_reject_0(self):
        zone = self.dns.servfail_zone(self.dns.unique_zone("dkimfail"))
        text = text_message(zone)
        signed = with_signature(mail_dkim.sign(text.encode(), self.keyfile, zone, SELECTOR),
                                text)
        self.serve_dkim()
        code, reply = (await self.send(signed)).data
        self.assertEqual(code, 452)
        self.assertTrue(reply.startswith("Please try again later - temperror (key lookup: "),
                        reply)
        self.serve_dkim("reject 0")
        outcome = await self.send(signed)
        self.assertEqual(outcome.data[0], 250)
        self.assertTrue(self.auth_results(outcome)[0].startswith("dkim=temperror "))

    async def test_rsa_sha1_and_short_keys_are_refused_by_policy(self):
        self.serve_dkim()
        short_key, short_record = mail_dkim.make_key(self.mktemp(), bits=768)
        self.publish({SELECTOR: self.record, "short": short_record})
        text = text_message(self.zone)
        field = mail_dkim.sign(text.encode(), short_key, self.zone, "short")
        outcome = await self.send(with_signature(field, text))
        self.assertEqual(outcome.data[0], 250)
        self.assertTrue(self.auth_results(outcome)[0].startswith(
            'dkim=policy reason="RSA key shorter than 1024 bits (RFC 8301)"'))


class SignTests(DKIMCase):
    def serve_signing(self, domains):
        """A server that signs for relay clients, with our key under each of ``domains``
        (a value: a domain the directory is a symbolic link to)."""
        server = self.serve_dkim(before=["relay"], files={"relayclients": "127.0.0.1"})
        dkim_dir = os.path.join(server.config.config_dir, "dkim")
        for domain, target in domains.items():
            path = os.path.join(dkim_dir, domain)
            if target:
                os.symlink(target, path)
                continue
            os.makedirs(path)
            with open(os.path.join(path, "selector"), "w") as f:
                f.write(SELECTOR + "\n")
            with open(self.keyfile, "rb") as src, open(os.path.join(path, "private"), "wb") as f:
                f.write(src.read())
        return server

    def crlf(self, queued):
        return queued.replace(b"\n", b"\r\n")

    async def test_signed_message_passes_mail_dkim(self):
        self.serve_signing({self.zone: None})
        outcome = await self.send_from("me@" + self.zone, text_message(self.zone))
        self.assertEqual(outcome.data[0], 250)
        field = outcome.header.get_first("DKIM-Signature")
        self.assertIn("d=%s" % self.zone, field)
        self.assertIn("c=relaxed/relaxed", field)
        self.assertIn("h=from:to:subject:date:message-id:from:subject:date:message-id:to",
                      field.replace(" ", ""))
        overall, [(result, domain, _)] = mail_dkim.verify(self.crlf(outcome.queued),
                                                          self.dns.address)
        self.assertEqual((overall, result, domain), ("pass", "pass", self.zone))
        self.assertLogged(codes.LOGINFO, r"^pass, we signed the message \(d=%s s=%s\)$"
                          % (self.zone, SELECTOR))

    async def test_added_or_changed_fields_break_it(self):
        self.serve_signing({self.zone: None})
        outcome = await self.send_from("me@" + self.zone, text_message(self.zone))
        head, body = self.crlf(outcome.queued).split(b"\r\n\r\n", 1)
        # over-signed: a second Subject cannot be added
        added = head + b"\r\nSubject: urgent\r\n\r\n" + body
        self.assertEqual(mail_dkim.verify(added, self.dns.address)[0], "fail")
        changed = self.crlf(outcome.queued).replace(b"Hi there", b"Hi thar")
        self.assertEqual(mail_dkim.verify(changed, self.dns.address)[0], "fail")

    async def test_subdomain_uses_the_parent_key_and_a_link_signs_as_its_target(self):
        self.serve_signing({self.zone: None, "client.example": self.zone})
        outcome = await self.send_from("me@mail." + self.zone, text_message(self.zone))
        self.assertIn("d=%s;" % self.zone, outcome.header.get_first("DKIM-Signature"))
        outcome = await self.send_from("me@client.example", text_message(self.zone))
        self.assertIn("d=%s;" % self.zone, outcome.header.get_first("DKIM-Signature"))
        self.assertEqual(mail_dkim.verify(self.crlf(outcome.queued), self.dns.address)[0],
                         "pass")

    async def test_no_key_directory_no_signature(self):
        self.serve_signing({})
        outcome = await self.send_from("me@" + self.zone, text_message(self.zone))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.count("DKIM-Signature"), 0)
        self.assertLogged(codes.LOGINFO, r"^skip, DKIM not configured for %s$" % self.zone)

    async def test_ed25519_round_trip(self):
        """Signed with an Ed25519 key by the plugin, then checked by the plugin: passes with
        the right public key, fails with another Ed25519 key published."""
        self.keyfile, record = mail_dkim.make_key(self.mktemp(), "ed25519")
        self.publish({SELECTOR: record})
        self.serve_signing({self.zone: None})
        outcome = await self.send_from("me@" + self.zone, text_message(self.zone))
        field = "DKIM-Signature: " + outcome.header.get_first("DKIM-Signature")
        self.assertIn("a=ed25519-sha256", field)
        original = outcome.queued.split(b"\n\n", 1)
        text = original[0].split(b"\nFrom: ", 1)[1]
        message = ("From: " + text.decode() + "\n\n" + original[1].decode()).replace("\n", "\r\n")
        self.serve_dkim()
        checked = await self.send(with_signature(field, message))
        self.assertTrue(self.auth_results(checked)[0].startswith(
            "dkim=pass header.d=%s header.i=@%s header.s=%s header.a=ed25519-sha256"
            % (self.zone, self.zone, SELECTOR)), self.auth_results(checked))
        _, other = mail_dkim.make_key(self.mktemp(), "ed25519")
        self.publish({SELECTOR: other})
        self.serve_dkim()       # a new server: a new resolver cache
        self.assertEqual((await self.send(with_signature(field, message))).data,
                         (552, "signature invalid: fail (message has been altered)"))


class EximSignedTests(DKIMCase):
    """Exim's own DKIM signing (its smtp transport's ``dkim_*`` options; RSA and Ed25519, with
    GnuTLS) delivers to the server by SMTP: the check passes with Exim's public key published,
    and fails with another key of the same kind published instead."""

    def exim_key(self, kind):
        """A key Exim's delivery process (another user) can read."""
        keydir = tempfile.mkdtemp(prefix="qptx-dkim-")
        self.addCleanup(shutil.rmtree, keydir, True)
        os.chmod(keydir, 0o755)
        key, record = mail_dkim.make_key(os.path.join(keydir, kind), kind)
        os.chmod(os.path.dirname(key), 0o755)
        os.chmod(key, 0o644)
        return key, record

    async def exim_send(self, key, published):
        """Publish ``published`` as selector ``exim``, start a server, have Exim sign with
        ``key`` and send to it; Exim's main log."""
        self.publish({"exim": published})
        self.serve_dkim()       # a new server: a new resolver cache
        exim = private_exim(self, dkim_sign=(self.zone, "exim", key, self.port))
        text = text_message(self.zone).replace("\r\n", "\n").encode()
        # in a thread: Exim delivers (to this reactor's server) before it returns; a null
        # sender, so a refusal makes no bounce
        status, output = await threads.deferToThread(
            exim.run, ["-odf", "-i", "-f", "<>", "alice@example.com"], text)
        self.assertEqual(status, 0, output)
        if exim.queued():
            # refused: Exim freezes a null sender's failed message; drop it now
            exim.run(["-Mrm"] + exim.queued())
        return exim.mainlog()

    async def test_rsa_and_ed25519(self):
        for kind in ("rsa", "ed25519"):
            key, record = self.exim_key(kind)
            log = await self.exim_send(key, record)
            self.assertIn("=> alice@example.com R=signed_smtp", log, self.logs)
            self.assertLogged(codes.LOGINFO, r"^pass, domain: %s, selector: exim$" % self.zone)
            _, other = mail_dkim.make_key(self.mktemp(), kind)
            log = await self.exim_send(key, other)
            self.assertIn("552 signature invalid: fail (message has been altered)", log)


def send_text(port, text):
    """The reply to the end of DATA for ``text`` (CRLF, without the final dot)."""
    return data_reply(port, text)


class SameAsPerlTests(DKIMCase):
    """Perl qpsmtpd 0.94's dkim plugin (Mail::DKIM) and ours, same config and DNS server:
    the same replies to a good, a body-altered and a header-altered message."""

    async def test_same_replies(self):
        files = {"rcpthosts": "example.com", "me": "mx.example.org"}
        plugins = ["rcpt_ok", "dkim", "queue/maildir {}"]      # {}: the Maildir
        perl, ours, _ = start_both(self, plugins, files, [self.dns.address], "qptx-dkim-")
        text = text_message(self.zone)
        signed = with_signature(mail_dkim.sign(text.encode(), self.keyfile, self.zone,
                                               SELECTOR), text)
        messages = [signed, signed.replace("see you", "pay me"),
                    signed.replace("Subject: hello", "Subject: invoice")]
        replies = {name: [send_text(port, m) for m in messages]
                   for name, port in (("perl", perl), ("ours", ours))}
        self.assertEqual(replies["ours"], [
            (250, replies["ours"][0][1]),
            (552, "signature invalid: fail (body has been altered)"),
            (552, "signature invalid: fail (message has been altered)")])
        self.assertEqual([r[0] for r in replies["perl"]], [250, 552, 552])
        self.assertEqual(replies["perl"][1:], replies["ours"][1:])
