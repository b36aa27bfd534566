"""The test kit's free_port() (tests/support/processes.py): a port nobody else is handed
while the server that is to use it starts.

A port the kernel hands out on its own (a bind to port 0, as free_port() did and every
in-process test server does; the source port of an outgoing connection) comes from its
ephemeral range; free_port() closes its socket before the server binds, and in that moment,
long under load, anyone could be given the same port. Seen in a whole suite under trial -j2:
Postfix's master failing with "bind 127.0.0.1 port 33157: Address already in use", three
times in a minute. Ports below the range are given only to whoever names them.
"""

import socket

from twisted.trial import unittest

from tests.support.processes import free_port


def ephemeral_range():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        return tuple(int(x) for x in f.read().split())


class FreePortTests(unittest.TestCase):
    def test_ports_are_not_from_the_kernels_ephemeral_range(self):
        low, high = ephemeral_range()
        if low < 11024:
            raise unittest.SkipTest("no room below the ephemeral range %d-%d" % (low, high))
        ports = [free_port() for _ in range(50)]
        self.assertEqual([p for p in ports if low <= p <= high], [])
        self.assertGreater(len(set(ports)), 40)    # spread, not one port for everyone

    def test_the_port_can_be_listened_on(self):
        port = free_port()
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(1)
