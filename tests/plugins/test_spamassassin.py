"""The content filter ``spamassassin`` against a real spamd, with per-recipient settings
(recipient notes, grouping, strictest), a spamd that is down or hangs, and the per-recipient
show case of issue 5 with a GTUBE message over a real socket (thresholds from the aliases file).

spamd is started once for the whole run (tests/support/spamd.py: private config, 127.0.0.1
and unix sockets in a temp dir, stopped by PID at exit); the tests that need it are skipped,
with the reason, when its Debian package is missing. The SMTP server runs on a loopback socket
(tests/support/filter_cases.py).
"""

import os
import re

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.loader import find_plugin_file, load_plugin_module
from qpsmtpd_tx.paths import default_plugin_dirs
from tests.support.filter_cases import (FilterTestCase, answering_server, hanging_server, message,
                                        short_socket_path)
from tests.support.harness import maildir_by_recipient, make_server
from tests.support.processes import free_port
from tests.support.server import Transcript, connect, start_server
from tests.support.spamd import GTUBE, SIX_POINTS, shared_spamd


# -- spamassassin -----------------------------------------------------------------------------


class SpamAssassinTests(FilterTestCase):
    def setUp(self):
        self.spamd = shared_spamd()

    def spamassassin(self, args="", socket=None):
        return "spamassassin spamd_socket %s %s" % (
            socket or "127.0.0.1:%d" % self.spamd.port, args)

    async def test_gtube_at_or_above_the_threshold_is_refused(self):
        self.serve(["rcpt_ok", self.spamassassin("reject 5")])
        outcome = await self.send(message(GTUBE))
        self.assertEqual(outcome.rcpts, [(250, "<alice@example.com>, recipient ok")])
        self.assertEqual(outcome.data, (552, "spam score exceeded threshold"))
        self.assertIsNone(outcome.queued)
        self.assertLogged(codes.LOGINFO, r"^fail, Spam, 1000\.0 >= 5\.0, learn=disabled$")

    async def test_under_the_threshold_the_message_is_tagged(self):
        self.serve(["rcpt_ok", self.spamassassin("reject 10")])
        outcome = await self.send(message(
            SIX_POINTS, extra="X-Spam-Flag: YES\r\nX-Spam-Status: No, forged by the sender\r\n"))
        self.assertEqual(outcome.data[0], 250)
        top = outcome.top(6)
        self.assertRegex(top[0], r"^X-Spam-Checker-Version: SpamAssassin 4\.[\d.]+ \(.*\) on \S+$")
        self.assertEqual(top[1:3], ["X-Spam-Flag: YES", "X-Spam-Level: ******"])
        self.assertRegex(top[3], r"^X-Spam-Status: Yes, score=6\.0 required=5\.0 tests=QPTX_SIX "
                                 r"autolearn=disabled\n\tversion=4\.[\d.]+$")
        # the sender's own headers are renamed (leave_old_headers rename, the default)
        self.assertEqual(top[4:6], ["X-Old-Spam-Flag: YES",
                                    "X-Old-Spam-Status: No, forged by the sender"])
        self.assertEqual(outcome.header.count("X-Spam-Flag"), 1)
        # spamd adds X-Spam-Report (report_safe 0); qpsmtpd does not copy it
        self.assertEqual(outcome.header.count("X-Spam-Report"), 0)
        self.assertEqual(outcome.header.get_first("Subject"), "offer")
        self.assertLogged(codes.LOGINFO, r"^fail, tolerated, Spam, 6\.0 < 10\.0, learn=disabled$")

    async def test_ham_is_tagged_no(self):
        self.serve(["rcpt_ok", self.spamassassin("reject 5 munge_subject_threshold 1")])
        outcome = await self.send(message("Nothing to see here."))
        self.assertEqual(outcome.data[0], 250)
        self.assertTrue(outcome.header.get_first("X-Spam-Status").startswith(
            "No, score=0.0 required=5.0 tests=none "), outcome.header.get_first("X-Spam-Status"))
        self.assertEqual(outcome.header.count("X-Spam-Flag"), 0)
        self.assertEqual(outcome.header.get_first("Subject"), "offer")

    async def test_unix_socket(self):
        self.serve(["rcpt_ok", self.spamassassin("reject 5", socket=self.spamd.socket)])
        self.assertEqual((await self.send(message(GTUBE))).data,
                         (552, "spam score exceeded threshold"))

    async def test_result_note(self):
        server = self.serve(["rcpt_ok", self.spamassassin("reject 10")])
        plugin = next(p for p in server.plugins if p.path == "spamassassin")
        seen = []
        verdict = plugin._verdict

        def spy(transaction, results, setting):
            seen.append(dict(transaction.notes["spamassassin"]))
            return verdict(transaction, results, setting)

        self.patch(plugin, "_verdict", spy)
        await self.send(message(SIX_POINTS))
        self.assertEqual(len(seen), 1)
        note = seen[0]
        self.assertEqual({k: note[k] for k in ("is_spam", "score", "required", "tests",
                                               "autolearn")},
                         {"is_spam": "Yes", "score": 6.0, "required": 5.0, "tests": "QPTX_SIX",
                          "autolearn": "disabled"})
        self.assertRegex(note["version"], r"^4\.[\d.]+$")
        # spam: karma -1 (autolearn is disabled)
        session = next(iter(server.sessions))
        self.assertEqual(session.connection.notes["karma"], -1)

    async def test_subject_is_munged_above_the_munge_threshold(self):
        self.serve(["rcpt_ok", self.spamassassin("munge_subject_threshold 5")])
        outcome = await self.send(message(SIX_POINTS))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("Subject"), ["*** SPAM *** offer"])

    async def test_subject_is_not_munged_below_the_munge_threshold(self):
        self.serve(["rcpt_ok", self.spamassassin("munge_subject_threshold 7")])
        outcome = await self.send(message(SIX_POINTS))
        self.assertEqual(outcome.header.get("Subject"), ["offer"])

    async def test_subject_prefix_from_config_and_argument(self):
        self.serve(["rcpt_ok", self.spamassassin("munge_subject_threshold 5")],
                   {"subject_prefix": "[SPAM (qptx)]"})
        self.assertEqual((await self.send(message(SIX_POINTS))).header.get("Subject"),
                         ["[SPAM (qptx)] offer"])
        self.serve(["rcpt_ok", self.spamassassin("munge_subject_threshold 5 subject_prefix {S}")],
                   {"subject_prefix": "[SPAM (qptx)]"})
        self.assertEqual((await self.send(message(SIX_POINTS))).header.get("Subject"),
                         ["{S} offer"])

    async def test_leave_old_headers_drop(self):
        self.serve(["rcpt_ok", self.spamassassin("leave_old_headers drop")])
        outcome = await self.send(message(SIX_POINTS, extra="X-Spam-Status: No, forged\r\n"))
        self.assertEqual(outcome.header.get("X-Spam-Status")[0][:10], "Yes, score")
        self.assertEqual(len(outcome.header.get("X-Spam-Status")), 1)
        self.assertEqual(outcome.header.count("X-Old-Spam-Status"), 0)

    async def test_leave_old_headers_keep(self):
        self.serve(["rcpt_ok", self.spamassassin("leave_old_headers keep")])
        outcome = await self.send(message(SIX_POINTS, extra="X-Spam-Status: No, forged\r\n"))
        values = outcome.header.get("X-Spam-Status")
        self.assertEqual([v[:10] for v in values], ["Yes, score", "No, forged"])

    async def test_headers_none_adds_nothing_but_still_refuses(self):
        self.serve(["rcpt_ok", self.spamassassin("headers none munge_subject_threshold 1")])
        outcome = await self.send(message(SIX_POINTS, extra="X-Spam-Flag: NO\r\n"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual([n for n, _ in outcome.header.fields if n.lower().startswith("x-spam")],
                         ["X-Spam-Flag"])
        self.assertEqual(outcome.header.get("Subject"), ["offer"])
        self.serve(["rcpt_ok", self.spamassassin("headers none reject 5")])
        self.assertEqual((await self.send(message(GTUBE))).data[0], 552)

    async def test_reject_userprefs_uses_spamds_required_score(self):
        self.serve(["rcpt_ok", self.spamassassin("reject userprefs")])
        self.assertEqual((await self.send(message(SIX_POINTS))).data,
                         (552, "spam score exceeded threshold"))
        self.assertEqual((await self.send(message("hello"))).data[0], 250)
        self.assertLogged(codes.LOGINFO, r"^fail, Spam, 6\.0 >= 5\.0, learn=disabled$")

    async def test_reject_threshold_is_the_old_name_of_reject(self):
        self.serve(["rcpt_ok", self.spamassassin("reject_threshold 7")])
        self.assertEqual((await self.send(message(SIX_POINTS))).data[0], 250)
        self.assertEqual((await self.send(message(GTUBE))).data[0], 552)

    async def test_boundaries_as_qpsmtpd(self):
        # refused when score >= reject; munged only when score > the munge threshold
        self.serve(["rcpt_ok", self.spamassassin("reject 6")])
        self.assertEqual((await self.send(message(SIX_POINTS))).data[0], 552)
        self.serve(["rcpt_ok", self.spamassassin("reject 6.1 munge_subject_threshold 6")])
        outcome = await self.send(message(SIX_POINTS))
        self.assertEqual((outcome.data[0], outcome.header.get("Subject")), (250, ["offer"]))
        self.serve(["rcpt_ok", self.spamassassin("munge_subject_threshold 5.9")])
        outcome = await self.send(message(SIX_POINTS))
        self.assertEqual(outcome.header.get("Subject"), ["*** SPAM *** offer"])

    async def test_reject_type_temp(self):
        self.serve(["rcpt_ok", self.spamassassin("reject 5 reject_type temp")])
        self.assertEqual((await self.send(message(GTUBE))).data,
                         (452, "spam score exceeded threshold"))

    async def test_several_recipients_get_x_spam_user(self):
        self.serve(["rcpt_ok", self.spamassassin("spamd_user qptx")])
        outcome = await self.send(message(SIX_POINTS), ["alice@example.com", "bob@example.com"])
        self.assertEqual(outcome.header.get("X-Spam-User"), ["qptx, 2 recipients"])
        single = await self.send(message(SIX_POINTS), ["alice@example.com"])
        self.assertEqual(single.header.count("X-Spam-User"), 0)

    async def test_vpopmail_user_is_the_single_recipient(self):
        self.serve(["rcpt_ok", self.spamassassin("spamd_user vpopmail")])
        await self.send(message("user test 1"), ["carol.vpop@example.com"])
        await self.send(message("user test 2"), ["dave.vpop@example.com", "erin.vpop@example.com"])
        log = self.spamd.log()
        # spamd logs the User: it got ("checking message <id> for USER:UID")
        self.assertIn("checking message (unknown) for carol.vpop@example.com:", log)
        self.assertNotIn("dave.vpop@example.com", log)
        self.assertIn("checking message (unknown) for vpopmail:", log)

    # -- per recipient --------------------------------------------------------------------------

    NOTES = ("note_rcpt low@example.com spamassassin_reject_threshold=5"
             " high@example.com spamassassin_reject_threshold=2000,"
             "spamassassin_munge_subject_threshold=5"
             " never@example.com spamassassin_reject_threshold=0"
             " bad@example.com spamassassin_reject_threshold=lots")

    async def test_per_recipient_thresholds_are_grouped(self):
        self.serve([self.NOTES, "rcpt_ok", self.spamassassin("reject 100")],
                   {"recipient_policy": "group"})
        client = await self.open()
        first = await self.transaction(client, ["low@example.com", "high@example.com"],
                                       message(GTUBE))
        self.assertEqual(first.rcpts, [
            (250, "<low@example.com>, recipient ok"),
            (452, "4.5.3 Try this recipient in another transaction")])
        self.assertEqual(first.data, (552, "spam score exceeded threshold"))
        second = await self.transaction(client, ["high@example.com"], message(GTUBE))
        self.assertEqual(second.data[0], 250)
        self.assertEqual(second.header.get("X-Spam-Flag"), ["YES"])
        self.assertEqual(second.header.get("Subject"), ["*** SPAM *** offer"])
        self.assertLogged(codes.LOGINFO, r"^fail, Spam, 1000\.0 >= 5\.0, learn=disabled$")
        self.assertLogged(codes.LOGINFO, r"Spam, 1000\.0 < 2000\.0, learn=disabled$")

    async def test_note_zero_never_refuses_and_a_bad_note_falls_back_to_the_argument(self):
        self.serve([self.NOTES, "rcpt_ok", self.spamassassin("reject 100")])
        self.assertEqual((await self.send(message(GTUBE), ["never@example.com"])).data[0], 250)
        self.assertEqual((await self.send(message(GTUBE), ["bad@example.com"])).data[0], 552)
        self.assertLogged(codes.LOGINFO, r"^fail, Spam, 1000\.0 >= 100\.0, learn=disabled$")

    async def test_per_recipient_strictest(self):
        self.serve([self.NOTES, "rcpt_ok", self.spamassassin("reject 3000 spamd_user qptx")],
                   {"recipient_policy": "strictest"})
        client = await self.open()
        outcome = await self.transaction(client, ["high@example.com", "low@example.com"],
                                         message(GTUBE))
        self.assertEqual([code for code, _ in outcome.rcpts], [250, 250])
        self.assertEqual(outcome.data, (552, "spam score exceeded threshold"))
        # high (2000, munge 5) and someone else (the argument 3000): the lowest of each
        outcome = await self.transaction(client, ["high@example.com", "other@example.com"],
                                         message(GTUBE))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("Subject"), ["*** SPAM *** offer"])
        self.assertEqual(outcome.header.get("X-Spam-User"), ["qptx, 2 recipients"])
        self.assertLogged(codes.LOGINFO, r"Spam, 1000\.0 < 2000\.0, learn=disabled$")

    async def test_strictest_with_userprefs(self):
        self.serve(["note_rcpt prefs@example.com spamassassin_reject_threshold=userprefs",
                    "rcpt_ok", self.spamassassin("reject 7")],
                   {"recipient_policy": "strictest"})
        client = await self.open()
        outcome = await self.transaction(client, ["prefs@example.com", "other@example.com"],
                                         message(SIX_POINTS))
        # userprefs is spamd's required score, 5: lower than 7, so 6 points are refused
        self.assertEqual(outcome.data[0], 552)
        outcome = await self.transaction(client, ["other@example.com"], message(SIX_POINTS))
        self.assertEqual(outcome.data[0], 250)

    # -- spamd unavailable ----------------------------------------------------------------------

    async def test_spamd_down_defers(self):
        port = free_port()
        self.serve(["rcpt_ok", self.spamassassin("reject 5", socket="127.0.0.1:%d" % port)])
        outcome = await self.send(message(GTUBE))
        self.assertEqual(outcome.data, (452, "Unable to scan for spam"))
        self.assertLogged(codes.LOGERROR,
                          r"^cannot scan: cannot connect to spamd at 127\.0\.0\.1:%d: " % port)

    async def test_missing_unix_socket_defers(self):
        path = short_socket_path(self)
        self.serve(["rcpt_ok", self.spamassassin(socket=path)])
        self.assertEqual((await self.send(message("x"))).data, (452, "Unable to scan for spam"))
        self.assertLogged(codes.LOGERROR,
                          r"^cannot scan: cannot connect to spamd at %s: " % re.escape(path))

    async def test_spamd_down_fail_open_accepts_with_a_header(self):
        self.serve(["rcpt_ok", self.spamassassin(
            "reject 5 fail_open 1", socket="127.0.0.1:%d" % free_port())])
        outcome = await self.send(message(GTUBE, extra="X-Spam-Flag: NO\r\n"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.top(2), ["X-Spam-Not-Scanned: spamd could not be asked "
                                          "(unavailable)", "X-Old-Spam-Flag: NO"])
        self.assertEqual(outcome.header.count("X-Spam-Flag"), 0)
        self.assertLogged(codes.LOGERROR, r"^cannot scan: ")
        self.assertEqual(self.logged(codes.LOGWARN, "fail_open"),
                         ["fail_open: accepting the message unscanned"])

    async def test_spamd_that_does_not_answer_times_out(self):
        port = hanging_server(self)
        self.serve(["rcpt_ok", self.spamassassin("timeout 0.5", socket="127.0.0.1:%d" % port)])
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data, (452, "Unable to scan for spam"))
        self.assertEqual(self.logged(codes.LOGERROR, "cannot scan"), [
            "cannot scan: spamd at 127.0.0.1:%d did not answer within 0.5 seconds" % port])

    async def test_garbled_answer_defers(self):
        port = answering_server(self, b"HTTP/1.0 400 Bad Request\r\n\r\n")
        self.serve(["rcpt_ok", self.spamassassin(socket="127.0.0.1:%d" % port)])
        self.assertEqual((await self.send(message("x"))).data[0], 452)
        self.assertLogged(codes.LOGERROR, "garbled answer from spamd")

    async def test_spamd_error_answer_defers(self):
        port = answering_server(self, b"SPAMD/1.0 76 Bad header line: (EOF)\r\n\r\n")
        self.serve(["rcpt_ok", self.spamassassin(socket="127.0.0.1:%d" % port)])
        self.assertEqual((await self.send(message("x"))).data[0], 452)
        self.assertLogged(codes.LOGERROR, "spamd answered 'SPAMD/1.0 76")

    # -- what is not scanned --------------------------------------------------------------------

    async def test_size_limit(self):
        self.serve(["rcpt_ok", self.spamassassin("reject 5 size_limit 1000")])
        outcome = await self.send(message(GTUBE + "\r\n" + "padding " * 200))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.count("X-Spam-Status"), 0)
        self.assertLogged(codes.LOGINFO, r"^skip, too large \(\d+ > 1000\)$")
        outcome = await self.send(message(GTUBE))
        self.assertEqual(outcome.data[0], 552)

    async def test_relay_clients_are_skipped_unless_relayclient_scan(self):
        files = {"relayclients": "127.0.0.1"}
        self.serve(["relay", "rcpt_ok", self.spamassassin("reject 5")], files)
        self.assertEqual((await self.send(message(GTUBE))).data[0], 250)
        self.assertEqual(self.logged(codes.LOGINFO, "skip"), ["skip, relay client"])
        self.serve(["relay", "rcpt_ok", self.spamassassin("reject 5 relayclient scan")], files)
        self.assertEqual((await self.send(message(GTUBE))).data[0], 552)

    # -- arguments ------------------------------------------------------------------------------

    def test_bad_arguments(self):
        prefix = "plugins:1: plugin spamassassin: "
        for args, expected in [
            ("reject lots", "reject must be a number or userprefs, got 'lots'"),
            ("munge_subject_threshold x", "munge_subject_threshold must be a number, got 'x'"),
            ("reject 5 reject_threshold 6", "reject and reject_threshold (its old name) disagree"),
            ("reject_type sometimes", "reject_type must be perm, temp, disconnect"),
            ("spamd_socket spamd.example", "spamd_socket 'spamd.example': expected"),
            ("spamd_socket run/spamd.sock",
             "spamd_socket 'run/spamd.sock': a unix socket needs an absolute path"),
            ("spamd_socket /" + "s" * 107,
             "spamd_socket '/%s': longer than 107 bytes, the limit of unix socket" % ("s" * 107)),
            ("headers some", "headers must be none or all"),
            ("leave_old_headers hide", "leave_old_headers must be drop, rename or keep"),
            ("relayclient always", "relayclient must be skip or scan"),
            ("size_limit -1", "size_limit must be a positive number"),
            ("timeout 0", "timeout must be a positive number"),
            ("fail_open maybe", "fail_open must be 0 or 1"),
            ("colour blue", "unknown argument 'colour'"),
            ("reject", "arguments must be key/value pairs"),
        ]:
            self.assertStartupError("spamassassin " + args, prefix + expected)

    def test_good_arguments(self):
        server = make_server(self, ["spamassassin reject 7 munge_subject_threshold 4 "
                                    "spamd_socket [::1]:7830 leave_old_headers DROP "
                                    "relayclient scan size_limit 100 timeout 2.5 fail_open 1",
                                    "rcpt_ok"])
        plugin = server.plugins[0]
        self.assertEqual((plugin.address.host, plugin.address.port, str(plugin.address)), ("::1", 7830, "[::1]:7830"))
        self.assertEqual((plugin.old_headers, plugin.scan_relay_clients, plugin.size_limit,
                          plugin.timeout, plugin.fail_open), ("drop", True, 100, 2.5, True))
        self.assertEqual(plugin.setting(None, "spamassassin_reject_threshold"), 7.0)
        self.assertEqual(plugin.setting(None, "spamassassin_munge_subject_threshold"), 4.0)


class ThresholdValueTests(unittest.TestCase):
    """The per-recipient threshold values and their strictest (no spamd needed)."""

    def setUp(self):
        self.module = load_plugin_module(find_plugin_file("spamassassin", default_plugin_dirs()))

    def test_convert(self):
        convert = self.module.reject_threshold
        self.assertEqual([convert(v) for v in ("5", " 7.5 ", "userprefs", "UserPrefs", "0", 3)],
                         [5.0, 7.5, "userprefs", "userprefs", None, 3.0])
        for bad in ("lots", "", "nan", "inf", True):
            self.assertRaises(ValueError, convert, bad)

    def test_strictest(self):
        lowest, effective = self.module.lowest_threshold, self.module.effective_threshold
        self.assertEqual(lowest([5.0, 2000.0, None]), 5.0)
        self.assertIsNone(lowest([None, None]))
        self.assertEqual(lowest(["userprefs", None]), "userprefs")
        mixed = lowest([7.0, "userprefs", 9.0])
        self.assertEqual(effective(mixed, 5.0), 5.0)
        self.assertEqual(effective(mixed, 8.0), 7.0)
        self.assertEqual(effective("userprefs", 4.0), 4.0)
        self.assertIsNone(effective(None, 4.0))


# -- the show case of issue 5 -----------------------------------------------------------------

SHOW_ALIASES = """\
# the domain's default, and two mailboxes with their own threshold
@example.com        spamassassin_reject_threshold=10
low@example.com     spamassassin_reject_threshold=5
high@example.com    spamassassin_reject_threshold=2000  spamassassin_munge_subject_threshold=5
"""


class ShowCaseTests(unittest.TestCase):
    """One SMTP session over a real socket, three recipients whose spamassassin thresholds
    come from the aliases file, one GTUBE message (score 1000 from the real spamd).

    ``low`` (5) and ``mid`` (10, its domain's default) refuse it; ``high`` (2000) takes it,
    tagged and with its subject munged (its munge threshold 5). The client retries each
    ``452 4.5.3`` recipient in a new transaction, as RFC 5321 clients do.
    """

    async def test_three_recipients_three_thresholds_one_gtube_message(self):
        spamd = shared_spamd()
        maildir = os.path.abspath(self.mktemp())
        server, port = start_server(
            self, ["aliases aliases", "rcpt_ok",
                   "spamassassin spamd_socket %s" % spamd.socket,
                   "queue/maildir %s %%u" % maildir],
            {"aliases": SHOW_ALIASES, "recipient_policy": "group"})
        client = await connect(self, port)
        transcript = Transcript(client)

        self.assertEqual((await client.command("EHLO client.example"))[0], 250)
        await transcript.deliver_retrying(["low@example.com", "mid@example.com", "high@example.com"],
                                          "Subject: offer\r\n\r\n%s" % GTUBE, "<GTUBE message>")
        await transcript.say("QUIT")
        transcript = transcript.lines

        ok = ("MAIL FROM:<sender@client.example> -> 250 <sender@client.example>, sender OK - "
              "how exciting to get mail from you!")
        retry = "452 4.5.3 Try this recipient in another transaction"
        self.assertEqual(transcript, [
            ok,
            "RCPT TO:<low@example.com> -> 250 <low@example.com>, recipient ok",
            "RCPT TO:<mid@example.com> -> " + retry,
            "RCPT TO:<high@example.com> -> " + retry,
            "DATA -> 354 go ahead",
            "<GTUBE message> -> 552 spam score exceeded threshold",
            ok,
            "RCPT TO:<mid@example.com> -> 250 <mid@example.com>, recipient ok",
            "RCPT TO:<high@example.com> -> " + retry,
            "DATA -> 354 go ahead",
            "<GTUBE message> -> 552 spam score exceeded threshold",
            ok,
            "RCPT TO:<high@example.com> -> 250 <high@example.com>, recipient ok",
            "DATA -> 354 go ahead",
            "<GTUBE message> -> 250 Queued!",
            "QUIT -> 221 mx.example.org closing connection. Have a wonderful day.",
        ])
        # which recipients got the message: one Maildir per recipient (PATTERN %u)
        delivered = maildir_by_recipient(maildir, ("low@example.com", "mid@example.com", "high@example.com"))
        self.assertEqual({r: len(m) for r, m in delivered.items()},
                         {"low@example.com": 0, "mid@example.com": 0, "high@example.com": 1})
        stored = delivered["high@example.com"][0]
        self.assertIn(b"Delivered-To: high@example.com\n", stored)
        self.assertIn(b"\nX-Spam-Flag: YES\n", stored)
        self.assertIn(b"\nX-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE ", stored)
        self.assertIn(b"\nSubject: *** SPAM *** offer\n", stored)
        self.assertIn(GTUBE.encode(), stored)
