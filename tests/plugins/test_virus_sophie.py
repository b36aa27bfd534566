"""virus/sophie against a STAND-IN Sophie daemon: Sophos' daemon cannot run here, so the test
listens on a unix socket itself and answers as Sophie does (``1:<name>``, ``0``, ``-1:…``)
after reading the file whose path it was sent."""

import os

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

from qpsmtpd_tx import codes
from tests.support.clamd import VIRUS_PATTERN
from tests.support.filter_cases import FilterTestCase, short_socket_path
from tests.support.scanners import multipart, startup_log


class _StandinSophie(Protocol):
    """STAND-IN for Sophie: one path per connection, one answer, then close."""

    def dataReceived(self, data):
        path = data.decode().strip()
        self.factory.paths.append(path)
        with open(path, errors="replace") as f:
            text = f.read()
        if "SOPHIE-ERROR" in text:
            answer = b"-1:cannot read file"
        elif "TWO-VIRUSES" in text:
            answer = b"1:QPTX.Test.Pattern,Other.Worm"
        elif VIRUS_PATTERN in text:
            answer = b"1:QPTX.Test.Pattern"
        else:
            answer = b"0"
        self.transport.write(answer)
        self.transport.loseConnection()


class SophieTests(FilterTestCase):
    def setUp(self):
        self.socket = short_socket_path(self)
        factory = Factory.forProtocol(_StandinSophie)
        factory.paths = self.paths = []
        listening = reactor.listenUNIX(self.socket, factory)
        self.addCleanup(listening.stopListening)

    def line(self, args=""):
        return "virus/sophie sophie_socket %s %s" % (self.socket, args)

    async def test_virus_is_refused(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(multipart(VIRUS_PATTERN))
        self.assertEqual(outcome.data, (552, "Virus Found: QPTX.Test.Pattern"))
        self.assertTrue(self.paths[0].startswith(self.server.spool_dir + "/"))
        self.assertFalse(os.path.exists(self.paths[0]))
        outcome = await self.send(multipart(VIRUS_PATTERN + " TWO-VIRUSES"))
        self.assertEqual(outcome.data, (552, "Viruses Found: QPTX.Test.Pattern,Other.Worm"))

    async def test_clean_and_tagged(self):
        self.serve(["rcpt_ok", self.line("deny_viruses no")])
        outcome = await self.send(multipart("clean"))
        self.assertEqual(outcome.header.get("X-Virus-Checked"),
                         ["Checked by SOPHIE on mx.example.org"])
        outcome = await self.send(multipart(VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("X-Virus-Details"), ["QPTX.Test.Pattern"])

    async def test_error_answer_skips(self):
        self.serve(["rcpt_ok", self.line()])
        outcome = await self.send(multipart("SOPHIE-ERROR " + VIRUS_PATTERN))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.count("X-Virus-Checked"), 0)
        self.assertLogged(codes.LOGERROR, "Sophie answered '-1:cannot read file'")

    async def test_missing_socket(self):
        path = short_socket_path(self)
        _, logged = startup_log(self, ["virus/sophie sophie_socket " + path, "rcpt_ok"])
        self.assertIn((codes.LOGWARN, "%s is not a socket (yet): messages are not scanned "
                       "until it is" % path), logged)
        self.serve(["rcpt_ok", "virus/sophie sophie_socket " + path])
        self.assertEqual((await self.send(multipart(VIRUS_PATTERN))).data[0], 250)
        self.assertLogged(codes.LOGERROR, "^cannot scan: cannot ask Sophie at %s: " % path)

    async def test_sophie_that_does_not_answer_times_out(self):
        path = short_socket_path(self)
        listening = reactor.listenUNIX(path, Factory.forProtocol(Protocol))
        self.addCleanup(listening.stopListening)
        self.serve(["rcpt_ok", "virus/sophie sophie_socket %s timeout 0.5" % path])
        self.assertEqual((await self.send(multipart(VIRUS_PATTERN))).data[0], 250)
        self.assertLogged(codes.LOGERROR, "^cannot scan: Sophie at %s did not answer within "
                          "0.5 seconds$" % path)

    def test_bad_arguments(self):
        self.assertStartupError("virus/sophie sophie_socket /" + "s" * 120,
                                "longer than 107 bytes")
