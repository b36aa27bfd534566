"""Two qpsmtpd-tx servers behind one HAProxy (``send-proxy-v2``, round robin, health checks),
sharing one Redis: the layout of README's "Several servers behind one HAProxy".

Real processes throughout: Debian's haproxy (tests/support/haproxy.py), two ``twistd
qpsmtpd-tx --listen-proxy`` (the second with ``--workers 2``), a private redis-server of the
test's own, smtplib clients connecting from their own 127/8 addresses. The servers share the
loopback interface: no network namespaces (each server only listens on its own port, and the
test kills one by its PID).
"""

import os
import smtplib
import time

from twisted.trial import unittest

from qpsmtpd_tx.testing import maildir_messages, write_config
from tests.support.haproxy import start_haproxy
from tests.support.processes import (poll_until, read_text, reserve_port, start_twistd,
                                     wait_for_port)
from tests.support.redis import start_redis

#: a little more than greylisting's black_timeout 1
BLACK_WAIT = 1.2


def send(port, source, subject, sender="a@example.net"):
    """One message through HAProxy from ``source``; smtplib's refusals propagate."""
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as client:
        client.ehlo("client.example")
        client.sendmail(sender, ["u@example.com"], "Subject: %s\r\n\r\nbody\r\n" % subject)


class ClusterTests(unittest.TestCase):
    def start_cluster(self, plugins=()):
        """Servers A and B (B with two workers) behind one HAProxy; ``self.servers`` holds
        each one's process, maildir and log path; ``self.port`` is HAProxy's."""
        self.servers = []
        for extra in ([], ["--workers", "2"]):
            root = os.path.abspath(self.mktemp())
            maildir = os.path.join(root, "maildir")
            config = write_config(root, list(plugins) + ["rcpt_ok", "queue/maildir " + maildir],
                                  {"loglevel": "LOGINFO"})
            proxy_port = reserve_port(self)
            process, _, log = start_twistd(self, config, extra=[
                "--no-rdns", "--listen-proxy", "tcp:%d:interface=127.0.0.1" % proxy_port] + extra)
            wait_for_port(proxy_port, process)
            self.servers.append((process, maildir, log, proxy_port))
        self.port = start_haproxy(self, [("127.0.0.1", s[3]) for s in self.servers],
                                  "send-proxy-v2", check=True).port

    def subjects(self):
        """The Subject of every message in the servers' Maildirs."""
        return sorted(m.decode().split("Subject: ", 1)[1].split("\n", 1)[0].strip()
                      for _, maildir, _, _ in self.servers for m in maildir_messages(maildir))

    def test_greylisting_shared_through_redis(self):
        """The client's address reaches both servers, and a triplet one server deferred is
        known to the other: after the wait, every retry passes, whichever server takes it
        (round robin sends them to both)."""
        redis = start_redis()     # a Redis of its own: no other test flushes it meanwhile
        self.addCleanup(redis.stop)
        self.start_cluster(["greylisting black_timeout 1 grey_timeout 60 redis_url " + redis.url])
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
        for _, _, log, _ in self.servers:
            self.assertTrue(poll_until(lambda: "PROXY v2 from 127.0.0.1: client 127.0.0.9:"
                                       in read_text(log), 10), read_text(log)[-2000:])

    def test_one_server_killed_the_other_takes_the_mail(self):
        self.start_cluster()
        sent = []
        # round robin: both take messages; go on until A has some (its health check may lag)
        while len(sent) < 4 or (not maildir_messages(self.servers[0][1]) and len(sent) < 20):
            sent.append("before %d" % len(sent))
            send(self.port, "127.0.0.11", sent[-1])
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
