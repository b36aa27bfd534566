"""The metrics' counting points, driven through the real server on the in-memory transport:
a hook that times out, the server's own refusal of a too-big message, a SIGHUP reload.

(tests/test_metrics.py does the same end to end: real twistd, sockets, the HTTP endpoint.)
"""

from twisted.trial import unittest

from qpsmtpd_tx import prometheus
from tests.support.harness import MemoryClient, make_server

ENVELOPE = ["EHLO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"]
MESSAGE = b"Subject: hi\r\n\r\nbody\r\n.\r\n"


def counting_server(testcase, plugins, files=None):
    """A server counting into a fresh single-process registry: (server, registry)."""
    server = make_server(testcase, plugins, files)
    metrics, registry = prometheus.single_process()
    server.use_metrics(metrics)
    return server, registry


def sample(registry, name, **labels):
    """The value of ``qpsmtpd_tx_<name>`` with ``labels`` (0 if never counted)."""
    return registry.get_sample_value("qpsmtpd_tx_" + name, labels) or 0


class CountingPointsTests(unittest.TestCase):
    def test_a_hook_that_times_out_is_timed_and_its_451_counted(self):
        server, registry = counting_server(
            self, ["rcpt_ok", "never_answer queue", "scripted queue OK"], {"plugin_timeout": "30"})
        client = MemoryClient(server)
        for line in ENVELOPE:
            client.command(line)
        self.assertEqual(client.send(MESSAGE), "")
        self.assertEqual(sample(registry, "hook_seconds_count", plugin="never_answer",
                                hook="queue"), 0)
        server.hooks.clock.advance(30)
        self.assertTrue(client.take().startswith("451"))
        self.assertEqual(sample(registry, "hook_seconds_count", plugin="never_answer",
                                hook="queue"), 1)
        self.assertEqual(sample(registry, "queue_seconds_count", backend="never_answer"), 1)
        for name in ("messages_total", "refusals_total"):
            self.assertEqual(sample(registry, name, outcome="deferred", phase="queue",
                                    plugin="never_answer"), 1)

    def test_a_message_over_databytes_is_the_core_s_refusal(self):
        server, registry = counting_server(self, ["rcpt_ok", "scripted queue OK"],
                                           {"databytes": "100"})
        client = MemoryClient(server)
        for line in ENVELOPE:
            client.command(line)
        self.assertTrue(client.send(b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n.\r\n")
                        .startswith("552"))
        self.assertEqual(sample(registry, "messages_total", outcome="rejected",
                                phase="databytes", plugin="core"), 1)
        self.assertEqual(sample(registry, "transactions_total"), 1)

    def test_the_plugins_a_sighup_loads_are_timed_too(self):
        server, registry = counting_server(self, ["rcpt_ok", "scripted queue OK"])
        self.assertTrue(server.reload())
        client = MemoryClient(server)
        for line in ENVELOPE:
            client.command(line)
        self.assertTrue(client.send(MESSAGE).startswith("250"))
        self.assertEqual(sample(registry, "hook_seconds_count", plugin="rcpt_ok", hook="rcpt"), 1)
        self.assertEqual(sample(registry, "messages_total", outcome="accepted", phase="queue",
                                plugin="scripted"), 1)
        self.assertEqual(sample(registry, "connections_open"), 1)
        client.protocol.connectionLost(None)
        self.assertEqual(sample(registry, "connections_open"), 0)
