"""The listening sockets' queue: a burst of clients must not overflow it (Twisted's default of
50 loses connections the clients already think open, when the kernel uses SYN cookies). Read
from the kernel with ``ss``: for a listening socket, its Send-Q column is the backlog."""

import os
import subprocess

from twisted.trial import unittest

from qpsmtpd_tx.workers import DEFAULT_BACKLOG, with_default_backlog
from tests.support.harness import write_config
from tests.support.processes import reserve_port, start_twistd


def listen_backlog(port):
    """The backlog the kernel reports for the socket listening on 127.0.0.1:``port``."""
    out = subprocess.run(["ss", "-ltnH", "sport = :%d" % port], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[2])


class BacklogTests(unittest.TestCase):
    def test_endpoint_strings(self):
        self.assertEqual(with_default_backlog("tcp:25"), "tcp:25:backlog=%d" % DEFAULT_BACKLOG)
        self.assertEqual(with_default_backlog("tcp:25:interface=127.0.0.1:backlog=7"),
                         "tcp:25:interface=127.0.0.1:backlog=7")
        self.assertEqual(with_default_backlog("systemd:domain=INET:index=0"),
                         "systemd:domain=INET:index=0")

    def test_twistd_listens_with_the_default_backlog_unless_told(self):
        config = write_config(os.path.abspath(self.mktemp()), ["rcpt_ok"], {})
        _, port, _ = start_twistd(self, config)
        self.assertEqual(listen_backlog(port), DEFAULT_BACKLOG)
        other = reserve_port(self)
        start_twistd(self, config, extra=["--listen", "tcp:%d:interface=127.0.0.1:backlog=7"
                                          % other])
        self.assertEqual(listen_backlog(other), 7)
