"""The client's and our own address and port, as the session's Connection holds them, over
real sockets: IPv4 (read from the socket's tuples, without Twisted's address objects) and
IPv6 (through getPeer and getHost)."""

import socket

from twisted.trial import unittest

from tests.support.server import connect, start_server


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class AddressTests(unittest.TestCase):
    """remote_ip/remote_port/local_ip/local_port of a live session against the client's socket."""

    async def check(self, interface, host, source=None):
        server, port = start_server(self, ["rcpt_ok"], interface=interface)
        client = await connect(self, port, host=host, source=source)
        self.assertEqual(client.greeting[0], 220)
        [session] = server.sessions
        conn = session.connection
        ours = client.transport.getHost()
        self.assertEqual((conn.remote_ip, conn.remote_port, conn.local_ip, conn.local_port),
                         (ours.host, ours.port, host, port))
        return conn

    async def test_ipv4(self):
        conn = await self.check("127.0.0.1", "127.0.0.1", source="127.0.0.9")
        self.assertEqual(conn.remote_ip, "127.0.0.9")
        self.assertIsInstance(conn.remote_port, int)

    async def test_ipv6(self):
        if not _has_ipv6_loopback():
            raise unittest.SkipTest("no IPv6 loopback here")
        await self.check("::1", "::1")
