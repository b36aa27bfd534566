"""The idle timeout counts the client's silence, not the time our hooks take: a client that
waited for a slow hook has the whole ``timeout`` after our answer for its next command (as
qpsmtpd, whose timeout starts when it reads the next line), and is closed once it has been
silent that long after the answer."""

import sys

from twisted.trial import unittest

from tests.support.harness import MemoryClient, codes_of, make_server

ENVELOPE = ["HELO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"]
MESSAGE = "Subject: x\r\n\r\nbody\r\n.\r\n"


class IdleAfterHookTests(unittest.TestCase):
    def client(self):
        client = MemoryClient(make_server(self, ["rcpt_ok", "gate queue OK"],
                                          {"timeout": "10"}))
        for line in ENVELOPE:
            client.command(line)
        self.assertEqual(codes_of(client.command("DATA")), [354])
        self.gates = sys.modules[type(client.session.server.plugins[1]).__module__].GATES
        return client

    def test_a_slow_queue_answer_leaves_the_client_its_whole_timeout(self):
        client = self.client()
        self.assertEqual(client.send(MESSAGE), "")
        client.clock.pump([0.5] * 19)                       # the queue takes 9.5 s
        self.gates.pop(0).callback(None)
        self.assertEqual(codes_of(client.take()), [250])
        client.clock.pump([0.5] * 18)                       # 9 s later: still waited for
        self.assertFalse(client.closed)
        self.assertEqual(codes_of(client.command("NOOP")), [250])

    def test_silent_after_the_answer_it_is_closed_a_timeout_later(self):
        client = self.client()
        client.send(MESSAGE)
        client.clock.pump([0.5] * 31)                       # longer than a timeout
        self.assertEqual(client.take(), "")                 # never while the hook runs
        self.gates.pop(0).callback(None)
        self.assertEqual(codes_of(client.take()), [250])
        client.clock.pump([0.5] * 18)
        self.assertFalse(client.closed)
        client.clock.pump([0.5] * 6)                        # 12 s of silence after the 250
        self.assertEqual(client.take(), "421 Connection Timed Out\r\n")
        self.assertTrue(client.closed)
