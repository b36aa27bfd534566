"""Tests of a ``--listen-proxy`` endpoint: the PROXY header (v1 or v2) of a trusted proxy first.

The server is real and listens on a loopback socket with the factory ``twistd --listen-proxy``
uses; the test's client plays the proxy (HAProxy itself is in ``test_haproxy``), which lets it
cut the header into single-byte writes and send malformed ones.
"""

import os
import struct

from twisted.internet import reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from qpsmtpd_tx import config_items
from qpsmtpd_tx.codes import LOGNOTICE, LOGWARN
from qpsmtpd_tx.config import Config
from qpsmtpd_tx.protocol import proxy_factory
from qpsmtpd_tx.proxy_header import V2_SIGNATURE
from tests.support.harness import StartupErrorMixin, capture_log, eventually, write_config
from tests.support.server import SMTPClient, start_server

V1 = b"PROXY TCP4 192.0.2.7 198.51.100.25 50060 25\r\n"
V2 = (V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes([192, 0, 2, 7, 198, 51, 100, 25])
      + struct.pack("!HH", 50060, 25))
V2_LOCAL = V2_SIGNATURE + b"\x20\x00\x00\x00"


class RawClient(SMTPClient):
    """An SMTPClient that also keeps every byte the server sent (``received``)."""

    def connectionMade(self):
        self.received = b""

    def dataReceived(self, data):
        self.received += data
        SMTPClient.dataReceived(self, data)


async def open_proxy(testcase, port, source="127.0.0.1"):
    """A connection to the endpoint from ``source``, nothing sent yet."""
    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0)),
                          client)
    testcase.addCleanup(client.close)
    return client


def pause(seconds=0.01):
    return task.deferLater(reactor, seconds, lambda: None)


class EndpointTests(StartupErrorMixin, unittest.TestCase):
    def serve(self, files=None, plugins=("rcpt_ok",), **kwargs):
        server, port = start_server(self, list(plugins), files, factory=proxy_factory, **kwargs)
        return server, port, capture_log(self, server)

    async def assertClosedSilently(self, client):
        await client.wait_closed()
        self.assertEqual(client.received, b"")

    async def test_v2_header_byte_by_byte(self):
        """Each byte its own read (Twisted's parser would drop this connection, issue 8287);
        no greeting until the header is complete; then the header's client is the client."""
        server, port, log = self.serve()
        client = await open_proxy(self, port)
        for i, byte in enumerate(V2):
            client.transport.write(bytes([byte]))
            await pause()
            if i == 11:
                await pause(0.2)
                self.assertEqual(client.received, b"")
        greeting = await client.reply()
        self.assertEqual(greeting[0], 220)
        [session] = server.sessions
        connection = session.connection
        self.assertEqual((connection.remote_ip, connection.remote_port, connection.local_ip,
                          connection.local_port), ("192.0.2.7", 50060, "198.51.100.25", 25))
        self.assertEqual((connection.notes["proxy"], connection.notes["protocol"]), ("YES", "TCP4"))
        lines = [text for _, text in log]
        self.assertIn("PROXY v2 from 127.0.0.1: client 192.0.2.7:50060", lines)
        self.assertIn("Connection from [192.0.2.7] [192.0.2.7]", lines)

    async def test_v1_header_and_command_in_one_write(self):
        server, port, _ = self.serve()
        client = await open_proxy(self, port)
        client.transport.write(V1 + b"HELO client.example\r\n")
        self.assertEqual((await client.reply())[0], 220)
        self.assertEqual((await client.reply())[0], 250)
        self.assertEqual(next(iter(server.sessions)).connection.remote_ip, "192.0.2.7")

    async def test_local_keeps_the_proxy(self):
        """A v2 LOCAL header (HAProxy's health checks): the proxy is the client."""
        server, port, log = self.serve()
        client = await open_proxy(self, port)
        client.transport.write(V2_LOCAL)
        self.assertEqual((await client.reply())[0], 220)
        connection = next(iter(server.sessions)).connection
        self.assertEqual((connection.remote_ip, connection.notes["protocol"]), ("127.0.0.1", "LOCAL"))
        self.assertIn("PROXY v2 LOCAL from 127.0.0.1: the proxy is the client",
                      [text for _, text in log])

    async def test_bad_header_closes_without_a_word(self):
        _, port, log = self.serve()
        for header, why in (
                (V2_SIGNATURE + b"\x21\x31\x00\x00", "UNIX stream is not served"),
                (V2_SIGNATURE + b"\x21\x11\xff\xff", "65551 bytes, more than the 2048 allowed"),
                (b"PROXY TCP4 192.0.2.7 198.51.100.25 1 99999\r\n", "bad port '99999'")):
            client = await open_proxy(self, port)
            client.transport.write(header)
            await self.assertClosedSilently(client)
            self.assertIn((LOGNOTICE, "bad PROXY header from 127.0.0.1: %s, closing" % why), log)

    async def test_no_header_in_time(self):
        _, port, log = self.serve({"proxy_timeout": "1"})
        client = await open_proxy(self, port)
        client.transport.write(V2[:20])
        await self.assertClosedSilently(client)
        self.assertIn((LOGNOTICE, "no PROXY header from 127.0.0.1 within 1 s, closing"), log)

    async def test_peer_closing_its_side_before_the_header(self):
        """A proxy that half-closes before a whole header (a TCP health check closes at once)
        is let go at once, not after proxy_timeout (60 s here, beyond the test's wait)."""
        server, port, log = self.serve({"proxy_timeout": "60"})
        for partial in (b"", V2[:14], V1[:20]):
            client = await open_proxy(self, port)
            client.transport.write(partial)
            client.transport.loseWriteConnection()
            await self.assertClosedSilently(client)
        self.assertEqual(len([text for _, text in log if text ==
                              "127.0.0.1 closed the connection before a PROXY header"]), 3)
        await eventually(lambda: not server.sessions)

    async def test_a_trusted_peer_talking_smtp_is_closed(self):
        _, port, log = self.serve()
        client = await open_proxy(self, port)
        client.transport.write(b"EHLO direct.example\r\n")
        await self.assertClosedSilently(client)
        self.assertIn((LOGNOTICE, "no PROXY header from 127.0.0.1: it talks SMTP directly, "
                                  "closing"), log)

    async def test_untrusted_peer_is_refused(self):
        server, port, log = self.serve()
        client = await open_proxy(self, port, source="127.0.0.2")
        await self.assertClosedSilently(client)
        self.assertIn((LOGWARN, "refusing a connection from 127.0.0.2 on a PROXY endpoint: "
                                "not in proxy_trusted"), log)
        self.assertEqual(server.sessions, set())

    async def test_proxy_trusted_networks(self):
        _, port, _ = self.serve({"proxy_trusted": "127.0.0.0/31, 10.1.2.3\n127.0.1.0/24"})
        for source, trusted in (("127.0.0.1", True), ("127.0.1.9", True), ("127.0.0.2", False)):
            client = await open_proxy(self, port, source=source)
            client.transport.write(V1)
            if trusted:
                self.assertEqual((await client.reply())[0], 220, source)
                await client.close()
            else:
                await self.assertClosedSilently(client)

    async def test_max_from_ip_counts_the_proxied_clients(self):
        _, port, _ = self.serve(max_conn_ip=1)
        replies = []
        for header in (V1, V1.replace(b"192.0.2.7", b"192.0.2.8"), V2):
            client = await open_proxy(self, port)
            client.transport.write(header)
            replies.append(await client.reply())
        self.assertEqual([code for code, _ in replies], [220, 220, 451])
        self.assertEqual(replies[2][1], ["too many connections from 192.0.2.7, try again later"])

    async def test_hosts_allow_sees_the_proxied_client(self):
        _, port, _ = self.serve({"hosts_allow": "192.0.2.7 DENY go away\n"},
                                plugins=("hosts_allow", "rcpt_ok"))
        for header, greeting in ((V2, (550, ["go away"])), (V1.replace(b"192.0.2.7", b"192.0.2.8"), None)):
            client = await open_proxy(self, port)
            client.transport.write(header)
            reply = await client.reply()
            self.assertEqual(reply if greeting else reply[0], greeting or 220)

    async def test_stunnel_plugin_behind_an_endpoint_reads_no_second_header(self):
        server, port, _ = self.serve(plugins=("stunnel proxy on", "rcpt_ok"))
        client = await open_proxy(self, port)
        client.transport.write(V2 + b"NOOP\r\n")
        self.assertEqual((await client.reply())[0], 220)
        self.assertEqual(await client.reply(), (250, ["OK"]))
        self.assertEqual(next(iter(server.sessions)).connection.remote_ip, "192.0.2.7")

    def test_bad_proxy_trusted_names_file_and_line(self):
        self.assertStartupError(["rcpt_ok"], "proxy_trusted:2: proxy_trusted: '10.0.0.1/8' "
                                "is not an address or network",
                                {"proxy_trusted": "127.0.0.1\n10.0.0.1/8\n"})

    def test_config_items_lists_them(self):
        rows = {row[0]: row for row in config_items.describe()[0]}
        self.assertEqual(rows["proxy_trusted"][1], "127.0.0.1 ::1")
        self.assertEqual(rows["proxy_timeout"][1], "5")
        directory = write_config(os.path.abspath(self.mktemp()), ["rcpt_ok"],
                                 {"proxy_trusted": "10.0.0.0/8,192.0.2.1 2001:db8::/32"})
        rows = {row[0]: row for row in config_items.describe(Config(config_dir=directory))[0]}
        self.assertEqual(rows["proxy_trusted"][1:3], ("10.0.0.0/8 192.0.2.1/32 2001:db8::/32",
                                                      os.path.join(directory, "proxy_trusted") + ":1"))

    def test_bad_proxy_timeout(self):
        self.assertStartupError(["rcpt_ok"], "proxy_timeout:1:", {"proxy_timeout": "0"})


class StunnelV2Tests(unittest.TestCase):
    """The stunnel plugin reads version 2 headers with the same parser."""

    async def test_v2_from_a_trusted_peer(self):
        server, port = start_server(self, ["stunnel proxy on", "rcpt_ok"])
        client = await open_proxy(self, port)
        client.transport.write(V2[:7])
        await pause(0.05)
        client.transport.write(V2[7:])
        self.assertEqual((await client.reply())[0], 220)
        self.assertEqual(next(iter(server.sessions)).connection.remote_ip, "192.0.2.7")
