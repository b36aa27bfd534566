"""The rspamd plugin: arguments, the request it sends, what it does with each answer, the
per-recipient settings profile (``rspamd_settings_id`` → ``Settings-ID``) with grouping, rspamd
unreachable (452, or accepted with ``fail_open 1``), and an end-to-end session.

Two kinds of rspamd:
  - a real one from Debian's package (tests.support.rspamd), started once for this module, for
    everything rspamd decides: GTUBE, actions, profiles, the header changes it asks for, and
    what it understood of our request headers (its ``X-Test-Envelope`` echo);
  - a small fake HTTP server here, for what a real rspamd cannot be made to do on demand: hang,
    answer garbage or HTTP 500, ask for particular milter changes; and to see the exact bytes
    of our request.
"""

import json
import os

from twisted.internet import reactor
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from qpsmtpd_tx import codes
from qpsmtpd_tx.address import Address
from qpsmtpd_tx.loader import find_plugin_file, load_plugin_module
from qpsmtpd_tx.message import Header
from qpsmtpd_tx.objects import Connection, Transaction
from qpsmtpd_tx.paths import default_plugin_dirs
from qpsmtpd_tx.server import StartupError
from tests.support.harness import capture_log, loaded_plugin, log_every_level, maildir_by_recipient, make_server
from tests.support.processes import free_port
from tests.support.rspamd import GTUBE, shared_rspamd
from tests.support.server import Transcript, connect, start_server

rspamd_plugin = load_plugin_module(find_plugin_file("rspamd", default_plugin_dirs()))

HEADER = (b"From: Sender <s@client.example>\n"
          b"To: a@example.com\n"
          b"Subject: hello\n"
          b"Message-Id: <1@client.example>\n"
          b"Date: Tue, 25 Nov 2025 20:00:00 +0000\n")
BODY = b"Hello,\nthis is the body.\n"


def plugin_of(server):
    return loaded_plugin(server, "rspamd")


def rspamd_server(testcase, args, files=None):
    """An SMTPServer with only ``rspamd ARGS``; returns ``(server, plugin)``."""
    server = make_server(testcase, ["rspamd " + args], files)
    testcase.addCleanup(server.stop_plugins)
    return server, plugin_of(server)


def transaction(recipients=(("a@example.com", {}),), header=HEADER, body=BODY, **conn):
    """A transaction as the session hands it to data_post."""
    connection = Connection(remote_ip="192.0.2.1", hello_host="client.example",
                            remote_host="mail.client.example", **conn)
    txn = Transaction(connection=connection, id="1f.3",
                      sender=Address.parse("<s@client.example>"))
    for address, notes in recipients:
        rcpt = Address.parse("<%s>" % address)
        rcpt.notes.update(notes)
        txn.add_recipient(rcpt)
    txn.header = Header.parse(header)
    txn.body.write(body)
    return txn


# -- arguments and helpers (no rspamd) ------------------------------------------------------------


class ArgumentTests(unittest.TestCase):
    def test_defaults(self):
        _, plugin = rspamd_server(self, "")
        self.assertEqual(plugin.url, "http://127.0.0.1:11333/checkv2")
        self.assertEqual(plugin.timeout, 15.0)
        self.assertFalse(plugin.fail_open)
        self.assertIsNone(plugin.setting(None, "rspamd_settings_id"))

    def test_url_timeout_fail_open_settings_id(self):
        _, plugin = rspamd_server(
            self, "url http://[::1]:11399/ timeout 2.5 fail_open yes settings_id inbound")
        self.assertEqual(plugin.url, "http://[::1]:11399/checkv2")
        self.assertEqual(plugin.timeout, 2.5)
        self.assertTrue(plugin.fail_open)
        self.assertEqual(plugin.setting(None, "rspamd_settings_id"), "inbound")
        _, plugin = rspamd_server(self, "url https://scanner.example/rspamd/checkv2")
        self.assertEqual(plugin.url, "https://scanner.example/rspamd/checkv2")

    def test_bad_arguments_stop_start_up(self):
        for args, expected in [
                ("url ftp://x/", "url must be an http:// or https:// URL, got 'ftp://x/'"),
                ("url http://x:port/", "bad port in url 'http://x:port/'"),
                ("timeout 0", "timeout must be a number of seconds above 0, got '0'"),
                ("timeout soon", "timeout must be a number of seconds above 0, got 'soon'"),
                ("fail_open maybe", "fail_open must be 0 or 1, got 'maybe'"),
                ("reject_score 5", "unknown argument 'reject_score'"),
                ("url", "arguments must be key/value pairs")]:
            with self.assertRaises(StartupError, msg=args) as caught:
                make_server(self, ["rspamd " + args])
            self.assertIn(expected, str(caught.exception), args)

    def test_settings_id_note_lookup(self):
        _, plugin = rspamd_server(self, "settings_id inbound")
        good, bad, empty = (Address.parse("<%s@example.com>" % n) for n in "abc")
        good.notes["rspamd_settings_id"] = "strict"
        bad.notes["rspamd_settings_id"] = "two words"
        self.assertEqual(plugin.setting(good, "rspamd_settings_id"), "strict")
        self.assertEqual(plugin.setting(bad, "rspamd_settings_id"), "inbound")
        self.assertEqual(plugin.setting(empty, "rspamd_settings_id"), "inbound")


class HelperTests(unittest.TestCase):
    def header(self):
        return Header.parse(b"A: 1\nX: first\nB: 2\nX: second\nX: third\n")

    def names_values(self, header):
        return [(n, header._value(raw)) for n, raw in header.fields]

    def test_remove_field(self):
        for which, left in [(0, []), (1, ["second", "third"]), (2, ["first", "third"]),
                            (-1, ["first", "second"]), (-3, ["second", "third"]),
                            (4, ["first", "second", "third"]), (-4, ["first", "second", "third"])]:
            header = self.header()
            rspamd_plugin.remove_field(header, "x", which)
            self.assertEqual(header.get("X"), left, which)
            self.assertEqual(header.get("A") + header.get("B"), ["1", "2"])

    def test_add_field(self):
        header = self.header()
        rspamd_plugin.add_field(header, "Top", "t", 0)
        rspamd_plugin.add_field(header, "Second", "s", 1)
        rspamd_plugin.add_field(header, "End", "e", -1)
        rspamd_plugin.add_field(header, "End2", "e2", None)
        rspamd_plugin.add_field(header, "Far", "f", 99)
        self.assertEqual([n for n, _ in header.fields],
                         ["Top", "Second", "A", "X", "B", "X", "X", "End", "End2", "Far"])

    def test_header_values_cannot_start_new_fields(self):
        header = Header()
        rspamd_plugin.apply_milter(header,
                                   {"add_headers": {"X-A": "a\r\nBcc: x@y\n\tcontinued\n"}})
        self.assertEqual(header.as_bytes(), b"X-A: a Bcc: x@y\n\tcontinued\n")

    def test_spam_status_is_folded(self):
        answer = {"action": "add header", "score": 7, "required_score": 15,
                  "symbols": {"SYMBOL_%02d" % i: {} for i in range(12)}}
        status = rspamd_plugin.spam_status(answer, "strict")
        lines = status.split("\n\t")
        self.assertEqual(lines[0], "Yes, score=7.00 required=15.00 action=add_header "
                                   "profile=strict")
        self.assertTrue(lines[1].startswith("tests=SYMBOL_00, SYMBOL_01,"))
        self.assertTrue(all(len(line) < 78 for line in lines))
        self.assertEqual(status.replace("\n\t", " ").split("tests=")[1].split(", "),
                         ["SYMBOL_%02d" % i for i in range(12)])
        self.assertEqual(rspamd_plugin.spam_status(
            {"action": "no action", "score": -0.5, "required_score": 15}, None),
            "No, score=-0.50 required=15.00 action=no_action")


# -- a fake rspamd ------------------------------------------------------------------------------


class FakeRspamd(Resource):
    """Records each request; ``answer(request_headers)`` gives ``(status, body)`` or None
    (never answer)."""

    isLeaf = True

    def __init__(self, answer):
        Resource.__init__(self)
        self.answer = answer
        self.requests = []
        self.hanging = []

    def render_POST(self, request):
        headers = [(k.decode(), v.decode()) for k, vs in request.requestHeaders.getAllRawHeaders()
                   for v in vs]
        self.requests.append((request.uri.decode(), headers, request.content.read()))
        result = self.answer(headers)
        if result is None:
            self.hanging.append(request)
            return NOT_DONE_YET
        status, body = result
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        return body if isinstance(body, bytes) else json.dumps(body).encode()


def fake_rspamd(testcase, answer):
    """Listen on 127.0.0.1 with a FakeRspamd; returns ``(fake, url)``."""
    fake = FakeRspamd(answer if callable(answer) else (lambda headers: answer))
    site = Site(fake)
    site.log = lambda request: None
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)
    return fake, "http://127.0.0.1:%d" % port.getHost().port


def answer(action, **extra):
    body = {"is_skipped": False, "score": 1.5, "required_score": 15.0, "action": action,
            "symbols": {"SYM_B": {"score": 1.0}, "SYM_A": {"score": 0.5}}, "messages": {}}
    body.update(extra)
    return 200, body


class RequestTests(unittest.TestCase):
    """The request: URL, headers, body (seen by a fake rspamd)."""

    async def test_exact_request(self):
        fake, url = fake_rspamd(self, answer("no action"))
        server, plugin = rspamd_server(self, "url %s" % url)
        txn = transaction([("a@example.com", {"rspamd_settings_id": "strict"}),
                           ("B@Example.NET", {"rspamd_settings_id": "strict"})],
                          auth_user="u@example.org")
        self.assertEqual(await plugin.hook_data_post(txn), codes.DECLINED)
        [(uri, headers, body)] = fake.requests
        self.assertEqual(uri, "/checkv2")
        self.assertEqual(body, HEADER + b"\n" + BODY)
        ours = [(n, v) for n, v in headers
                if n not in ("Host", "Connection", "User-Agent", "Accept-Encoding",
                             "Content-Length")]
        self.assertIn(("Content-Length", str(len(HEADER + b"\n" + BODY))), headers)
        self.assertEqual(ours, [
            ("Ip", "192.0.2.1"),
            ("Helo", "client.example"),
            ("Hostname", "mail.client.example"),
            ("From", "<s@client.example>"),
            ("Rcpt", "<a@example.com>"),
            ("Rcpt", "<B@Example.NET>"),
            ("Queue-Id", "1f.3"),
            ("User", "u@example.org"),
            ("Mta-Name", "mx.example.org"),
            ("Settings-Id", "strict"),
            ("Content-Type", "message/rfc822"),
        ])

    async def test_optional_headers_left_out(self):
        fake, url = fake_rspamd(self, answer("no action"))
        _, plugin = rspamd_server(self, "url %s" % url)
        txn = transaction()
        txn.connection.remote_host = None        # no reverse DNS lookup made
        txn.connection.hello_host = None
        txn.sender = Address.parse("<>")
        await plugin.hook_data_post(txn)
        names = [n for n, _ in fake.requests[0][1]]
        for absent in ("Helo", "Hostname", "User", "Settings-Id"):
            self.assertNotIn(absent, names)
        self.assertIn(("From", "<>"), fake.requests[0][1])
        # no PTR name found: rspamd's word for it
        txn.connection.remote_host = "Unknown"
        await plugin.hook_data_post(txn)
        self.assertIn(("Hostname", "unknown"), fake.requests[1][1])

    async def test_big_body_from_the_spool_file(self):
        fake, url = fake_rspamd(self, answer("no action"))
        server, plugin = rspamd_server(self, "url %s" % url)
        body = b"".join(b"line %06d of a long message\n" % i for i in range(20000))
        txn = transaction(body=b"")
        txn.body = type(txn.body)(os.path.abspath(self.mktemp()), threshold=1000)
        txn.body.write(body)
        self.assertIsNotNone(txn.body.filename)
        await plugin.hook_data_post(txn)
        self.assertEqual(fake.requests[0][2], HEADER + b"\n" + body)


class AnswerTests(unittest.TestCase):
    """What the plugin does with each kind of answer (from a fake rspamd)."""

    async def scan(self, reply, args="", txn=None, files=None):
        fake, url = fake_rspamd(self, reply)
        server, plugin = rspamd_server(self, "url %s %s" % (url, args), files)
        self.logs = capture_log(self, server)
        self.txn = txn or transaction(header=HEADER + b"X-Spam-Flag: NO\nX-Spam-Status: No\n")
        self.fake = fake
        return await plugin.hook_data_post(self.txn)

    def errors(self):
        return [m for level, m in self.logs if level == codes.LOGERROR]

    async def test_actions(self):
        for action, expected in [
                ("reject", (codes.DENY, "Spam message rejected")),
                ("discard", (codes.DENY, "Spam message rejected")),
                ("quarantine", (codes.DENY, "Spam message rejected")),
                ("soft reject", (codes.DENYSOFT, "Try again later")),
                ("greylist", (codes.DENYSOFT, "Try again later")),
                ("add header", codes.DECLINED),
                ("rewrite subject", codes.DECLINED),
                ("no action", codes.DECLINED)]:
            self.assertEqual(await self.scan(answer(action)), expected, action)

    async def test_smtp_message(self):
        reply = answer("reject", messages={"smtp_message": "Go away\r\nand stay away"})
        self.assertEqual(await self.scan(reply), (codes.DENY, "Go away\nand stay away"))
        reply = answer("soft reject", messages={"smtp_message": "Ratelimit exceeded"})
        self.assertEqual(await self.scan(reply), (codes.DENYSOFT, "Ratelimit exceeded"))

    async def test_headers_of_a_tagged_message(self):
        reply = answer("add header", score=7.25, symbols={"ZED": {}, "ALPHA": {}})
        self.assertEqual(await self.scan(reply), codes.DECLINED)
        header = self.txn.header
        self.assertEqual([n for n, _ in header.fields[:4]],
                         ["X-Spam-Flag", "X-Spam-Status", "X-Spam-Level", "From"])
        self.assertEqual(header.get("X-Spam-Flag"), ["YES"])
        self.assertEqual(header.get("X-Spam-Status"),
                         ["Yes, score=7.25 required=15.00 action=add_header tests=ALPHA, ZED"])
        self.assertEqual(header.get("X-Spam-Level"), ["*******"])
        self.assertEqual(header.get("Subject"), ["hello"])
        self.assertEqual(self.logs, [(codes.LOGINFO, "rspamd: add header, score 7.25/15.00, "
                                                     "symbols ALPHA(0.00) ZED(0.00)")])

    async def test_headers_of_a_clean_message(self):
        self.assertEqual(await self.scan(answer("no action", score=0.2, symbols={})),
                         codes.DECLINED)
        header = self.txn.header
        self.assertEqual(header.get("X-Spam-Flag"), [])          # the sender's NO is gone
        self.assertEqual(header.get("X-Spam-Status"),
                         ["No, score=0.20 required=15.00 action=no_action"])
        self.assertEqual(header.get("X-Spam-Level"), [])

    async def test_rewrite_subject(self):
        await self.scan(answer("rewrite subject", subject="[SPAM] hello"))
        self.assertEqual(self.txn.header.get("Subject"), ["[SPAM] hello"])
        # without rspamd's subject: its default template
        await self.scan(answer("rewrite subject"))
        self.assertEqual(self.txn.header.get("Subject"), ["*** SPAM *** hello"])

    async def test_milter_changes(self):
        txn = transaction(header=HEADER + b"X-A: 1\nX-A: 2\nX-A: 3\nX-Gone: x\nX-Gone: y\n")
        reply = answer("no action", milter={
            "remove_headers": {"X-A": 2, "X-Gone": 0, "Bad Name": 0},
            "add_headers": {"X-One": "one",
                            "X-Top": {"value": "top", "order": 0},
                            "X-Many": [{"value": "m1", "order": -1}, "m2"],
                            "Bad:Name": "x"},
            "change_from": "x@y.example"})
        await self.scan(reply, txn=txn)
        header = self.txn.header
        self.assertEqual(header.fields[0][0], "X-Top")
        self.assertEqual(header.get("X-A"), ["1", "3"])
        self.assertEqual(header.get("X-Gone"), [])
        self.assertEqual([n for n, _ in header.fields[-3:]], ["X-One", "X-Many", "X-Many"])
        self.assertEqual(header.get("X-Many"), ["m1", "m2"])
        self.assertIn((codes.LOGWARN, "rspamd asked to add a header with a bad name 'Bad:Name'"),
                      self.logs)
        self.assertIn((codes.LOGINFO, "ignoring rspamd's milter requests change_from"), self.logs)

    async def test_rspamds_own_header_replaces_ours(self):
        reply = answer("add header", milter={
            "remove_headers": {"X-Spam-Status": 0},
            "add_headers": {"X-Spam-Status": {"value": "Yes, score=1.50", "order": -1}}})
        await self.scan(reply)
        self.assertEqual(self.txn.header.get("X-Spam-Status"), ["Yes, score=1.50"])

    async def test_bad_answers_are_failed_scans(self):
        for reply, reason in [
                ((500, {"error": "boom"}), 'HTTP 500: {"error": "boom"}'),
                ((200, b"<html>"), "the answer is not JSON: <html>"),
                ((200, {"score": 1}), "the answer has no action: {\"score\": 1}"),
                (answer("explode"), "unknown action 'explode'")]:
            self.assertEqual(await self.scan(reply), (codes.DENYSOFT, "Unable to scan for spam"))
            self.assertEqual(self.errors(), ["cannot scan: %s; answering 452 Unable to scan for "
                                             "spam (fail_open 0)" % reason])

    async def test_timeout(self):
        result = await self.scan(None, "timeout 0.2")
        self.assertEqual(result, (codes.DENYSOFT, "Unable to scan for spam"))
        self.assertEqual(self.errors(), ["cannot scan: no answer within 0.2 s; answering 452 "
                                         "Unable to scan for spam (fail_open 0)"])
        self.assertEqual(len(self.fake.requests), 1)

    async def test_timeout_fail_open(self):
        self.assertEqual(await self.scan(None, "timeout 0.2 fail_open 1"), codes.DECLINED)
        self.assertEqual(self.errors(), ["cannot scan: no answer within 0.2 s; accepting the "
                                         "message unscanned (fail_open 1)"])
        header = self.txn.header
        self.assertEqual(header.fields[0][0], "X-Spam-Not-Scanned")
        self.assertEqual(header.get("X-Spam-Not-Scanned"),
                         ["rspamd could not be asked (no answer within 0.2 s)"])
        self.assertEqual(header.get("X-Spam-Flag") + header.get("X-Spam-Status"), [])

    async def test_connection_refused(self):
        server, plugin = rspamd_server(self, "url http://127.0.0.1:%d" % free_port())
        logs = capture_log(self, server)
        result = await plugin.hook_data_post(transaction())
        self.assertEqual(result, (codes.DENYSOFT, "Unable to scan for spam"))
        [(level, message)] = logs
        self.assertEqual(level, codes.LOGERROR)
        self.assertRegex(message, r"^cannot scan: cannot connect to http://127\.0\.0\.1:\d+/"
                                  r"checkv2: .*[Cc]onnection refused.*; answering 452 Unable to "
                                  r"scan for spam \(fail_open 0\)$")

    async def test_strictest_scans_once_per_profile(self):
        def reply(headers):
            profile = dict(headers).get("Settings-Id")
            return answer({"strict": "reject", "lenient": "no action"}.get(profile, "add header"),
                          messages={"smtp_message": "by %s" % profile})
        txn = transaction([("a@example.com", {"rspamd_settings_id": "lenient"}),
                           ("b@example.com", {}),
                           ("c@example.com", {"rspamd_settings_id": "strict"}),
                           ("d@example.com", {"rspamd_settings_id": "lenient"})])
        strictest = {"recipient_policy": "strictest"}
        self.assertEqual(await self.scan(reply, txn=txn, files=strictest),
                         (codes.DENY, "by strict"))
        requests = [(dict(h).get("Settings-Id"), [v for n, v in h if n == "Rcpt"])
                    for _, h, _ in self.fake.requests]
        # each scan names its profile's recipients only
        self.assertEqual(sorted(requests, key=str), sorted([
            ("lenient", ["<a@example.com>", "<d@example.com>"]), (None, ["<b@example.com>"]),
            ("strict", ["<c@example.com>"])], key=str))
        # without the strict recipient, "add header" (default profile) is the most severe
        txn.remove_recipient(Address.parse("<c@example.com>"))
        self.assertEqual(await self.scan(reply, txn=txn, files=strictest), codes.DECLINED)
        self.assertIn("action=add_header", txn.header.get_first("X-Spam-Status"))
        self.assertEqual(len(self.fake.requests), 2)

    async def test_one_failed_profile_fails_the_scan(self):
        def reply(headers):
            return None if dict(headers).get("Settings-Id") == "slow" else answer("no action")
        txn = transaction([("a@example.com", {"rspamd_settings_id": "slow"}),
                           ("b@example.com", {})])
        self.assertEqual(await self.scan(reply, "timeout 0.2", txn=txn),
                         (codes.DENYSOFT, "Unable to scan for spam"))


# -- the real rspamd ----------------------------------------------------------------------------

AUTH_FILES = {"flat_auth_pw": "u@example.org:s3cr3t"}


def message(*fields, body="Hello,\r\nthis is the body.\r\n"):
    """A message in SMTP form (CRLF, ending with the final dot)."""
    lines = ["From: Sender <sender@client.example>", "To: someone@example.com",
             "Subject: hello", "Message-Id: <m1@client.example>",
             "Date: Tue, 25 Nov 2025 20:00:00 +0000"] + list(fields)
    return "\r\n".join(lines) + "\r\n\r\n" + body + "."


class RealRspamd:
    """Mixin: a server with the rspamd plugin talking to the module's rspamd."""

    def setUp(self):
        self.rspamd = shared_rspamd()

    def start(self, rspamd_args="", before=(), files=None, url=None):
        plugins = list(before) + ["rspamd url %s %s" % (url or self.rspamd.url, rspamd_args),
                                  "rcpt_ok", "scripted queue OK"]
        self.server, port = start_server(self, plugins, files)
        self.addCleanup(self.server.stop_plugins)
        self.logs = []
        original = self.server.log
        log_every_level(self, self.server)
        self.patch(self.server, "log", lambda level, message, **kw: (
            self.logs.append((level, message)), original(level, message, **kw)))
        return port

    async def session(self, port):
        client = await connect(self, port)
        self.assertEqual((await client.command("EHLO client.example"))[0], 250)
        return client

    async def send(self, client, text, rcpts=("someone@example.com",),
                   sender="sender@client.example"):
        """One transaction; returns ``(code, last reply line, queued message or None)``."""
        self.assertEqual((await client.command("MAIL FROM:<%s>" % sender))[0], 250)
        for rcpt in rcpts:
            self.assertEqual((await client.command("RCPT TO:<%s>" % rcpt))[0], 250, rcpt)
        self.assertEqual((await client.command("DATA"))[0], 354)
        notes = next(iter(self.server.sessions)).connection.notes
        notes.pop("scripted_message", None)
        code, lines = await client.command(text)
        return code, lines[-1], notes.get("scripted_message")


def fields(message_bytes, name):
    """The values of the named field in a queued message's header."""
    head = message_bytes.split(b"\n\n", 1)[0]
    return Header.parse(head + b"\n").get(name)


class RspamdTests(RealRspamd, unittest.TestCase):
    """Sessions over a real socket, scanned by the real rspamd."""

    async def test_clean_message(self):
        client = await self.session(self.start())
        code, text, queued = await self.send(client, message("X-Test-Echo: 1", "X-Spam: yes"))
        self.assertEqual((code, text), (250, "Queued"))
        self.assertEqual(fields(queued, "X-Spam-Status"),
                         ["No, score=0.00 required=15.00 action=no_action"])
        self.assertEqual(fields(queued, "X-Spam-Flag") + fields(queued, "X-Spam-Level"), [])
        # rspamd's milter_headers: X-Spamd-Bar added, X-Spam removed
        self.assertEqual(fields(queued, "X-Spamd-Bar"), ["/"])
        self.assertEqual(fields(queued, "X-Spam"), [])
        # what rspamd understood of the envelope we sent
        connection_id = next(iter(self.server.sessions)).connection.id
        [echo] = fields(queued, "X-Test-Envelope")
        self.assertRegex(echo, (
            r"^ip=127\.0\.0\.1; helo=client\.example; hostname=-; from=sender@client\.example; "
            r"rcpt=someone@example\.com; qid=%s\.\d+; user=-; mta=mx\.example\.org; "
            r"settings=-$") % connection_id)
        self.assertIn((codes.LOGINFO, "rspamd: no action, score 0.00/15.00"), self.logs)

    async def test_gtube_is_rejected(self):
        client = await self.session(self.start())
        code, text, queued = await self.send(client, message(body=GTUBE + "\r\n"))
        self.assertEqual((code, text, queued), (552, "Gtube pattern", None))
        self.assertIn((codes.LOGINFO, "rspamd: reject, score 15.00/15.00, symbols GTUBE(0.00)"),
                      self.logs)

    async def test_add_header(self):
        client = await self.session(self.start())
        code, _, queued = await self.send(client, message("X-Test-Score: 7", "X-Spam-Flag: NO"))
        self.assertEqual(code, 250)
        self.assertEqual(fields(queued, "X-Spam-Flag"), ["YES"])
        self.assertEqual(fields(queued, "X-Spam-Status"), [
            "Yes, score=7.00 required=15.00 action=add_header tests=QPTX_TEST_SCORE"])
        self.assertEqual(fields(queued, "X-Spam-Level"), ["*******"])
        self.assertEqual(fields(queued, "X-Spamd-Bar"), ["+++++++"])
        self.assertEqual(fields(queued, "Subject"), ["hello"])

    async def test_rewrite_subject(self):
        client = await self.session(self.start())
        code, _, queued = await self.send(client, message("X-Test-Score: 11"))
        self.assertEqual(code, 250)
        self.assertEqual(fields(queued, "Subject"), ["[SPAM] hello"])
        self.assertEqual(fields(queued, "X-Spam-Status"), [
            "Yes, score=11.00 required=15.00 action=rewrite_subject tests=QPTX_TEST_SCORE"])

    async def test_reject_by_score(self):
        client = await self.session(self.start())
        self.assertEqual(await self.send(client, message("X-Test-Score: 16")),
                         (552, "Spam message rejected", None))

    async def test_greylist_and_soft_reject(self):
        client = await self.session(self.start())
        self.assertEqual(await self.send(client, message("X-Test-Score: 5")),
                         (452, "Try again later", None))
        self.assertEqual(await self.send(client, message("X-Test-Action: soft reject")),
                         (452, "Try again later", None))
        self.assertEqual(await self.send(client, message(
            "X-Test-Action: soft reject", "X-Test-Message: come back in an hour")),
            (452, "come back in an hour", None))
        self.assertEqual(await self.send(client, message(
            "X-Test-Action: reject", "X-Test-Message: not from you")),
            (552, "not from you", None))
        # the session goes on: the next message is accepted
        self.assertEqual((await self.send(client, message()))[0], 250)

    async def test_settings_id_from_recipient_notes(self):
        port = self.start(before=[
            "note_rcpt strict@example.com rspamd_settings_id=strict"
            " lenient@example.com rspamd_settings_id=lenient"
            " tagged@example.com rspamd_settings_id=tagged"])
        client = await self.session(port)
        spam7 = message("X-Test-Score: 7", "X-Test-Echo: 1", "X-Drop-Me: please")
        self.assertEqual(await self.send(client, spam7, ["strict@example.com"]),
                         (552, "Spam message rejected", None))
        code, _, queued = await self.send(client, spam7, ["lenient@example.com"])
        self.assertEqual(code, 250)
        self.assertEqual(fields(queued, "X-Spam-Status"), [
            "No, score=7.00 required=50.00 action=no_action profile=lenient "
            "tests=QPTX_TEST_SCORE"])
        self.assertIn("rcpt=lenient@example.com;", fields(queued, "X-Test-Envelope")[0])
        self.assertTrue(fields(queued, "X-Test-Envelope")[0].endswith("; settings=lenient"))
        # a profile whose settings add and remove headers
        code, _, queued = await self.send(client, spam7, ["tagged@example.com"])
        self.assertEqual(code, 250)
        self.assertEqual(fields(queued, "X-Profile"), ["tagged"])
        self.assertEqual(fields(queued, "X-Drop-Me"), [])
        self.assertEqual(fields(queued, "X-Spam-Flag"), ["YES"])
        self.assertTrue(fields(queued, "X-Test-Envelope")[0].endswith("; settings=tagged"))
        self.assertIn((codes.LOGINFO, "rspamd: reject, score 7.00/5.00, profile strict, "
                                      "symbols QPTX_TEST_SCORE(7.00)"), self.logs)

    async def test_argument_profile_and_note_override(self):
        port = self.start("settings_id lenient",
                          before=["note_rcpt strict@example.com rspamd_settings_id=strict"])
        client = await self.session(port)
        spam7 = message("X-Test-Score: 7")
        self.assertEqual((await self.send(client, spam7, ["anyone@example.com"]))[0], 250)
        self.assertEqual((await self.send(client, spam7, ["strict@example.com"]))[0], 552)

    async def test_grouping_by_profile(self):
        port = self.start(before=[
            "note_rcpt strict@example.com rspamd_settings_id=strict"
            " strict2@example.com rspamd_settings_id=strict"
            " lenient@example.com rspamd_settings_id=lenient"],
            files={"recipient_policy": "group"})
        client = await self.session(port)
        await client.command("MAIL FROM:<sender@client.example>")
        replies = [await client.command("RCPT TO:<%s>" % r) for r in (
            "strict@example.com", "lenient@example.com", "plain@example.com",
            "strict2@example.com")]
        self.assertEqual(replies, [
            (250, ["<strict@example.com>, recipient ok"]),
            (452, ["4.5.3 Try this recipient in another transaction"]),
            (452, ["4.5.3 Try this recipient in another transaction"]),
            (250, ["<strict2@example.com>, recipient ok"])])

    async def test_authenticated_user_is_sent(self):
        port = self.start(before=["auth/auth_flat_file"], files=AUTH_FILES)
        client = await self.session(port)
        self.assertEqual((await client.command(
            "AUTH PLAIN AHVAZXhhbXBsZS5vcmcAczNjcjN0"))[0], 235)    # \0u@example.org\0s3cr3t
        code, _, queued = await self.send(client, message("X-Test-Echo: 1"),
                                          sender="u@example.org")
        self.assertEqual(code, 250)
        self.assertIn("; user=u@example.org;", fields(queued, "X-Test-Envelope")[0])

    async def test_rspamd_down(self):
        port = self.start("timeout 5", url="http://127.0.0.1:%d" % free_port())
        client = await self.session(port)
        self.assertEqual(await self.send(client, message()),
                         (452, "Unable to scan for spam", None))
        [(level, text)] = [(lv, m) for lv, m in self.logs if lv == codes.LOGERROR]
        self.assertTrue(text.startswith("cannot scan: cannot connect to http://127.0.0.1:"), text)
        self.assertTrue(text.endswith("; answering 452 Unable to scan for spam (fail_open 0)"))

    async def test_rspamd_down_fail_open(self):
        port = self.start("fail_open 1", url="http://127.0.0.1:%d" % free_port())
        client = await self.session(port)
        code, text, queued = await self.send(client, message("X-Spam-Flag: NO"))
        self.assertEqual((code, text), (250, "Queued"))
        [unscanned] = fields(queued, "X-Spam-Not-Scanned")
        self.assertRegex(unscanned, r"^rspamd could not be asked \(cannot connect to "
                                    r"http://127\.0\.0\.1:\d+/checkv2: .*[Cc]onnection refused")
        self.assertEqual(fields(queued, "X-Spam-Flag") + fields(queued, "X-Spam-Status"), [])
        self.assertTrue(any(lv == codes.LOGERROR and m.endswith(
            "; accepting the message unscanned (fail_open 1)") for lv, m in self.logs))


SHOW_ALIASES = """\
# three mailboxes, three rspamd settings profiles
strict@example.com     rspamd_settings_id=strict
lenient@example.com    rspamd_settings_id=lenient
# plain@example.com: no entry, rspamd's default settings
"""


def assert_profile_headers(testcase, delivered):
    """The copies of plain@ (rspamd's default settings: add header) and lenient@ (profile
    lenient: no action) of a message scoring 7 have their own profile's headers; returns them."""
    [plain], [lenient] = delivered["plain@example.com"], delivered["lenient@example.com"]
    testcase.assertEqual(fields(plain, "X-Spam-Flag"), ["YES"])
    testcase.assertEqual(fields(plain, "X-Spam-Status"), [
        "Yes, score=7.00 required=15.00 action=add_header tests=QPTX_TEST_SCORE"])
    testcase.assertEqual(fields(lenient, "X-Spam-Flag"), [])
    testcase.assertEqual(fields(lenient, "X-Spam-Status"), [
        "No, score=7.00 required=50.00 action=no_action profile=lenient tests=QPTX_TEST_SCORE"])
    return plain, lenient


class EndToEndTests(RealRspamd, unittest.TestCase):
    """One SMTP session over a real socket, three recipients with different rspamd profiles
    (from the aliases file), a message scoring 7 and then GTUBE; the client retries each
    ``452 4.5.3`` recipient in a new transaction; the Maildir shows who got what."""

    async def test_three_recipients_three_profiles(self):
        maildir = os.path.abspath(self.mktemp())
        self.server, port = start_server(self, [
            "aliases aliases", "rspamd url %s" % self.rspamd.url, "rcpt_ok",
            "queue/maildir %s %%u" % maildir],
            {"aliases": SHOW_ALIASES, "recipient_policy": "group"})
        self.addCleanup(self.server.stop_plugins)
        client = await connect(self, port)
        conversation = Transcript(client)
        transcript = conversation.lines

        await client.command("EHLO client.example")
        for name, body in [("score 7", message("X-Test-Score: 7", "X-Test-Echo: 1")),
                           ("GTUBE", message(body=GTUBE + "\r\n"))]:
            transcript.append("-- %s" % name)
            await conversation.deliver_retrying(
                ["strict@example.com", "plain@example.com", "lenient@example.com"], body[:-3], ".")
        await conversation.say("QUIT")

        ok = "250 <sender@client.example>, sender OK - how exciting to get mail from you!"
        retry = "452 4.5.3 Try this recipient in another transaction"
        round_ = [
            "MAIL FROM:<sender@client.example> -> " + ok,
            "RCPT TO:<strict@example.com> -> 250 <strict@example.com>, recipient ok",
            "RCPT TO:<plain@example.com> -> " + retry,
            "RCPT TO:<lenient@example.com> -> " + retry,
            "DATA -> 354 go ahead",
            ". -> 552 %s",
            "MAIL FROM:<sender@client.example> -> " + ok,
            "RCPT TO:<plain@example.com> -> 250 <plain@example.com>, recipient ok",
            "RCPT TO:<lenient@example.com> -> " + retry,
            "DATA -> 354 go ahead",
            ". -> %s",
            "MAIL FROM:<sender@client.example> -> " + ok,
            "RCPT TO:<lenient@example.com> -> 250 <lenient@example.com>, recipient ok",
            "DATA -> 354 go ahead",
            ". -> %s",
        ]
        expected = (["-- score 7"] + "\n".join(round_).replace(
            "552 %s", "552 Spam message rejected").replace(
            ". -> %s", ". -> 250 Queued!").split("\n")
            + ["-- GTUBE"] + "\n".join(round_).replace(". -> %s", ". -> 552 Gtube pattern")
            .replace("552 %s", "552 Gtube pattern").split("\n")
            + ["QUIT -> 221 mx.example.org closing connection. Have a wonderful day."])
        self.assertEqual(transcript, expected)

        delivered = maildir_by_recipient(maildir, ("strict@example.com", "plain@example.com", "lenient@example.com"))
        self.assertEqual({r: len(m) for r, m in delivered.items()},
                         {"strict@example.com": 0, "plain@example.com": 1,
                          "lenient@example.com": 1})
        plain, lenient = assert_profile_headers(self, delivered)
        # each scan carried exactly its transaction's recipient and profile
        for queued, rcpt, profile in [(plain, "plain@example.com", "-"),
                                      (lenient, "lenient@example.com", "lenient")]:
            [echo] = fields(queued, "X-Test-Envelope")
            self.assertIn("; rcpt=%s;" % rcpt, echo)
            self.assertTrue(echo.endswith("; settings=%s" % profile), echo)
