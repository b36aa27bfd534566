"""Tests of ident/p0f: with Debian's real p0f 3 sniffing the loopback interface
(tests/support/p0f.py; needs CAP_NET_RAW, skipped otherwise), and for p0f 2 — no longer
packaged anywhere — a STAND-IN speaking p0f 2's query/response layout as 0.94's plugin reads
it. Sessions over real loopback sockets."""

import socket
import struct

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from tests.support.harness import StartupErrorMixin, capture_log, plugin_module
from tests.support.p0f import p0f_socket_path, start_p0f
from tests.support.processes import poll_until
from tests.support.server import connect, start_server


class RealP0fTests(StartupErrorMixin, unittest.TestCase):
    async def session_notes(self, line_args):
        socket_path = p0f_socket_path(self)
        server, port = start_server(self, ["ident/p0f %s%s" % (socket_path, line_args), "rcpt_ok"])
        p0f = start_p0f(self, port, socket_path)
        # p0f keeps what it learns per host: a first connection from 127.0.0.1, then wait
        # until p0f has read its SYN, so that the test does not race p0f's sniffing
        socket.create_connection(("127.0.0.1", port)).close()
        self.assertTrue(poll_until(lambda: p0f.query("127.0.0.1")[0] == 0x10, 10, 0.05),
                        "p0f never saw 127.0.0.1:\n" + p0f.log())
        log = capture_log(self, server)
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        client_port = client.transport.getHost().port
        session = next(s for s in server.sessions if s.connection.remote_port == client_port)
        return session.connection.notes, [text for _, text in log]

    async def test_p0f3_note(self):
        notes, log = await self.session_notes("")
        note = notes["p0f"]
        self.assertEqual(note["magic"], 0x50304602)
        self.assertEqual(note["status"], 0x10)
        self.assertEqual(note["os_name"], "Linux")
        self.assertEqual(note["genre"], "Linux %s" % note["os_flavor"])
        self.assertEqual(note["distance"], 0)
        self.assertIn("Linux %s" % note["os_flavor"], log)
        self.assertNotIn("karma", notes)

    async def test_smite_os(self):
        notes, _ = await self.session_notes(" smite_os ^linux")
        self.assertEqual(notes["karma"], -1)

    async def test_p0f_down(self):
        missing = p0f_socket_path(self)        # (a path under _trial_temp may be too long)
        server, port = start_server(self, ["ident/p0f " + missing, "rcpt_ok"])
        log = capture_log(self, server)
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        self.assertNotIn("p0f", next(iter(server.sessions)).connection.notes)
        self.assertTrue(any(t.startswith("skip, could not ask p0f at " + missing) for _, t in log))

    def test_bad_arguments(self):
        self.assertStartupError(["ident/p0f"], ":1: plugin ident/p0f: usage: ident/p0f SOCKET")
        self.assertStartupError(["ident/p0f /tmp/s version 4"], ":1: plugin ident/p0f: version must be 2 or 3, got '4'")
        self.assertStartupError(["ident/p0f /tmp/s local_ip here"], ":1: plugin ident/p0f: local_ip must be an IPv4 address")
        self.assertStartupError(["ident/p0f /tmp/s smite_os ("], ":1: plugin ident/p0f: smite_os '(':")
        # Twisted fails such a connect with a TypeError of its own, logged at every connection
        self.assertStartupError(["ident/p0f /tmp/%s" % ("d" * 110)],
                                ":1: plugin ident/p0f: SOCKET '/tmp/ddd")


class P0f2StandIn(Protocol):
    """STAND-IN for p0f 2's query socket: checks the 24-byte query 0.94 sends (magic, type,
    id, addresses, ports) and answers in the layout 0.94 unpacks."""

    def dataReceived(self, data):
        magic, kind, query_id = struct.unpack("=III", data[:12])
        src, dst = socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20])
        sport, dport = struct.unpack("=HH", data[20:24])
        self.factory.queries.append((magic, kind, src, dst, sport, dport))
        answer = self.factory.answer
        self.transport.write(struct.pack("=IIB20s40sb30s30sBBBhH", 0x0DEFACED, query_id, answer,
                                         b"FreeBSD", b"6.x (1)", 17, b"ethernet/modem", b"",
                                         0, 0, 0, 0, 0) + struct.pack(">I", 1390))
        self.transport.loseConnection()


class P0f2Tests(StartupErrorMixin, unittest.TestCase):
    def stand_in(self, answer=0):
        factory = Factory.forProtocol(P0f2StandIn)
        factory.queries, factory.answer = [], answer
        path = p0f_socket_path(self)
        listening = reactor.listenUNIX(path, factory)
        self.addCleanup(listening.stopListening)
        return factory, path

    async def test_p0f2_note(self):
        factory, path = self.stand_in()
        server, port = start_server(self, ["ident/p0f %s version 2 local_ip 192.0.2.25" % path, "rcpt_ok"])
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        notes = next(iter(server.sessions)).connection.notes
        self.assertEqual(notes["p0f"], {"genre": "FreeBSD", "detail": "6.x (1)", "distance": 17,
                                        "link": "ethernet/modem", "uptime": 1390})
        client_port = client.transport.getHost().port
        self.assertEqual(factory.queries, [(0x0DEFACED, 1, "127.0.0.1", "192.0.2.25", client_port, port)])

    async def test_p0f2_not_in_cache(self):
        factory, path = self.stand_in(answer=2)
        server, port = start_server(self, ["ident/p0f %s version 2" % path, "rcpt_ok"])
        log = capture_log(self, server)
        await connect(self, port)
        self.assertNotIn("p0f", next(iter(server.sessions)).connection.notes)
        self.assertIn("skip, connection not in the cache", [t for _, t in log])

    def test_v3_parsing(self):
        module = plugin_module("ident/p0f")
        response = struct.pack("=IIIIIIIIIhBB32s32s32s32s32s32s", 0x50304602, 0x10, 1, 2, 3, 0, 0,
                               0, 0, 5, 0, 1, b"Windows", b"7 or 8", b"", b"", b"Ethernet or modem", b"English")
        note = module.parse_v3(response)
        self.assertEqual((note["genre"], note["link"], note["distance"], note["language"]),
                         ("Windows 7 or 8", "Ethernet or modem", 5, "English"))
        self.assertNotIn("uptime", note)
        with self.assertRaises(ValueError) as caught:
            module.parse_v3(response[:4] + struct.pack("=I", 0x20) + response[8:])
        self.assertEqual(str(caught.exception), "skip, no match")
        self.assertEqual(module.v3_query("2001:db8::1")[5:], socket.inet_pton(socket.AF_INET6, "2001:db8::1"))
