"""Pipelined replies do not wait for the client's delayed ACK.

A group MAIL/RCPT/DATA whose MAIL and RCPT hooks answer asynchronously used to be answered in
three writes, one per hook; with Nagle on, the second write waited for the ACK of the first,
which the client delays (~40 ms) because it has nothing to send until the whole group is
answered. Now the replies to a pipelined group are held until the last command that was already
received is answered, and accepted sockets have TCP_NODELAY. The tests check the order of
events and the socket option, not times.
"""

import socket
import sys

from twisted.trial import unittest

from tests.support.harness import MemoryClient, codes_of, eventually, make_server
from tests.support.server import connect, start_server

GROUP = "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n"


def gated_client(testcase):
    """A client whose MAIL and RCPT hooks wait for the test (``gate``); returns it and the gates."""
    server = make_server(testcase, ["gate mail DECLINED", "gate rcpt DECLINED", "rcpt_ok",
                                    "scripted queue OK"])
    client = MemoryClient(server)
    client.command("EHLO client.example")
    gates = sys.modules[type(server.plugins[0]).__module__].GATES
    testcase.addCleanup(gates.clear)
    return client, gates


class GroupedRepliesTests(unittest.TestCase):
    def test_pipelined_group_answered_in_one_write_after_async_hooks(self):
        client, gates = gated_client(self)
        writes = client.transport.writes
        self.assertEqual(client.send(GROUP), "")
        gates.pop(0).callback(None)                     # MAIL answered, RCPT buffered
        self.assertEqual(client.take(), "")             # held: the client waits for all three
        self.assertEqual(len(gates), 1)                 # ... while the RCPT hook runs
        gates.pop(0).callback(None)
        self.assertEqual(codes_of(client.take()), [250, 250, 354])
        self.assertEqual(client.transport.writes, writes + 1)

    def test_reply_not_held_when_nothing_follows(self):
        client, gates = gated_client(self)
        self.assertEqual(client.send("MAIL FROM:<a@b.example>\r\n"), "")
        gates.pop(0).callback(None)
        self.assertEqual(codes_of(client.take()), [250])
        self.assertEqual(client.send("RCPT TO:<u@example.com>\r\n"), "")
        gates.pop(0).callback(None)
        self.assertEqual(codes_of(client.take()), [250])

    def test_reply_not_held_for_a_partial_line(self):
        client, gates = gated_client(self)
        self.assertEqual(client.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@exa"), "")
        gates.pop(0).callback(None)
        self.assertEqual(codes_of(client.take()), [250])   # the RCPT is not complete yet

    def test_hook_closing_the_connection_flushes(self):
        server = make_server(self, ["gate mail DENY_DISCONNECT", "rcpt_ok"])
        client = MemoryClient(server)
        client.command("EHLO client.example")
        gates = sys.modules[type(server.plugins[0]).__module__].GATES
        self.addCleanup(gates.clear)
        client.send(GROUP)
        gates.pop(0).callback(None)
        self.assertEqual(codes_of(client.take())[:1], [550])
        self.assertTrue(client.closed)


class NoDelayTests(unittest.TestCase):
    async def test_accepted_socket_has_tcp_nodelay(self):
        server, port = start_server(self, ["rcpt_ok"])
        client = await connect(self, port)
        self.addCleanup(client.close)
        await eventually(lambda: len(server.sessions) == 1)
        (session,) = server.sessions
        sock = session.transport.tcp.getHandle()
        self.assertNotEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)
