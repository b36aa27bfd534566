"""Tests of qmail_deliverable over real sockets: SMTP clients, and qmail-deliverabled played
by a STAND-IN (qmail-deliverabled is Perl from CPAN, not in Debian): a twisted.web server on
127.0.0.1 speaking its HTTP interface as Qmail::Deliverable::Client uses it —
``GET /qd1/deliverable?<URI-escaped address>`` answered ``200`` with the number in decimal,
or ``204`` when there is no answer."""

import socket
from urllib.parse import unquote

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.trial import unittest
from twisted.web import resource, server as web_server

from tests.support.harness import StartupErrorMixin, capture_log, plugin_module
from tests.support.server import connect, start_server

NO_MAILBOX = (550, ["Sorry, no mailbox by that name. qd (#5.1.1)"])


class DeliverableStandIn(resource.Resource):
    """qmail-deliverabled's /qd1/deliverable: ``answers`` maps an address to its number
    (None: 204; a string: that HTTP status instead; "hang": never answers)."""

    isLeaf = True

    def __init__(self, answers):
        super().__init__()
        self.answers = answers
        self.asked = []

    def render_GET(self, request):
        if request.path != b"/qd1/deliverable":
            request.setResponseCode(404)
            return b""
        address = unquote(request.uri.decode().split("?", 1)[1])
        self.asked.append(address)
        answer = self.answers.get(address, 0)
        if answer == "hang":
            return web_server.NOT_DONE_YET
        if isinstance(answer, str):
            request.setResponseCode(int(answer))
            return b"broken"
        if answer is None:
            request.setResponseCode(204)
            return b""
        return str(answer).encode()


class QmailDeliverableTests(StartupErrorMixin, unittest.TestCase):
    def stand_in(self, answers, interface="127.0.0.1", port=0):
        stand_in = DeliverableStandIn(answers)
        site = WrappingFactory(web_server.Site(stand_in))
        listening = reactor.listenTCP(port, site, interface=interface)
        self.addCleanup(self.stop_http, listening, site)
        return stand_in, listening.getHost().port

    async def stop_http(self, listening, site):
        await listening.stopListening()
        for _ in range(200):
            if not site.protocols:
                return
            for protocol in list(site.protocols):
                protocol.transport.abortConnection()
            await deferLater(reactor, 0.01, lambda: None)

    async def rcpt(self, line, recipients, sender="<a@b.example>", plugins=("rcpt_ok",),
                   files=None):
        server, port = start_server(self, [line] + list(plugins), files)
        log = capture_log(self, server)
        client = await connect(self, port)
        await client.command("HELO c.example")
        await client.command("MAIL FROM:%s" % sender)
        replies = [await client.command("RCPT TO:<%s>" % r) for r in recipients]
        self.log = [text for _, text in log]
        self.server = server
        return replies

    async def test_no_mailbox_is_refused(self):
        stand_in, port = self.stand_in({"alice@example.com": 0xf1, "bob@example.com": 0})
        replies = await self.rcpt("qmail_deliverable server 127.0.0.1:%d" % port,
                                  ["alice@example.com", "bob@example.com"])
        self.assertEqual(replies, [(250, ["<alice@example.com>, recipient ok"]), NO_MAILBOX])
        self.assertEqual(stand_in.asked, ["alice@example.com", "bob@example.com"])
        self.assertIn("pass, normal delivery", self.log)
        session = next(iter(self.server.sessions))
        self.assertEqual(session.connection.notes["karma"], -1)

    async def test_other_answers_leave_the_decision_to_the_next_plugin(self):
        answers = {"a%d@example.com" % i: value for i, value in
                   enumerate((0x11, 0x12, 0x13, 0x21, 0x22, 0xf2, 0xf6, 0xfe, 0xff, 0x99))}
        _, port = self.stand_in(answers)
        replies = await self.rcpt("qmail_deliverable server 127.0.0.1:%d" % port, list(answers))
        self.assertEqual([code for code, _ in replies], [250] * len(answers))
        for text in ("error, permission failure", "pass, vpopmail qmail-ext",
                     "fail, address not local", "error, unknown: 0x99"):
            self.assertIn(text, self.log)

    async def test_list_refuses_the_null_sender(self):
        _, port = self.stand_in({"list@example.com": 0x14})
        line = "qmail_deliverable server 127.0.0.1:%d" % port
        self.assertEqual(await self.rcpt(line, ["list@example.com"], sender="<>"),
                         [(550, ["mailing lists do not accept null senders"])])
        self.assertEqual((await self.rcpt(line, ["list@example.com"]))[0][0], 250)

    async def test_daemon_down_assumes_deliverable(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        replies = await self.rcpt("qmail_deliverable server 127.0.0.1:%d" % closed_port,
                                  ["bob@example.com"])
        self.assertEqual(replies[0][0], 250)
        self.assertTrue(any(t.startswith("error, Server 127.0.0.1:%d unreachable" % closed_port)
                            for t in self.log), self.log)

    async def test_no_answer_http_error_and_timeout_are_not_refusals(self):
        _, port = self.stand_in({"none@example.com": None, "err@example.com": "500",
                                 "slow@example.com": "hang"})
        replies = await self.rcpt("qmail_deliverable timeout 0.3 server 127.0.0.1:%d" % port,
                                  ["none@example.com", "err@example.com", "slow@example.com"])
        self.assertEqual([code for code, _ in replies], [250, 250, 250])
        self.assertIn("error (unknown) checking 'none@example.com'", self.log)

    async def test_reject_arguments(self):
        _, port = self.stand_in({})
        self.assertEqual((await self.rcpt("qmail_deliverable reject 0 server 127.0.0.1:%d" % port,
                                          ["bob@example.com"]))[0][0], 250)
        self.assertEqual(await self.rcpt("qmail_deliverable reject_type temp server 127.0.0.1:%d"
                                         % port, ["bob@example.com"]),
                         [(450, ["Sorry, no mailbox by that name. qd (#5.1.1)"])])

    async def test_relay_client_is_not_checked(self):
        stand_in, port = self.stand_in({})
        replies = await self.rcpt("qmail_deliverable server 127.0.0.1:%d" % port,
                                  ["bob@example.com"], plugins=("relay", "rcpt_ok"),
                                  files={"relayclients": "127.0.0.1\n"})
        self.assertEqual(replies[0][0], 250)
        self.assertEqual(stand_in.asked, [])

    async def test_address_is_escaped_and_lowercased(self):
        stand_in, port = self.stand_in({"o'brien+x/y=z&w@example.com": 0xf1})
        replies = await self.rcpt("qmail_deliverable server 127.0.0.1:%d" % port,
                                  ["O'Brien+x/y=z&w@Example.COM"])
        self.assertEqual(replies[0][0], 250)
        self.assertEqual(stand_in.asked, ["o'brien+x/y=z&w@example.com"])

    async def test_smtproutes(self):
        default, port = self.stand_in({"bob@example.com": 0})
        try:
            routed, _ = self.stand_in({"bob@routed.example": 0}, interface="127.0.0.2", port=port)
        except Exception as e:
            raise unittest.SkipTest("port %d is taken on 127.0.0.2: %s" % (port, e))
        routes = {"smtproutes": "routed.example:[127.0.0.2]:25\n.sub.example:127.0.0.2\n"}
        line = "qmail_deliverable server smtproutes:127.0.0.1:%d" % port
        recipients = ["bob@example.com", "bob@routed.example", "eve@a.sub.example"]
        replies = await self.rcpt(line, recipients, files=dict(routes, rcpthosts="example.com\nrouted.example\n.sub.example\n"))
        self.assertEqual([code for code, _ in replies], [550, 550, 550])
        self.assertEqual(default.asked, ["bob@example.com"])
        self.assertEqual(routed.asked, ["bob@routed.example", "eve@a.sub.example"])
        # without a fallback host, unrouted domains are not checked
        replies = await self.rcpt("qmail_deliverable server smtproutes:%d" % port, recipients,
                                  files=dict(routes, rcpthosts="example.com\nrouted.example\n.sub.example\n"))
        self.assertEqual([code for code, _ in replies], [250, 550, 550])
        self.assertEqual(default.asked, ["bob@example.com"])

    def test_smtproute_lookup(self):
        module = plugin_module("qmail_deliverable")
        routes = module.parse_smtproutes(["example.com:[192.0.2.1]:2525", ".example.net:mx.example",
                                          "null.example:", ":fallback.example"])
        self.assertEqual(module.smtproute(routes, "example.com"), "192.0.2.1")
        self.assertEqual(module.smtproute(routes, "a.b.example.net"), "mx.example")
        self.assertEqual(module.smtproute(routes, "null.example"), None)
        self.assertEqual(module.smtproute(routes, "other.example"), "fallback.example")

    def test_bad_arguments(self):
        self.assertStartupError(["qmail_deliverable server localhost"], ":1: plugin qmail_deliverable: server must be HOST:PORT or smtproutes:[HOST:]PORT, got 'localhost'")
        self.assertStartupError(["qmail_deliverable server smtproutes:host:x"], ":1: plugin qmail_deliverable: server must be HOST:PORT")
        self.assertStartupError(["qmail_deliverable reject maybe"], ":1: plugin qmail_deliverable: reject must be 0, 1 or naughty")
        self.assertStartupError(["qmail_deliverable vpopmail_ext 2"], ":1: plugin qmail_deliverable: vpopmail_ext must be 0 or 1")
        self.assertStartupError(["qmail_deliverable server"], ":1: plugin qmail_deliverable: arguments must be key/value pairs")
