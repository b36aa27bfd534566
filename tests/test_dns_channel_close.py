"""qpsmtpd_tx.dns.cares.ReactorChannel once closed: the reactor may still call its sockets.

Given a socket that is both readable and writable, Twisted's reactor calls ``doRead`` and
then ``doWrite`` on the same object, looked up before either ran. When what ``doRead`` read
(the answer over TCP) ends in closing the resolver (a test's clean-up, a stopping server),
``doWrite`` comes after the close and called into the destroyed c-ares channel:
"RuntimeError: Channel is destroyed", about once in 200 runs of tests.test_dns_answers under
load (traced: c-ares still watched its TCP socket for writing when the answer came). The
ordering inside one reactor turn cannot be brought about from outside, so these tests make
the calls the reactor makes, in its order, on a real channel.
"""

import socket

from twisted.internet import reactor
from twisted.trial import unittest

from qpsmtpd_tx.dns.cares import ReactorChannel, _WatchedSocket


class ClosedChannelTests(unittest.TestCase):
    def setUp(self):
        self.channel = ReactorChannel(reactor, servers=["127.0.0.1:9"])

    def test_a_socket_event_after_the_close_is_ignored(self):
        watched = _WatchedSocket(self.channel, 1000)
        self.channel.close()
        watched.doWrite()
        watched.doRead()
        self.assertIsNone(self.channel._timer)

    def test_c_ares_reporting_a_socket_after_the_close_registers_nothing(self):
        # c-ares goes on after the callback that closed the channel returns
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        self.channel.close()
        self.channel._socket_state(sock.fileno(), True, True)
        self.assertFalse([s for s in reactor.getReaders() + reactor.getWriters()
                          if isinstance(s, _WatchedSocket) and s.channel is self.channel])

    def test_closing_twice_is_closing_once(self):
        self.channel.close()
        self.channel.close()
