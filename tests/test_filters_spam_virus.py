"""The content filters ``spamassassin`` and ``virus/clamdscan`` against a real spamd and a
real clamd, with per-recipient settings (recipient notes, grouping, strictest), daemons
that are down or hang, and the per-recipient show case of issue 5 with a GTUBE message.

spamd and clamd are started once for the whole run (tests/support/spamd.py and clamd.py:
private configs, 127.0.0.1 and unix sockets in a temp dir, stopped by PID at exit); the
tests that need one are skipped, with the reason, when its Debian package is missing.
"""

import os
import re
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.loader import find_plugin_file, load_plugin_module
from qpsmtpd_tx.message import Header
from qpsmtpd_tx.paths import default_plugin_dirs
from tests.support.clamd import STREAM_MAX_LENGTH, VIRUS_NAME, VIRUS_PATTERN, shared_clamd
from tests.support.harness import assertStartupError, maildir_by_recipient, make_server
from tests.support.processes import free_port
from tests.support.server import Transcript, connect, start_server
from tests.support.spamd import GTUBE, SIX_POINTS, shared_spamd

SENDER = "<sender@client.example>"


def message(body, subject="offer", extra=""):
    """A message as the client sends it (CRLF), without the final dot."""
    return ("From: sender@client.example\r\nTo: someone@example.com\r\nSubject: %s\r\n%s\r\n%s\r\n"
            % (subject, extra, body))


def multipart(attachment_base64):
    return ('From: sender@client.example\r\nSubject: files\r\nMIME-Version: 1.0\r\n'
            'Content-Type: multipart/mixed; boundary="BOUNDARY"\r\n\r\n'
            '--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n'
            '--BOUNDARY\r\nContent-Type: application/octet-stream\r\n'
            'Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--BOUNDARY--\r\n' % attachment_base64)


class Outcome:
    """What one transaction got: ``rcpts`` [(code, text)], ``data`` (code, text) for the end of
    the message, ``queued`` the queued message (bytes) or None, ``header`` its Header."""

    def __init__(self, rcpts, data, queued):
        self.rcpts = rcpts
        self.data = data
        self.queued = queued
        self.header = None
        if queued is not None:
            self.header = Header.parse(queued.split(b"\n\n", 1)[0] + b"\n")

    def top(self, count):
        """The first ``count`` header fields as text lines (folded values kept folded)."""
        return [raw.decode().rstrip("\n") for _, raw in self.header.fields[:count]]


class FilterTestCase(unittest.TestCase):
    """Runs SMTP transactions against an SMTPServer on a loopback socket."""

    def serve(self, plugins, files=None):
        """Start a server with ``plugins`` (+ a queue plugin that takes everything)."""
        self.server, self.port = start_server(self, list(plugins) + ["scripted queue OK"], files)
        self.logs = []
        original = self.server.log

        def log(level, text, **kw):
            self.logs.append((level, text))
            return original(level, text, **kw)

        self.patch(self.server, "log", log)
        return self.server

    async def open(self):
        client = await connect(self, self.port)
        self.assertEqual((await client.command("EHLO client.example"))[0], 250)
        return client

    async def transaction(self, client, rcpts, text):
        """MAIL, RCPTs, DATA and ``text``; an Outcome. DATA is skipped if no RCPT was taken."""
        self.assertEqual((await client.command("MAIL FROM:%s" % SENDER))[0], 250)
        replies = []
        for rcpt in rcpts:
            code, lines = await client.command("RCPT TO:<%s>" % rcpt)
            replies.append((code, lines[-1]))
        if not any(code == 250 for code, _ in replies):
            return Outcome(replies, None, None)
        self.assertEqual((await client.command("DATA"))[0], 354)
        port = client.transport.getHost().port
        session = next(s for s in self.server.sessions if s.connection.remote_port == port)
        session.connection.notes.pop("scripted_message", None)
        client.send(text + ".")
        code, lines = await client.reply()
        return Outcome(replies, (code, lines[-1]), session.connection.notes.get("scripted_message"))

    async def send(self, text, rcpts=("alice@example.com",)):
        client = await self.open()
        return await self.transaction(client, rcpts, text)

    def logged(self, level, pattern):
        """The log lines at ``level`` that match ``pattern`` (a regular expression)."""
        return [text for lvl, text in self.logs if lvl == level and re.search(pattern, text)]

    def assertLogged(self, level, pattern):
        """Exactly one line was logged at ``level`` matching ``pattern``."""
        self.assertEqual(len(self.logged(level, pattern)), 1, (pattern, self.logs))

    def assertStartupError(self, line, expected, files=None):
        """Start-up with ``line`` (and rcpt_ok) fails with a message containing ``expected``."""
        assertStartupError(self, [line, "rcpt_ok"], expected, files)


def short_socket_path(testcase):
    """A unix socket path nobody listens on (short: trial's temp paths exceed 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="qptx-")
    testcase.addCleanup(shutil.rmtree, directory, True)
    return os.path.join(directory, "nobody.sock")


def hanging_server(testcase):
    """A 127.0.0.1 port that accepts connections and never answers."""
    listening = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    testcase.addCleanup(listening.stopListening)
    return listening.getHost().port


class _Talker(Protocol):
    def connectionMade(self):
        self.transport.write(self.factory.answer)
        self.transport.loseConnection()


def answering_server(testcase, answer):
    """A 127.0.0.1 port that answers every connection with ``answer`` and closes it."""
    factory = Factory.forProtocol(_Talker)
    factory.answer = answer
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testcase.addCleanup(listening.stopListening)
    return listening.getHost().port


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

        def spy(transaction, results):
            seen.append(dict(transaction.notes["spamassassin"]))
            return verdict(transaction, results)

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
        self.serve([self.NOTES, "rcpt_ok", self.spamassassin("reject 100")])
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


# -- virus/clamdscan --------------------------------------------------------------------------


class ClamdScanTests(FilterTestCase):
    def setUp(self):
        self.clamd = shared_clamd()

    def clamdscan(self, args="", unix=False):
        where = ("clamd_socket %s" % self.clamd.socket if unix
                 else "clamd_host 127.0.0.1 clamd_port %d" % self.clamd.port)
        return "virus/clamdscan %s %s" % (where, args)

    def test_clamd_runs_on_our_signature_file_only(self):
        self.assertEqual(self.clamd.databases(), ["qptx-test.ndb"])
        self.assertIn("Loaded 1 signatures", self.clamd.log())

    async def test_virus_is_refused(self):
        self.serve(["rcpt_ok", self.clamdscan()])
        outcome = await self.send(message("hello " + VIRUS_PATTERN))
        self.assertEqual(outcome.data, (552, "Virus found: %s" % VIRUS_NAME))
        self.assertIsNone(outcome.queued)
        self.assertEqual(self.logged(codes.LOGNOTICE, "virus"),
                         ["fail, found virus %s" % VIRUS_NAME])

    async def test_virus_in_a_base64_attachment_over_the_unix_socket(self):
        import base64
        attachment = base64.encodebytes(b"junk " + VIRUS_PATTERN.encode() + b" junk" * 50)
        self.serve(["rcpt_ok", self.clamdscan(unix=True)])
        outcome = await self.send(multipart(attachment.decode().replace("\n", "\r\n")))
        self.assertEqual(outcome.data, (552, "Virus found: %s" % VIRUS_NAME))

    async def test_clean_message_is_marked(self):
        self.serve(["rcpt_ok", self.clamdscan(unix=True)])
        outcome = await self.send(message("clean", extra="X-Virus-Found: Yes\r\n"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.top(1), ["X-Virus-Found: No"])
        self.assertRegex(outcome.top(2)[1],
                         r"^X-Virus-Checked: by ClamAV \d+\.\d+\.\d+ on mx\.example\.org$")
        self.assertEqual(outcome.header.get("X-Virus-Found"), ["No"])

    async def test_tag_adds_headers(self):
        self.serve(["rcpt_ok", self.clamdscan("action tag")])
        outcome = await self.send(message(VIRUS_PATTERN, extra="X-Virus-Found: No\r\n"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.top(2), ["X-Virus-Found: Yes", "X-Virus-Details: " + VIRUS_NAME])
        self.assertEqual(outcome.header.count("X-Virus-Found"), 1)

    async def test_deny_viruses_no_is_tag(self):
        self.serve(["rcpt_ok", self.clamdscan("deny_viruses no")])
        self.assertEqual((await self.send(message(VIRUS_PATTERN))).header.get("X-Virus-Found"),
                         ["Yes"])

    async def test_big_message_is_streamed_in_chunks(self):
        # 400 KB: several INSTREAM chunks of 64 KB; the pattern is in the last one
        body = ("x" * 70 + "\r\n") * 5700 + VIRUS_PATTERN
        self.serve(["rcpt_ok", self.clamdscan()])
        outcome = await self.send(message(body))
        self.assertEqual(outcome.data, (552, "Virus found: %s" % VIRUS_NAME))

    async def test_max_size_skips_bigger_messages(self):
        self.serve(["rcpt_ok", self.clamdscan("max_size 1")])
        outcome = await self.send(message(VIRUS_PATTERN + "\r\n" + "padding " * 200))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.count("X-Virus-Found"), 0)
        self.assertLogged(codes.LOGINFO, r"^skip, too big \(\d+ > 1024\)$")

    async def test_clamd_refusing_a_too_long_stream_defers(self):
        self.serve(["rcpt_ok", self.clamdscan("max_size %d" % (STREAM_MAX_LENGTH // 1024 * 2))])
        body = ("y" * 98 + "\r\n") * (STREAM_MAX_LENGTH // 100 + 5000)
        outcome = await self.send(message(body))
        self.assertEqual(outcome.data, (452, "Unable to scan for viruses"))
        self.assertLogged(codes.LOGERROR, "size limit exceeded")

    async def test_scan_all_0_scans_only_multipart(self):
        import base64
        self.serve(["rcpt_ok", self.clamdscan("scan_all 0")])
        outcome = await self.send(message(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.count("X-Virus-Found"), 0)
        attachment = base64.b64encode(VIRUS_PATTERN.encode()).decode()
        self.assertEqual((await self.send(multipart(attachment))).data[0], 552)

    async def test_naughty_connections_are_skipped(self):
        self.serve(["rcpt_ok", self.clamdscan()])
        client = await self.open()
        next(iter(self.server.sessions)).connection.notes["naughty"] = "refused later"
        outcome = await self.transaction(client, ["alice@example.com"], message(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.logged(codes.LOGINFO, "skip"), ["skip, naughty"])

    # -- per recipient --------------------------------------------------------------------------

    NOTES = ("note_rcpt tagged@example.com virus_action=tag"
             " strict@example.com virus_action=reject")

    async def test_per_recipient_action_is_grouped(self):
        self.serve([self.NOTES, "rcpt_ok", self.clamdscan()])
        client = await self.open()
        first = await self.transaction(client, ["tagged@example.com", "strict@example.com"],
                                       message(VIRUS_PATTERN))
        self.assertEqual(first.rcpts, [
            (250, "<tagged@example.com>, recipient ok"),
            (452, "4.5.3 Try this recipient in another transaction")])
        self.assertEqual(first.data[0], 250)
        self.assertEqual(first.header.get("X-Virus-Details"), [VIRUS_NAME])
        second = await self.transaction(client, ["strict@example.com"], message(VIRUS_PATTERN))
        self.assertEqual(second.data, (552, "Virus found: %s" % VIRUS_NAME))
        # a recipient without a note gets the argument (default reject): same group as strict
        third = await self.transaction(client, ["strict@example.com", "other@example.com"],
                                       message(VIRUS_PATTERN))
        self.assertEqual([code for code, _ in third.rcpts], [250, 250])

    async def test_per_recipient_strictest(self):
        self.serve([self.NOTES, "rcpt_ok", self.clamdscan("action tag")],
                   {"recipient_policy": "strictest"})
        client = await self.open()
        outcome = await self.transaction(client, ["tagged@example.com", "strict@example.com"],
                                         message(VIRUS_PATTERN))
        self.assertEqual([code for code, _ in outcome.rcpts], [250, 250])
        self.assertEqual(outcome.data, (552, "Virus found: %s" % VIRUS_NAME))
        outcome = await self.transaction(client, ["tagged@example.com", "other@example.com"],
                                         message(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)

    # -- clamd unavailable ----------------------------------------------------------------------

    async def test_clamd_down_defers(self):
        port = free_port()
        self.serve(["rcpt_ok", "virus/clamdscan clamd_host 127.0.0.1 clamd_port %d" % port])
        outcome = await self.send(message(VIRUS_PATTERN))
        self.assertEqual(outcome.data, (452, "Unable to scan for viruses"))
        self.assertLogged(codes.LOGERROR,
                          r"^cannot scan: cannot connect to clamd at 127\.0\.0\.1:%d: " % port)

    async def test_clamd_down_fail_open(self):
        path = short_socket_path(self)
        for args in ("fail_open 1", "defer_on_error no"):
            self.serve(["rcpt_ok", "virus/clamdscan clamd_socket %s %s" % (path, args)])
            outcome = await self.send(message(VIRUS_PATTERN, extra="X-Virus-Found: No\r\n"))
            self.assertEqual(outcome.data[0], 250, args)
            self.assertEqual(outcome.top(1), ["X-Virus-Not-Scanned: clamd unavailable"])
            self.assertEqual(outcome.header.count("X-Virus-Found"), 0)
            self.assertLogged(codes.LOGERROR,
                              "^cannot scan: cannot connect to clamd at %s" % re.escape(path))
            self.assertEqual(self.logged(codes.LOGWARN, "fail_open"),
                             ["fail_open: accepting the message unscanned"])

    async def test_clamd_that_does_not_answer_times_out(self):
        port = hanging_server(self)
        self.serve(["rcpt_ok", "virus/clamdscan clamd_host 127.0.0.1 clamd_port %d timeout 0.5"
                    % port])
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data, (452, "Unable to scan for viruses"))
        self.assertEqual(self.logged(codes.LOGERROR, "cannot scan"), [
            "cannot scan: clamd at 127.0.0.1:%d did not answer within 0.5 seconds" % port])

    async def test_clamd_error_answer_defers(self):
        port = answering_server(self, b"stream: Can't allocate memory ERROR\0")
        self.serve(["rcpt_ok", "virus/clamdscan clamd_host 127.0.0.1 clamd_port %d" % port])
        self.assertEqual((await self.send(message("x"))).data[0], 452)
        self.assertLogged(codes.LOGERROR, "clamd answered \"stream: Can't")

    # -- arguments ------------------------------------------------------------------------------

    def test_bad_arguments(self):
        prefix = "plugins:1: plugin virus/clamdscan: "
        for args, expected in [
            ("action delete", "action must be reject or tag, not 'delete'"),
            ("action tag deny_viruses yes", "deny_viruses and action disagree"),
            ("deny_viruses perhaps", "deny_viruses must be yes or no"),
            ("fail_open 1 defer_on_error yes", "defer_on_error and fail_open disagree"),
            ("clamd_port 99999", "clamd_port must be a TCP port number"),
            ("clamd_host 127.0.0.1", "clamd_host needs clamd_port"),
            ("clamd_socket clamd.sock", "clamd_socket must be an absolute path"),
            ("clamd_socket /" + "s" * 107,
             "clamd_socket '/%s': longer than 107 bytes, the limit of unix socket" % ("s" * 107)),
            ("max_size big", "max_size must be a positive number"),
            ("timeout -2", "timeout must be a positive number"),
            ("scan_all sometimes", "scan_all must be yes or no"),
            ("colour blue", "unknown argument 'colour'"),
        ]:
            self.assertStartupError("virus/clamdscan " + args, prefix + expected)

    def test_defaults(self):
        plugin = make_server(self, ["virus/clamdscan", "rcpt_ok"]).plugins[0]
        self.assertEqual((str(plugin.address), plugin.max_size, plugin.fail_open, plugin.scan_all),
                         ("/var/run/clamav/clamd.ctl", 1024 * 1024, False, True))
        self.assertEqual(plugin.setting(None, "virus_action"), "reject")


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
            {"aliases": SHOW_ALIASES})
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
