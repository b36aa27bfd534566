"""The test kit's ports for the servers it starts (tests/support/processes.py).

Once under load, ``test_tls`` talked to a port where nothing listened ("connection refused")
right after its setUp had seen the twistd "ready": the readiness check connected to whatever
listened on the port, and the port, chosen free well before the twistd bound it, could be
taken meanwhile by another process on this shared machine. These tests start real processes
on real loopback sockets.
"""

import os
import signal
import socket
import subprocess
import sys

from twisted.trial import unittest

from tests.support import processes
from tests.support.processes import free_port, listens_on, reserve_port, wait_for_port

#: a Twisted server on the port given as its argument, as twistd binds it
TWISTED_LISTENER = """
import sys
from twisted.internet import protocol, reactor
reactor.listenTCP(int(sys.argv[1]), protocol.Factory.forProtocol(protocol.Protocol),
                  interface="127.0.0.1")
reactor.run()
"""


class PortTests(unittest.TestCase):
    def spawn(self, argv):
        """Start ``argv`` in a process group of its own, stopped (all of it) at the end."""
        process = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL)
        self.addCleanup(process.wait)
        self.addCleanup(os.killpg, process.pid, signal.SIGKILL)
        return process

    def test_another_process_on_the_port_is_not_the_server(self):
        """Something else accepts on the port while the server never listens: not ready."""
        impostor = socket.socket()
        self.addCleanup(impostor.close)
        impostor.bind(("127.0.0.1", 0))
        impostor.listen()
        port = impostor.getsockname()[1]
        idle = self.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
        with self.assertRaises(RuntimeError) as caught:
            wait_for_port(port, idle, timeout=1)
        self.assertIn("did not listen on 127.0.0.1 port %d" % port, str(caught.exception))

    def test_reserved_port_is_held_until_the_server_listens(self):
        port = reserve_port(self)
        # held: a plain bind fails, no bind to port 0 gets it (nor, alike, elsewhere)
        with socket.socket() as other, self.assertRaises(OSError):
            other.bind(("127.0.0.1", port))
        self.assertNotIn(port, {free_port() for _ in range(2000)})
        # a server that binds as Twisted does listens on it all the same; a child of the
        # process waited for counts (sh forks for a command followed by another)
        server = self.spawn(["sh", "-c", '"$0" -c "$1" "$2"; true', sys.executable,
                             TWISTED_LISTENER, str(port)])
        wait_for_port(port, server)
        self.assertTrue(listens_on(server.pid, port))
        self.assertNotIn(port, processes._reserved)      # released once it listens
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
