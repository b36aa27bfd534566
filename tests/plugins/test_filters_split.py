"""The filters that landed with issue 13 under ``recipient_policy split`` (the default): one
transaction to two recipients whose settings differ — ``strict@`` refuses, ``tagged@`` takes
the message tagged — gives 250, one scan, ``tagged@``'s copy delivered with the filter's tag,
and ``strict@``'s copy in the quarantine, untagged, with its X-Recipient-Rejected field.

virus/clamav runs the real clamscan with the suite's signature file (tests/support/clamd.py);
the vendor scanners and dspam run STAND-IN programs (tests/support/scanners.py: the real ones
cannot run here), Sophie a stand-in daemon on a unix socket, milter the scripted stand-in
milter (tests/support/milter_standin.py). The server listens on a loopback socket and
delivers with queue/maildir (one Maildir per recipient).
"""

import os

from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.testing import capture_log, maildir_by_recipient, maildir_messages
from tests.plugins.test_virus_klez_filter import klez_shaped
from tests.plugins.test_virus_sophie import _StandinSophie
from tests.support.clamd import VIRUS_NAME, VIRUS_PATTERN, shared_clamd
from tests.support.filter_cases import message, record_calls, short_socket_path
from tests.support.milter_standin import StandinMilter, reply
from tests.support.scanners import STANDIN_VIRUS, multipart, vendor_standin
from tests.support.server import Transcript, connect, start_server

STRICT, TAGGED = "strict@example.com", "tagged@example.com"


class SplitCase(unittest.TestCase):
    """One transaction to STRICT and TAGGED through one filter."""

    #: the recipient notes: STRICT refuses, TAGGED takes it tagged
    NOTES = "note_rcpt %s virus_action=reject %s virus_action=tag" % (STRICT, TAGGED)

    async def deliver(self, plugin_line, text, counted, notes=None, recipients=(STRICT, TAGGED),
                      files=None):
        """Send ``text`` (without the final dot) to ``recipients`` through ``plugin_line``;
        ``(DATA reply line, {recipient: [copies]}, [quarantined], calls)``, where ``calls``
        counts the plugin's method ``counted`` (its scan)."""
        maildir = os.path.abspath(self.mktemp())
        self.quarantine = os.path.abspath(self.mktemp())
        config = {"quarantine_dir": self.quarantine}
        config.update(files or {})
        server, port = start_server(self, [
            notes or self.NOTES, "rcpt_ok", plugin_line, "queue/maildir %s %%u" % maildir],
            config)
        self.addCleanup(server.stop_plugins)
        self.log = capture_log(self, server)
        path = plugin_line.split()[0]
        self.plugin = next(p for p in server.plugins if p.path == path)
        calls = record_calls(self, self.plugin, counted, lambda *args: 1)
        transcript = Transcript(await connect(self, port))
        await transcript.say("EHLO client.example")
        await transcript.say("MAIL FROM:<sender@client.example>")
        for rcpt in recipients:
            self.assertEqual(await transcript.say("RCPT TO:<%s>" % rcpt), 250)
        self.assertEqual(await transcript.say("DATA"), 354)
        await transcript.say(text + ".", "<message>")
        await transcript.say("QUIT")
        delivered = maildir_by_recipient(maildir, list(recipients) + ["virusadmin@example.com"])
        return transcript.lines[-2], delivered, maildir_messages(self.quarantine), calls

    def assertSplit(self, result, refusal, tag, everyone=False):
        """250; STRICT's copy quarantined with ``refusal`` (its text) and without ``tag`` (a
        header line, bytes; with ``everyone``, a field the filter adds to every copy);
        TAGGED's delivered with ``tag``; one scan. TAGGED's copy."""
        reply, delivered, held, calls = result
        self.assertEqual(reply, "<message> -> 250 Queued!")
        self.assertEqual(len(calls), 1)
        self.assertEqual(delivered[STRICT], [])
        [copy] = delivered[TAGGED]
        self.assertIn(tag, copy)
        [kept] = held
        self.assertIn(("X-Recipient-Rejected: <%s>; 552 %s (by %s)\n" % (
            STRICT, refusal, self.plugin.name)).encode(), kept)
        self.assertIn(("Delivered-To: %s\n" % STRICT).encode(), kept)
        (self.assertIn if everyone else self.assertNotIn)(tag, kept)
        self.assertIn((codes.LOGNOTICE, "recipient <%s> refused by %s: 552 %s; its copy is "
                       "quarantined in %s" % (STRICT, self.plugin.name, refusal,
                                              self.quarantine)), self.log)
        return copy


class ClamAVSplitTests(SplitCase):
    async def test_clamscan_once_refused_for_one_tagged_for_the_other(self):
        clamd = shared_clamd()
        line = "virus/clamav clamscan_path=/usr/bin/clamscan database=%s" % os.path.join(
            clamd.dir, "db")
        result = await self.deliver(line, message("x " + VIRUS_PATTERN), "scan")
        copy = self.assertSplit(result, "Virus Found: %s" % VIRUS_NAME,
                                b"\nX-Virus-Found: Yes\nX-Virus-Details: %s\n" % VIRUS_NAME.encode())
        self.assertNotIn(b"X-Virus-Checked", copy)

    async def test_clean_message_goes_to_both(self):
        clamd = shared_clamd()
        line = "virus/clamav clamscan_path=/usr/bin/clamscan database=%s" % os.path.join(
            clamd.dir, "db")
        reply, delivered, held, calls = await self.deliver(line, message("clean"), "scan")
        self.assertEqual(reply, "<message> -> 250 Queued!")
        self.assertEqual([len(delivered[r]) for r in (STRICT, TAGGED)], [1, 1])
        self.assertEqual((held, len(calls)), ([], 1))


class VendorSplitTests(SplitCase):
    """The vendor scanners share qpsmtpd_tx/scanner.py: each is shown once."""

    TAG = b"\nX-Virus-Found: Yes\nX-Virus-Details: "

    def standin(self, program):
        return vendor_standin(self, program)

    async def test_aveclient(self):
        line = "virus/aveclient avclient_bin %s" % self.standin("aveclient")
        result = await self.deliver(line, message(VIRUS_PATTERN), "scan")
        _, _, [kept], _ = result
        report = kept.split(b"552 Virus found: ", 1)[1].split(b" (by ", 1)[0].decode()
        self.assertRegex(report, r"^REPORT: /\S+ infected: QPTX\.Test\.Pattern$")
        self.assertSplit(result, "Virus found: " + report, self.TAG + b"REPORT: ")

    async def test_bitdefender(self):
        line = "virus/bitdefender bitdefender_location %s" % self.standin("bdc")
        result = await self.deliver(line, multipart(VIRUS_PATTERN), "scan")
        self.assertSplit(result, "Virus Found: " + STANDIN_VIRUS,
                         self.TAG + STANDIN_VIRUS.encode())

    async def test_hbedv(self):
        # hbedv has no tag of its own: its X-H+BEDV fields are on every copy
        line = "virus/hbedv hbedvscanner %s" % self.standin("antivir")
        result = await self.deliver(line, message(VIRUS_PATTERN), "scan")
        self.assertSplit(result, "Virus found: " + STANDIN_VIRUS,
                         b"\nX-H+BEDV-Virus-Found: Yes\n", everyone=True)

    async def test_kavscanner_bcc_gets_the_tagged_copy(self):
        line = "virus/kavscanner kavscanner_bin %s bcc_virusadmin virusadmin@example.com" % (
            self.standin("kavscanner"))
        result = await self.deliver(line, message(VIRUS_PATTERN), "scan")
        self.assertSplit(result, "Virus found: infected by: %s; suspicions: " % STANDIN_VIRUS,
                         self.TAG + b"infected by: ")
        [admin] = result[1]["virusadmin@example.com"]
        self.assertIn(self.TAG + b"infected by: ", admin)

    async def test_sophie(self):
        socket = short_socket_path(self)
        factory = Factory.forProtocol(_StandinSophie)
        factory.paths = []
        listening = reactor.listenUNIX(socket, factory)
        self.addCleanup(listening.stopListening)
        line = "virus/sophie sophie_socket %s" % socket
        result = await self.deliver(line, multipart(VIRUS_PATTERN), "scan")
        self.assertSplit(result, "Virus Found: " + STANDIN_VIRUS,
                         self.TAG + STANDIN_VIRUS.encode())

    async def test_uvscan(self):
        line = "virus/uvscan uvscan_location %s" % self.standin("uvscan")
        result = await self.deliver(line, multipart(VIRUS_PATTERN), "scan")
        name = "the %s virus !!!" % STANDIN_VIRUS
        self.assertSplit(result, "Virus Found: " + name, self.TAG + name.encode())

    async def test_everyone_reject_is_the_5xx(self):
        line = "virus/bitdefender bitdefender_location %s" % self.standin("bdc")
        reply, delivered, held, calls = await self.deliver(
            line, multipart(VIRUS_PATTERN), "scan", notes="note_rcpt %s virus_action=tag" % (
                "nobody@example.com"))
        self.assertEqual(reply, "<message> -> 552 Virus Found: " + STANDIN_VIRUS)
        self.assertEqual((delivered[STRICT], delivered[TAGGED], held), ([], [], []))

    async def test_strictest_policy_refuses_for_both(self):
        line = "virus/bitdefender bitdefender_location %s" % self.standin("bdc")
        reply, delivered, held, calls = await self.deliver(
            line, multipart(VIRUS_PATTERN), "scan", files={"recipient_policy": "strictest"})
        self.assertEqual(reply, "<message> -> 552 Virus Found: " + STANDIN_VIRUS)
        self.assertEqual(held, [])


class KlezSplitTests(SplitCase):
    async def test_klez_refused_for_one_tagged_for_the_other(self):
        result = await self.deliver("virus/klez_filter", klez_shaped(), "_answer")
        self.assertSplit(result, "Klez Virus Detected",
                         b"\nX-Virus-Found: Yes\nX-Virus-Details: Klez\n")


class DSpamSplitTests(SplitCase):
    NOTES = "note_rcpt %s dspam_reject=0.5 %s dspam_reject=0" % (STRICT, TAGGED)

    async def test_spam_refused_for_one_accepted_for_the_other(self):
        line = "dspam dspam_bin %s" % vendor_standin(self, "dspam")
        result = await self.deliver(line, message("SPAMMY"), "scan")
        # dspam has no tag: its X-DSPAM fields are on every copy
        self.assertSplit(result, "dspam says, no spam please (#5.6.1)",
                         b"\nX-DSPAM-Result: Spam, probability=1.0000, confidence=1.00\n",
                         everyone=True)


class MilterSplitTests(SplitCase):
    NOTES = "note_rcpt %s milter_action=reject %s milter_action=tag" % (STRICT, TAGGED)
    TAG = b"\nX-Milter-Rejected: standin; 550 5.7.1 spam\n"

    async def deliver_refused_at(self, stage):
        milter = StandinMilter(self, {stage: [reply("y", b"550 5.7.1 spam\0")]})
        return await self.deliver("milter standin %d" % milter.port, message("x"),
                                  "_data_post")

    async def test_refused_at_the_end_of_the_message(self):
        self.assertSplit(await self.deliver_refused_at("E"), "5.7.1 spam", self.TAG)

    async def test_refused_at_data(self):
        self.assertSplit(await self.deliver_refused_at("T"), "5.7.1 spam", self.TAG)
