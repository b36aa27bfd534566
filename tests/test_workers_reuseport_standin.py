"""--workers 2 --reuseport with a worker that is down (killed, and unable to start again after
a bad edit of ``plugins``): the kernel still hands its own listening socket a share of the new
connections, and the main process accepts them there until the worker is back, so none waits
unanswered. A real ``twistd qpsmtpd-tx``, raw sockets."""

import os
import signal
import socket

from twisted.trial import unittest

from qpsmtpd_tx.workers import HAVE_REUSEPORT
from tests.support.harness import write_config
from tests.support.processes import child_pids, poll_until, read_text, start_twistd

#: seconds a greeting may take (generous: the machine is shared)
BOUND = 30.0
CONNECTIONS = 20


def greeting(port):
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        try:
            return sock.recv(100)
        except socket.timeout:
            return None


class DownWorkerTests(unittest.TestCase):
    skip = None if HAVE_REUSEPORT else "no SO_REUSEPORT on this system"

    def test_connections_to_a_down_workers_socket_are_served(self):
        config = write_config(os.path.abspath(self.mktemp()), ["rcpt_ok"], {"loglevel": "6"})
        process, port, log = start_twistd(
            self, config, extra=["--workers", "2", "--reuseport", "--max-from-ip", "0"])
        self.assertTrue(poll_until(lambda: "worker 1: " in read_text(log)
                                   and "serving" in read_text(log), BOUND))
        [worker] = child_pids(process.pid)
        with open(os.path.join(config, "plugins"), "w") as f:
            f.write("no_such_plugin\n")           # the worker cannot start again
        os.kill(worker, signal.SIGKILL)
        self.assertTrue(poll_until(lambda: "worker 1 ended" in read_text(log), BOUND))
        replies = []
        while len(replies) < CONNECTIONS and (not replies or replies[-1] is not None):
            replies.append(greeting(port))
        self.assertEqual([r[:4] if r else r for r in replies], [b"220 "] * CONNECTIONS)
        self.assertNotIn("w1.", read_text(log).split("worker 1 ended", 1)[1])
