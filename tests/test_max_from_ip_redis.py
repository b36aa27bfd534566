"""``--max-from-ip`` counted across servers with ``max_from_ip_redis``, end to end: two real
``twistd qpsmtpd-tx`` processes on one private redis-server (tests/support/redis.py), a limit
of 2, real sockets from the client address 127.0.0.5 (the servers' readiness probes come
from 127.0.0.1 and count for that address only).
"""

import os

from twisted.trial import unittest

from qpsmtpd_tx.testing import write_config
from tests.support.processes import poll_until, read_text, reserve_port, start_twistd
from tests.support.redis import start_redis
from tests.support.smtp_session import held_connection
from tests.test_metrics import scrape, value

CLIENT = "127.0.0.5"
REFUSAL = b"451 too many connections from 127.0.0.5, try again later\r\n"
DOWN = "max_from_ip_redis failed, counting this server's connections per IP only"


class MaxFromIPAcrossServersTests(unittest.TestCase):
    #: the plugins of both servers
    plugins = ["rcpt_ok"]

    def setUp(self):
        self.redis = start_redis()
        self.addCleanup(self.redis.stop)
        self.servers = []
        for name in ("a", "b"):
            config = write_config(os.path.abspath(self.mktemp()), self.plugins, {
                "loglevel": "LOGINFO", "max_from_ip_redis": self.redis.url,
                "max_from_ip_redis_timeout": "1"})
            self.metrics_port = reserve_port(self)     # B's is the one asked
            _, port, log = start_twistd(self, config, extra=[
                "--no-rdns", "--max-from-ip", "2",
                "--metrics", "tcp:%d:interface=127.0.0.1" % self.metrics_port])
            self.servers.append((port, log))

    def connect(self, server):
        """A connection from CLIENT to server ``server`` (0: A, 1: B); (socket, first line)."""
        return held_connection(self, self.servers[server][0], CLIENT)

    def assertServed(self, answer):
        self.assertTrue(answer[1].startswith(b"220 "), answer[1])
        return answer[0]

    def test_limit_holds_across_servers_and_falls_back_without_redis(self):
        held_a = [self.assertServed(self.connect(0)) for _ in range(2)]
        # two on A: the third, on B, is refused (and closed)
        self.assertEqual(self.connect(1)[1], REFUSAL)
        self.assertIn("too many connections from 127.0.0.5 across servers (3 > 2)",
                      read_text(self.servers[1][1]))
        refused = lambda: value(scrape(self.metrics_port),  # noqa: E731
                                "connections_refused_total", reason="max_from_ip")
        self.assertEqual(refused(), 1)
        # one on A ends: B takes one (A's release reaches Redis a moment after the close)
        held_a[0].sendall(b"QUIT\r\n")
        self.assertTrue(held_a[0].recv(4096).startswith(b"221 "))
        answers = []
        self.assertTrue(poll_until(lambda: answers.append(self.connect(1)) or
                                   answers[-1][1].startswith(b"220 "), 20, 0.1), answers)
        # Redis gone: each server counts its own connections (A holds 1, B 1: one more each)
        self.redis.stop()
        for server in (0, 1):
            self.assertServed(self.connect(server))
            self.assertEqual(self.connect(server)[1], REFUSAL)
        for _, log in self.servers:
            text = read_text(log)
            self.assertEqual(text.count(DOWN), 1, text[-3000:])
            self.assertIn("too many connections from 127.0.0.5 (3 > 2)", text)
            self.assertNotIn("Traceback", text)
        # across servers, while A's release was on its way, and B's own count (hosts_allow's
        # refusal is counted as its plugin's)
        self.assertEqual(refused(), 1 + [a[1] for a in answers].count(REFUSAL)
                         + (0 if "hosts_allow" in self.plugins else 1))


class WithHostsAllowTests(MaxFromIPAcrossServersTests):
    """hosts_allow loaded: it counts this process's connections itself, and the count across
    servers still applies, before it."""

    plugins = ["hosts_allow", "rcpt_ok"]
