"""A hostile or broken milter against the ``milter`` plugin: header changes whose name or
value would forge other header fields, a flood of changes, huge and unknown packets, a
REPLYCODE that tries to smuggle a second SMTP reply. Against the scripted stand-in milter of
tests/support/milter_standin.py (a stand-in, not a milter: real milters do not misbehave on
request); the SMTP server is real, on a loopback socket."""

import struct

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
