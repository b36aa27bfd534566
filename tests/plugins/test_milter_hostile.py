"""A hostile or broken milter against the ``milter`` plugin: header changes whose name or
value would forge other header fields, a flood of changes, huge and unknown packets, a
REPLYCODE that tries to smuggle a second SMTP reply. Against the scripted stand-in milter of
tests/support/milter_standin.py (a stand-in, not a milter: real milters do not misbehave on
request); the SMTP server is real, on a loopback socket."""

import struct

from twisted.internet import reactor
from twisted.internet.task import LoopingCall

from qpsmtpd_tx import codes
from tests.plugins.test_milter_standin import TEMPFAIL, StandinTestCase
from tests.support.filter_cases import message
from tests.support.milter_standin import index, reply, strings


class HeaderInjectionTests(StandinTestCase):
    async def test_added_value_cannot_start_a_field(self):
        self.milter({"E": [reply("h", strings("X-Added", "one\nBcc: forged@example.net")),
                           reply("i", index(0) + strings("X-Top", "two\r\nX-Forged: yes")),
                           reply("m", index(1) + strings("Subject", "three\n\nbody start")),
                           reply("c")]})
        outcome = await self.send(message("old body"))
        self.assertEqual(outcome.data[0], 250)
        head, body = outcome.queued.split(b"\n\n", 1)
        self.assertEqual(outcome.header.get("Bcc"), [])
        self.assertEqual(outcome.header.get("X-Forged"), [])
        self.assertEqual(body.rstrip(b"\n"), b"old body")
        self.assertNotIn(b"\r", head)
        self.assertEqual(outcome.header.get("X-Added"), ["one Bcc: forged@example.net"])
        self.assertEqual(outcome.header.get("X-Top"), ["two X-Forged: yes"])
        self.assertEqual(outcome.header.get("Subject"), ["three body start"])

    async def test_folded_value_stays_folded(self):
        self.milter({"E": [reply("h", strings("X-Added", "one\n\ttwo")), reply("c")]})
        outcome = await self.send(message("x"))
        self.assertIn(b"X-Added: one\n\ttwo\n", outcome.queued)

    async def test_bad_field_names_are_a_protocol_error(self):
        for name in ["X-Bad:Name", "X Bad", "", "X-Bad\nBcc", "X-B\xe4d"]:
            self.milter({"E": [reply("h", strings(name, "v")), reply("c")]})
            outcome = await self.send(message("x"))
            self.assertEqual(outcome.data, (452, TEMPFAIL), name)
            self.assertLogged(codes.LOGERROR, r"unavailable at end of message: protocol error: "
                                              r".*field name")


class ChangesFloodTests(StandinTestCase):
    """Changes are held until the milter's final answer: their total is bounded."""

    def flood(self, packet, count):
        def send(transport, data):
            transport.write(packet * count + reply("c"))
        return {"E": send}

    async def test_megabytes_of_header_fields(self):
        big = reply("h", strings("X-Big", "y" * ((1 << 20) - 100)))
        self.milter(self.flood(big, 70))
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data, (452, TEMPFAIL))
        self.assertLogged(codes.LOGERROR, r"protocol error: changes to the message over "
                                          r"67108864 bytes")

    async def test_a_flood_of_tiny_changes(self):
        self.milter(self.flood(reply("h", strings("X", "y")), 140000))
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data, (452, TEMPFAIL))
        self.assertLogged(codes.LOGERROR, r"changes to the message over")

    async def test_a_replaced_body_of_databytes_fits(self):
        chunk = reply("b", b"z" * 65000 + b"\r\n")
        self.milter(self.flood(chunk, 1100), files={"databytes": "80000000"})
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(len(outcome.queued.split(b"\n\n", 1)[1]), 1100 * 65001)


class BrokenPacketTests(StandinTestCase):
    """Each ends in the stage's temporary failure and a log line naming the fault."""

    async def mail_refused(self, script, why):
        self.milter(script)
        client = await self.open()
        self.assertEqual(await client.command("MAIL FROM:<a@client.example>"), (450, [TEMPFAIL]),
                         why)
        self.assertLogged(codes.LOGERROR, "unavailable at MAIL FROM: " + why)

    async def test_length_of_2_to_the_31(self):
        await self.mail_refused({"M": [struct.pack("!I", 1 << 31) + b"c"]},
                                "protocol error: packet of 2147483648 bytes")

    async def test_unknown_reply(self):
        await self.mail_refused({"M": [reply("Z")]}, "protocol error: unknown reply b'Z'")

    async def test_closing_in_the_middle_of_a_reply(self):
        def half(transport, data):
            transport.write(reply("y", b"550 5.7.1 no\0")[:7])
            transport.loseConnection()
        await self.mail_refused({"M": half}, "the milter closed the connection")

    async def test_replycode_cannot_smuggle_a_reply_line(self):
        for text in [b"550 5.7.1 no\r\n250 2.0.0 OK", b"550 5.7.1 no\n250 OK", b"550 no\r250 OK",
                     b"550-no\r\n\r\n550 x", b"5500 no", b"250 2.0.0 fine", b"550 4.7.1 mixed",
                     b"550 no\x00hidden"]:
            self.milter({"M": [reply("y", text + b"\0")]})
            client = await self.open()
            self.assertEqual(await client.command("MAIL FROM:<a@client.example>"),
                             (450, [TEMPFAIL]), text)
            self.assertLogged(codes.LOGERROR, "unavailable at MAIL FROM: protocol error: REPLYCODE")

    async def test_replycode_of_a_megabyte(self):
        for text, why in [(b"550-5.7.1 x\r\n" * 80000 + b"550 5.7.1 end", "80001 lines"),
                          (b"550 5.7.1 " + b"x" * (1 << 19), "524298 characters")]:
            self.milter({"M": [reply("y", text + b"\0")]})
            client = await self.open()
            self.assertEqual(await client.command("MAIL FROM:<a@client.example>"),
                             (450, [TEMPFAIL]), why)
            self.assertLogged(codes.LOGERROR, "protocol error: REPLYCODE of .*%s" % why)

    async def test_multiline_replycode_keeps_its_lines(self):
        self.milter({"M": [reply("y", b"550-5.7.1 first\r\n550 5.7.1 second\0")]})
        client = await self.open()
        self.assertEqual(await client.command("MAIL FROM:<a@client.example>"),
                         (550, ["5.7.1 first", "5.7.1 second"]))

    async def test_extra_strings_are_a_protocol_error(self):
        # they raised ValueError inside the protocol's dataReceived (a traceback, and the
        # connection dropped as if the milter had closed it)
        for packet in [reply("h", strings("X-A", "v", "extra")), reply("q", strings("a", "b")),
                       reply("+", strings("<a@example.com>", "x"))]:
            self.milter({"E": [packet, reply("c")]})
            outcome = await self.send(message("x"))
            self.assertEqual(outcome.data, (452, TEMPFAIL), packet)
            self.assertLogged(codes.LOGERROR, "protocol error: .*expected . NUL-terminated strings")


class EndlessProgressTests(StandinTestCase):
    async def test_progress_for_ever_ends_at_the_plugin_timeout(self):
        # each progress restarts command_timeout; the hook's own limit (plugin_timeout) ends it
        def progress(transport, data):
            loop = LoopingCall(transport.write, reply("p"))
            loop.start(0.05)
            self.addCleanup(lambda: loop.running and loop.stop())
        self.milter({"M": progress}, "command_timeout 0.5", files={"plugin_timeout": "2"})
        # the test kit gives the hooks a clock of their own; this test means them to expire
        self.server.hooks.clock = reactor
        client = await self.open()
        self.assertEqual(await client.command("MAIL FROM:<a@client.example>"),
                         (451, ["Timeout in processing, try again later"]))
