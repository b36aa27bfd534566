"""--metrics: a real twistd, real SMTP sessions (smtplib, a raw socket), then GET /metrics,
parsed with prometheus_client's parser; the counts must be what the sessions did.

With ``--workers 2`` the one endpoint must give the sum of both processes (the test goes on
until each process has served a connection), keep a killed worker's counts, and drop the open
connections it held.
"""

import os
import re
import smtplib
import socket
import ssl
import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial import unittest

from tests.support.certs import make_certs
from tests.support.harness import write_config
from tests.support.processes import (child_pids, free_port, listening_sockets, poll_until,
                                     read_text, reserve_port, server_env, start_twistd, stop_process,
                                     twistd_argv)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture_plugins")
MESSAGE = b"From: a@b.example\r\nSubject: counted\r\n\r\nbody\r\n"
NO_FROM = b"Subject: no From field\r\n\r\nbody\r\n"


def scrape(port):
    """The samples of ``GET /metrics``: {(name, ((label, value), ...)): value}."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as response:
        text = response.read().decode("utf-8")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name, **labels):
    """One sample's value (0 if it is not there: a counter never incremented)."""
    return samples.get(("qpsmtpd_tx_" + name, tuple(sorted(labels.items()))), 0)


def start_server(testcase, plugins, extra=(), files=None):
    """twistd with ``--metrics`` on a free port: (process, SMTP port, metrics port, log path)."""
    root = os.path.abspath(testcase.mktemp())
    config = os.path.join(root, "config")
    settings = {"loglevel": "6", "plugin_dirs": FIXTURES, "rcpthosts": "example.com"}
    settings.update(files or {})
    write_config(config, plugins, settings)
    metrics_port = reserve_port(testcase)
    process, port, log = start_twistd(
        testcase, config, extra=["--metrics", "tcp:%d:interface=127.0.0.1" % metrics_port]
        + list(extra))
    return process, port, metrics_port, log


class MetricsTests(unittest.TestCase):
    """One process: each kind of event is counted once, where it happened."""

    def test_the_counts_are_what_the_sessions_did(self):
        certs = make_certs(os.path.abspath(self.mktemp()), "localhost")
        maildir = os.path.abspath(self.mktemp())
        go_on = os.path.abspath(self.mktemp())      # exists: the waiting hook answers soon
        open(go_on, "w").close()
        process, port, metrics_port, log = start_server(self, [
            "tls %s %s" % (certs.cert, certs.key), "headers", "wait_for_file queue %s" % go_on,
            "rcpt_ok", "queue/maildir %s" % maildir], extra=["--max-from-ip", "1"])
        # start_twistd's probe connected once: count from its end on
        self.assertTrue(poll_until(lambda: value(scrape(metrics_port), "connections_open") == 0, 30))
        before = scrape(metrics_port)
        self.assertEqual(value(before, "connections_total"), 1)

        def counted(samples, name, **labels):
            return value(samples, name, **labels) - value(before, name, **labels)

        client = smtplib.SMTP("127.0.0.1", port, timeout=10)
        client.ehlo("client.example")
        client.starttls(context=ssl._create_unverified_context())
        client.ehlo("client.example")
        for _ in range(2):
            self.assertEqual(client.sendmail("a@b.example", ["u@example.com"], MESSAGE), {})
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            client.sendmail("a@b.example", ["u@elsewhere.example"], MESSAGE)
        with self.assertRaises(smtplib.SMTPDataError) as refused:
            client.sendmail("a@b.example", ["u@example.com"], NO_FROM)
        self.assertEqual(refused.exception.smtp_code, 552)
        # a second client from the same address, beyond --max-from-ip 1
        with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
            self.assertTrue(second.recv(1024).startswith(b"451"))
        during = scrape(metrics_port)
        self.assertEqual(value(during, "connections_open"), 1)
        client.quit()
        # a STARTTLS whose handshake fails: plain text where the ClientHello should be
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.recv(1024)
            raw.sendall(b"EHLO x\r\n")
            self.assertIn(b"STARTTLS", raw.recv(4096))
            raw.sendall(b"STARTTLS\r\n")
            self.assertTrue(raw.recv(1024).startswith(b"220"))
            raw.sendall(b"this is not TLS\r\n" * 20)
            try:
                raw.recv(1024)      # the server's TLS alert, or its close
            except OSError:
                pass

        self.assertTrue(poll_until(
            lambda: value(scrape(metrics_port), "connections_open") == 0, 30), read_text(log))
        after = scrape(metrics_port)
        self.assertEqual(counted(after, "connections_total"), 3)
        self.assertEqual(value(after, "connections_refused_total", reason="max_from_ip"), 1)
        self.assertEqual(value(after, "transactions_total"), 4)
        self.assertEqual(value(after, "messages_total", outcome="accepted", phase="queue",
                               plugin="queue/maildir"), 2)
        self.assertEqual(value(after, "messages_total", outcome="rejected", phase="data_post",
                               plugin="headers"), 1)
        self.assertEqual(value(after, "refusals_total", outcome="rejected", phase="data_post",
                               plugin="headers"), 1)
        self.assertEqual(value(after, "refusals_total", outcome="rejected", phase="rcpt",
                               plugin="rcpt_ok"), 1)
        self.assertEqual(value(after, "tls_handshakes_total", result="ok"), 1)
        self.assertEqual(value(after, "tls_handshakes_total", result="failed"), 1)
        # hooks that answer at once and one that waits (a Deferred), per plugin and hook
        self.assertEqual(value(after, "hook_seconds_count", plugin="rcpt_ok", hook="rcpt"), 4)
        self.assertEqual(value(after, "hook_seconds_count", plugin="headers", hook="data_post"), 3)
        self.assertEqual(value(after, "hook_seconds_count", plugin="wait_for_file", hook="queue"), 2)
        self.assertGreater(value(after, "hook_seconds_sum", plugin="wait_for_file", hook="queue"), 0)
        self.assertEqual(value(after, "queue_seconds_count", backend="queue/maildir"), 2)
        self.assertEqual(value(after, "hook_seconds_bucket", plugin="rcpt_ok", hook="rcpt",
                               le="+Inf"), 4)
        # the three messages' bytes came in, inside TLS (decrypted) with the commands
        self.assertGreater(value(after, "received_bytes_total"), 2 * len(MESSAGE) + len(NO_FROM))
        # each served connection asked the PTR of 127.0.0.1: sent, or answered from the cache
        self.assertEqual(sum(counted(after, name) for name in (
            "dns_queries_total", "dns_cache_hits_total", "dns_merged_total")), 2)

    def test_no_metrics_without_the_option(self):
        root = os.path.abspath(self.mktemp())
        write_config(os.path.join(root, "config"), ["rcpt_ok"])
        metrics_port = free_port()
        process, port, log = start_twistd(self, os.path.join(root, "config"))
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.noop()
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", metrics_port), timeout=5).close()
        self.assertNotIn("Metrics on", read_text(log))

    def test_a_port_in_use_stops_start_up_naming_it(self):
        root = os.path.abspath(self.mktemp())
        write_config(os.path.join(root, "config"), ["rcpt_ok"])
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            endpoint = "tcp:%d:interface=127.0.0.1" % taken.getsockname()[1]
            argv = twistd_argv(os.path.join(root, "config"), free_port(), ["--metrics", endpoint])
            done = subprocess.run(argv, env=server_env(), capture_output=True, text=True,
                                  timeout=120)
        self.assertEqual(done.returncode, 1)
        self.assertIn("cannot listen on %s" % endpoint, done.stderr)


def connections(text):
    """Which process took each connection logged in ``text``, in order: ``w1.`` (the worker)
    or ``""`` (the twistd process)."""
    return re.findall(r"\] (w1\.)?[0-9a-f]+ Connection from", text)


class WorkersMetricsTests(unittest.TestCase):
    """--workers 2: prometheus_client's multiprocess mode, one endpoint for all processes."""

    def test_the_totals_add_up_across_workers(self):
        maildir = os.path.abspath(self.mktemp())
        # --reuseport: the kernel spreads the connections over both processes by their
        # addresses; on one shared socket, whichever process woke first took each one, and
        # on a loaded machine the same one could take all 200
        process, port, metrics_port, log = start_server(
            self, ["rcpt_ok", "queue/maildir %s" % maildir],
            extra=["--workers", "2", "--reuseport", "--max-from-ip", "0"])
        self.assertTrue(poll_until(lambda: len(child_pids(process.pid)) == 1, 30))
        self.assertTrue(poll_until(lambda: listening_sockets(port) == 2, 30))
        directory = re.search(r"values in (\S+)\)", read_text(log)).group(1)
        self.assertTrue(os.path.isdir(directory))

        def probed():
            # start_twistd's readiness probe: counted, and closed
            samples = scrape(metrics_port)
            return (value(samples, "connections_total") >= 1
                    and value(samples, "connections_open") == 0)
        self.assertTrue(poll_until(probed, 30))
        probes = value(scrape(metrics_port), "connections_total")

        def served_by_both():
            # connection ids: the parent's are hex, the worker's start with w1.
            text = read_text(log)
            ids = re.findall(r"\] (w1\.)?[0-9a-f]+(?:\.\d+)? message \S+ from", text)
            return "w1." in ids and "" in ids

        sent = 0
        while sent < 200 and not (sent >= 4 and served_by_both()):
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                self.assertEqual(client.sendmail("a@b.example", ["u@example.com"], MESSAGE), {})
            sent += 1
            poll_until(lambda: len(re.findall(r" message \S+ from", read_text(log))) >= sent, 10)
        self.assertTrue(served_by_both(), "one process served all %d connections" % sent)
        samples = scrape(metrics_port)
        self.assertEqual(value(samples, "connections_total"), probes + sent)
        self.assertEqual(value(samples, "transactions_total"), sent)
        self.assertEqual(value(samples, "messages_total", outcome="accepted", phase="queue",
                               plugin="queue/maildir"), sent)
        self.assertEqual(value(samples, "hook_seconds_count", plugin="rcpt_ok", hook="rcpt"), sent)

        # connections held open in both processes; then the worker is killed
        held = []
        self.addCleanup(lambda: [c.close() for c in held])
        base = len(connections(read_text(log)))
        while len(held) < 100 and len(set(connections(read_text(log))[base:])) < 2:
            held.append(smtplib.SMTP("127.0.0.1", port, timeout=10))
            poll_until(lambda: len(connections(read_text(log))) >= base + len(held), 10)
        self.assertEqual(len(set(connections(read_text(log))[base:])), 2)
        self.assertTrue(poll_until(
            lambda: value(scrape(metrics_port), "connections_open") == len(held), 30))
        worker = child_pids(process.pid)[0]
        os.kill(worker, 9)
        self.assertTrue(poll_until(lambda: child_pids(process.pid) not in ([], [worker]), 30))
        alive = []
        for client in held:
            try:
                client.noop()
                alive.append(client)
            except (smtplib.SMTPException, OSError):
                pass
        self.assertTrue(poll_until(
            lambda: value(scrape(metrics_port), "connections_open") == len(alive), 30),
            "open connections: %s, alive: %d" % (
                value(scrape(metrics_port), "connections_open"), len(alive)))
        # the killed worker's counts stay in the totals
        self.assertEqual(value(scrape(metrics_port), "connections_total"), probes + sent + len(held))
        self.assertLess(len(alive), len(held))
        for client in alive:
            client.quit()
        stop_process(process)
        self.assertFalse(os.path.exists(directory))
