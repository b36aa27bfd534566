"""The content filter ``virus/clamdscan`` against a real clamd, with per-recipient settings
(recipient notes, split, grouping, strictest) and a clamd that is down, hangs or answers garbage.

clamd is started once for the whole run (tests/support/clamd.py: private config, 127.0.0.1
and unix sockets in a temp dir, stopped by PID at exit); the tests that need it are skipped,
with the reason, when its Debian package is missing. The SMTP server runs on a loopback socket
(tests/support/filter_cases.py).
"""

import os
import re

from qpsmtpd_tx import codes
from qpsmtpd_tx.testing import maildir_messages
from tests.support.clamd import STREAM_MAX_LENGTH, VIRUS_NAME, VIRUS_PATTERN, shared_clamd
from tests.support.filter_cases import (FilterTestCase, answering_server, hanging_server, message,
                                        short_socket_path)
from tests.support.harness import make_server
from tests.support.processes import free_port


def multipart(attachment_base64):
    return ('From: sender@client.example\r\nSubject: files\r\nMIME-Version: 1.0\r\n'
            'Content-Type: multipart/mixed; boundary="BOUNDARY"\r\n\r\n'
            '--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n'
            '--BOUNDARY\r\nContent-Type: application/octet-stream\r\n'
            'Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--BOUNDARY--\r\n' % attachment_base64)


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
        self.serve([self.NOTES, "rcpt_ok", self.clamdscan()], {"recipient_policy": "group"})
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

    async def test_per_recipient_split(self):
        quarantine = os.path.abspath(self.mktemp())
        self.serve([self.NOTES, "rcpt_ok", self.clamdscan()], {"quarantine_dir": quarantine})
        client = await self.open()
        outcome = await self.transaction(client, ["tagged@example.com", "strict@example.com"],
                                         message(VIRUS_PATTERN))
        self.assertEqual([code for code, _ in outcome.rcpts], [250, 250])
        # refused for strict@ (quarantined), delivered tagged to tagged@
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("X-Virus-Details"), [VIRUS_NAME])
        [held] = maildir_messages(quarantine)
        self.assertIn(("X-Recipient-Rejected: <strict@example.com>; 552 Virus found: %s (by "
                       "virus::clamdscan)\n" % VIRUS_NAME).encode(), held)
        self.assertNotIn(b"X-Virus-Found", held)
        self.assertEqual(self.logged(codes.LOGNOTICE, "^fail, found virus"), [
            "fail, found virus %s" % VIRUS_NAME])

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
