"""dspam against a STAND-IN dspam program (tests/support/scanners.py: dspam is no longer in
Debian; the stand-in speaks dspam's command line and ``--deliver=summary`` line as qpsmtpd
0.94 parses them, classing text with ``SPAMMY`` as spam, ``DOUBTFUL`` as spam without full
confidence, the rest innocent, and recording retraining in ``trained.log``). ``reject
agree`` runs after the real spamassassin plugin with the suite's private spamd."""

import os
import pwd

from qpsmtpd_tx import codes
from tests.support.filter_cases import FilterTestCase, message
from tests.support.scanners import command_lines, standin_file, startup_log, vendor_standin
from tests.support.spamd import GTUBE, shared_spamd


class DSpamTests(FilterTestCase):
    def setUp(self):
        self.program = vendor_standin(self, "dspam")

    def line(self, args=""):
        return "dspam dspam_bin %s %s" % (self.program, args)

    async def test_spam_above_reject_is_refused(self):
        self.serve(["rcpt_ok", self.line("reject .95")])
        outcome = await self.send(message("SPAMMY"))
        self.assertEqual(outcome.data, (552, "dspam says, no spam please (#5.6.1)"))
        self.assertEqual(command_lines(self.program)[0][1:], [
            "--user", "alice@example.com", "--mode=tum", "--process", "--deliver=summary",
            "--stdout"])
        self.assertTrue(standin_file(self.program, "stdin.log").startswith(
            "X-Envelope-From: <sender@client.example>\nReceived: "))
        self.assertEqual(os.listdir(self.server.spool_dir), [])

    async def test_reject_type_temp(self):
        self.serve(["rcpt_ok", self.line("reject 0.5 reject_type temp")])
        outcome = await self.send(message("SPAMMY"))
        self.assertEqual(outcome.data, (452, "dspam says, no spam please (#4.6.1)"))

    async def test_headers_and_note(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(message("hello", extra="X-DSPAM-Result: Innocent, forged\r\n"))
        self.assertEqual(outcome.data[0], 250)
        signature = outcome.header.get_first("X-DSPAM-Signature")
        self.assertRegex(signature, r"^sig\d+$")
        self.assertEqual(outcome.top(2), [
            "X-DSPAM-Signature: " + signature,
            "X-DSPAM-Result: Innocent, probability=0.0023, confidence=1.00"])
        self.assertEqual(outcome.header.count("X-DSPAM-Result"), 1)

    async def test_default_reject_1_never_refuses(self):
        self.serve(["rcpt_ok", self.line()])
        self.assertEqual((await self.send(message("SPAMMY"))).data[0], 250)
        self.assertLogged(codes.LOGINFO, r"^pass, Spam probability is too low \(1\.0000 < 1\.0\)$")

    async def test_low_confidence_passes(self):
        self.serve(["rcpt_ok", self.line("reject 0.5")])
        self.assertEqual((await self.send(message("DOUBTFUL"))).data[0], 250)
        self.assertLogged(codes.LOGINFO, r"^pass, Spam confidence is too low \(0\.80\)$")

    async def test_several_recipients_use_our_user(self):
        self.serve(["rcpt_ok", self.line()])
        await self.send(message("hello"), rcpts=["a@example.com", "b@example.com"])
        self.assertEqual(command_lines(self.program)[0][1:3],
                         ["--user", pwd.getpwuid(os.geteuid()).pw_name])

    async def test_per_recipient_reject(self):
        self.serve(["note_rcpt strict@example.com dspam_reject=0.5", "rcpt_ok", self.line()])
        outcome = await self.send(message("SPAMMY"), rcpts=["strict@example.com"])
        self.assertEqual(outcome.data[0], 552)
        outcome = await self.send(message("SPAMMY"), rcpts=["other@example.com"])
        self.assertEqual(outcome.data[0], 250)

    async def test_relay_clients_are_not_scanned(self):
        self.serve(["rcpt_ok", self.line("reject 0.5")])
        client = await self.open()
        next(iter(self.server.sessions)).connection.relay_client = True
        outcome = await self.transaction(client, ["alice@example.com"], message("SPAMMY"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(command_lines(self.program), [])

    async def test_autolearn_karma_retrains_with_the_signature(self):
        self.serve(["rcpt_ok", self.line("autolearn karma")])
        client = await self.open()
        next(iter(self.server.sessions)).connection.notes["karma"] = -5
        outcome = await self.transaction(client, ["alice@example.com"], message("hello"))
        signature = outcome.header.get_first("X-DSPAM-Signature")
        self.assertEqual(standin_file(self.program, "trained.log"),
                         "alice@example.com Spam %s\n" % signature)
        self.assertEqual(command_lines(self.program)[1][1:], [
            "--user", "alice@example.com", "--mode=toe", "--source=error", "--class=spam",
            "--deliver=summary", "--stdout"])

    async def test_reject_agree_with_spamassassin(self):
        spamd = shared_spamd()
        self.serve(["rcpt_ok", "spamassassin spamd_socket 127.0.0.1:%d" % spamd.port,
                    self.line("reject agree")])
        outcome = await self.send(message("SPAMMY " + GTUBE))
        self.assertEqual(outcome.data, (552, "we agree, no spam please"))
        self.assertEqual((await self.send(message(GTUBE))).data[0], 250)
        self.assertLogged(codes.LOGINFO, r"^pass, disagree, Innocent, 1\.00 c$")

    async def test_missing_program(self):
        line = "dspam dspam_bin /nonexistent/dspam"
        _, logged = startup_log(self, [line, "rcpt_ok"])
        self.assertIn((codes.LOGERROR, "error, dspam CLI binary not found: install dspam and/or "
                       "set dspam_bin"), logged)
        self.serve(["rcpt_ok", line])
        self.assertEqual((await self.send(message("SPAMMY"))).data[0], 250)
        self.assertLogged(codes.LOGERROR, "^cannot scan: cannot run /nonexistent/dspam: ")

    async def test_dspam_that_hangs_is_killed(self):
        self.serve(["rcpt_ok", self.line("reject 0.5 timeout 0.5")])
        self.assertEqual((await self.send(message("SPAMMY QPTX-STANDIN-HANG"))).data[0], 250)
        self.assertLogged(codes.LOGERROR, "did not finish within 0.5 seconds")

    def test_bad_arguments_and_learn_from_sa(self):
        prefix = "plugins:1: plugin dspam: "
        for args, expected in [
            ("reject lots", "reject must be agree or a number from 0 to 1, got 'lots'"),
            ("reject 2", "reject must be agree or a number from 0 to 1"),
            ("reject_type later", "reject_type must be one of"),
            ("autolearn always", "autolearn must be one of naughty|karma|spamassassin|any"),
        ]:
            self.assertStartupError("dspam " + args, prefix + expected)
        server, logged = startup_log(self, [self.line("learn_from_sa 7"), "rcpt_ok"])
        self.assertEqual(server.plugins[0].autolearn, "spamassassin")
        self.assertIn(codes.LOGWARN, [level for level, m in logged if "learn_from_sa" in m])
