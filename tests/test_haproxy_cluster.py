"""Two qpsmtpd-tx servers behind one HAProxy (``send-proxy-v2``, round robin, health checks),
sharing one Redis: the layout of README's "Several servers behind one HAProxy".

Real processes throughout, each server on a "host" of its own: the test makes a network
namespace per server (tests/support/netns.py: a veth pair to the host on a private /30, no
other route), and runs ``twistd qpsmtpd-tx --listen-proxy`` inside it on the namespace's
address (server B with ``--workers 2``). In the host's namespace: Debian's haproxy
(tests/support/haproxy.py) sending to both namespace addresses, a private redis-server of the
test's own bound to the host ends of both veth pairs (each server reaches it over its own
link), and smtplib clients connecting to HAProxy from their own 127/8 addresses. Every
server trusts only its link's host end as a proxy, and counts ``--max-from-ip 2`` across
both in Redis (``max_from_ip_redis``). Processes are stopped by their PIDs, the namespaces and
veth pairs removed, at the end of each test. Skipped without root (namespaces), haproxy or
redis-server.
"""

import os
import smtplib
import sys
import time

from twisted.trial import unittest

from qpsmtpd_tx.testing import maildir_messages, write_config
from tests.support.haproxy import start_haproxy
from tests.support.netns import make_namespace
from tests.support.processes import poll_until, read_text, server_env, wait_for_port
from tests.support.redis import start_redis
from tests.support.smtp_session import held_connection

#: a little more than greylisting's black_timeout 1
BLACK_WAIT = 1.2
#: where each server listens for HAProxy, on its namespace's address
PROXY_PORT = 2526
#: max_from_ip_redis_ttl: a killed server's connections stop counting this long after
TTL = 3
REFUSAL = b"451 too many connections from %s, try again later\r\n"


def send(port, source, subject, sender="a@example.net"):
    """One message through HAProxy from ``source``; smtplib's refusals propagate."""
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as client:
        client.ehlo("client.example")
        client.sendmail(sender, ["u@example.com"], "Subject: %s\r\n\r\nbody\r\n" % subject)


class ClusterTests(unittest.TestCase):
    def start_cluster(self, plugins=()):
        """Servers A and B (B with two workers), each in its namespace, behind one HAProxy,
        on one Redis; ``self.servers`` holds each one's process, maildir, log path and
        namespace; ``self.port`` is HAProxy's, ``self.redis`` the Redis."""
        namespaces = [make_namespace(self), make_namespace(self)]
        self.redis = start_redis(also_bind=[ns.host_address for ns in namespaces])
        self.addCleanup(self.redis.stop)
        self.servers = []
        for namespace, extra in zip(namespaces, ([], ["--workers", "2"])):
            redis_url = "redis://%s:%d/0" % (namespace.host_address, self.redis.port)
            root = os.path.abspath(self.mktemp())
            maildir = os.path.join(root, "maildir")
            config = write_config(root, [line % {"redis": redis_url} for line in plugins] + [
                "rcpt_ok", "queue/maildir " + maildir], {
                    "loglevel": "LOGINFO", "proxy_trusted": namespace.host_address,
                    "max_from_ip_redis": redis_url, "max_from_ip_redis_ttl": str(TTL)})
            log = os.path.join(root, "server.log")
            twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
            with open(log, "wb") as out:
                process = namespace.spawn(
                    [twistd, "-n", "--pidfile=", "qpsmtpd-tx", "--config", config, "--no-rdns",
                     "--max-from-ip", "2", "--listen-proxy",
                     "tcp:%d:interface=%s" % (PROXY_PORT, namespace.address)] + extra,
                    cwd=root, env=server_env(), stdout=out, stderr=out)
            try:
                wait_for_port(PROXY_PORT, process, address=namespace.address)
            except RuntimeError as e:
                raise RuntimeError("%s\n%s" % (e, read_text(log)[-3000:]))
            self.servers.append((process, maildir, log, namespace))
        self.port = start_haproxy(self, [(s[3].address, PROXY_PORT) for s in self.servers],
                                  "send-proxy-v2", check=True).port

    def until_both_serve(self, source="127.0.0.30"):
        """Send messages from ``source`` until each server has taken one (HAProxy's first
        health check of one may lag); their subjects. Round robin then alternates."""
        sent = []
        while len(sent) < 4 or (not all(maildir_messages(s[1]) for s in self.servers)
                                and len(sent) < 20):
            sent.append("before %d" % len(sent))
            send(self.port, source, sent[-1])
        return sent

    def assertRedisAnswered(self):
        """Neither server fell back to its own count (Redis was reachable from both)."""
        for _, _, log, _ in self.servers:
            self.assertNotIn("max_from_ip_redis failed", read_text(log))

    def subjects(self):
        """The Subject of every message in the servers' Maildirs."""
        return sorted(m.decode().split("Subject: ", 1)[1].split("\n", 1)[0].strip()
                      for _, maildir, _, _ in self.servers for m in maildir_messages(maildir))

    def test_greylisting_shared_through_redis(self):
        """The client's address reaches both servers, and a triplet one server deferred is
        known to the other: after the wait, every retry passes, whichever server takes it
        (round robin sends them to both)."""
        self.start_cluster(["greylisting black_timeout 1 grey_timeout 60 redis_url %(redis)s"])
        with self.assertRaises(smtplib.SMTPSenderRefused) as caught:
            send(self.port, "127.0.0.9", "first try")
        self.assertEqual(caught.exception.smtp_code, 450)
        time.sleep(BLACK_WAIT)
        retries = ["retry %d" % n for n in range(6)]
        for subject in retries:
            send(self.port, "127.0.0.9", subject)
        # another client with the same sender and recipient is a new triplet: its address counts
        with self.assertRaises(smtplib.SMTPSenderRefused):
            send(self.port, "127.0.0.10", "other client")
        self.assertEqual(self.subjects(), retries)
        for _, _, log, namespace in self.servers:
            line = "PROXY v2 from %s: client 127.0.0.9:" % namespace.host_address
            self.assertTrue(poll_until(lambda: line in read_text(log), 10), read_text(log)[-2000:])
        self.assertRedisAnswered()

    def test_connections_per_ip_counted_across_both(self):
        """--max-from-ip 2 holds for the two servers together: round robin puts the two
        held connections on A and B, and the third is refused whichever server takes it;
        when one ends, a new one is served."""
        self.start_cluster()
        self.until_both_serve()
        held = [held_connection(self, self.port, "127.0.0.20") for _ in range(2)]
        for _, greeting in held:
            self.assertTrue(greeting.startswith(b"220 "), greeting)
        for _ in range(2):      # one to each server
            self.assertEqual(held_connection(self, self.port, "127.0.0.20")[1],
                             REFUSAL % b"127.0.0.20")

        def refused_on():
            return [log for _, _, log, _ in self.servers
                    if "too many connections from 127.0.0.20 across servers (3 > 2)"
                    in read_text(log)]
        # polled: B's workers' lines reach its log through its main process, a moment later
        self.assertTrue(poll_until(lambda: len(refused_on()) == 2, 10), refused_on())
        held[0][0].sendall(b"QUIT\r\n")
        self.assertTrue(held[0][0].recv(4096).startswith(b"221 "))
        answers = []
        self.assertTrue(poll_until(lambda: answers.append(
            held_connection(self, self.port, "127.0.0.20")[1]) or
            answers[-1].startswith(b"220 "), 20, 0.1), answers)
        self.assertRedisAnswered()

    def test_one_server_killed_the_other_takes_the_mail(self):
        """A killed with SIGKILL: HAProxy sends every next connection to B, no acknowledged
        message is lost, and A's connections stop counting for their IP once they are
        older than max_from_ip_redis_ttl (A can no longer release them)."""
        self.start_cluster()
        sent = self.until_both_serve("127.0.0.11")
        # a client holds one connection on each server: the limit of 2 is reached
        held = [held_connection(self, self.port, "127.0.0.12") for _ in range(2)]
        for _, greeting in held:
            self.assertTrue(greeting.startswith(b"220 "), greeting)
        self.assertEqual(self.redis.command("ZCARD", "max_from_ip:127.0.0.12"), ":2")
        process_a = self.servers[0][0]
        process_a.kill()
        process_a.wait()
        for n in range(10):
            sent.append("after %d" % n)
            send(self.port, "127.0.0.11", sent[-1])
        # every message acknowledged is in a Maildir; A took some before it died
        self.assertEqual(self.subjects(), sorted(sent))
        self.assertTrue(maildir_messages(self.servers[0][1]))
        self.assertIn("client 127.0.0.11:", read_text(self.servers[1][2]))
        # the connection held on A died with it; its count expires, and B serves a second one
        answers = []
        self.assertTrue(poll_until(lambda: answers.append(
            held_connection(self, self.port, "127.0.0.12")[1]) or
            answers[-1].startswith(b"220 "), 10 * TTL, 0.2), answers)
        self.assertRedisAnswered()
