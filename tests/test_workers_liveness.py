"""--workers: a worker that stops answering without dying (here: SIGSTOP, its reactor stops)
is found by the main process's liveness check (``--worker-timeout``), killed and started
again; with ``--reuseport`` the main process accepts on its socket meanwhile. A worker whose
hook waits long while its reactor turns is left alone, and so is one whose SIGHUP reload
blocks its reactor longer than the timeout (it gets the start allowance again).

Real ``twistd qpsmtpd-tx`` processes and raw client sockets; which process serves a
connection is read from the log (the worker's connection ids start with ``w1.``). The kill's
timing (the start allowance, SIGTERM then SIGKILL) runs on a Clock in LivenessClockTests,
with transports that only record the signals.
"""

import os
import re
import signal
import socket
import time

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial import unittest

from qpsmtpd_tx import worker_liveness
from qpsmtpd_tx.tap import Options
from qpsmtpd_tx.workers import HAVE_REUSEPORT, WorkerPool
from tests.support.harness import TEST_PLUGINS, write_config
from tests.support.processes import (child_pids, poll_until, read_text, recv_exactly,
                                      start_twistd)

#: seconds a greeting or a process start may take (generous: the machine is shared)
BOUND = 30.0
#: the --worker-timeout of these tests: short, so that they do not wait long
TIMEOUT = 2
CONNECTIONS = 20
#: connections tried to find one that the worker serves (each has about even odds)
ATTEMPTS = 60
_ACCEPTED = re.compile(r"\] (w1\.)?[0-9a-f]+ Accepted connection")
_WORKER_RELOADED = re.compile(r"worker 1: .*plugins reloaded")


def _kill(pid):
    """SIGKILL ``pid`` if it is still there: a worker left stopped would never end."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reply(sock):
    """The first 4 bytes that ``sock`` receives, or the name of what happened instead."""
    try:
        return recv_exactly(sock, 4)
    except OSError as e:
        return type(e).__name__


class HungWorkerTests(unittest.TestCase):
    def start(self, plugins=("rcpt_ok",), extra=()):
        """A twistd with one worker that has answered the check; (process, port, log,
        worker pid)."""
        self.config = write_config(os.path.abspath(self.mktemp()), list(plugins),
                                   {"loglevel": "6", "plugin_dirs": TEST_PLUGINS})
        process, port, log = start_twistd(
            self, self.config, extra=["--workers", "2", "--max-from-ip", "0",
                                 "--worker-timeout", str(TIMEOUT)] + list(extra))
        self.assertTrue(poll_until(lambda: "worker 1 ready" in read_text(log), BOUND))
        [worker] = child_pids(process.pid)
        self.addCleanup(_kill, worker)
        return process, port, log, worker

    def worker_client(self, port, log):
        """A client connection that worker 1 serves, its greeting read."""
        for _ in range(ATTEMPTS):
            before = len(_ACCEPTED.findall(read_text(log)))
            sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
            self.addCleanup(sock.close)
            self.assertEqual(sock.makefile("rb").readline()[:4], b"220 ")
            self.assertTrue(poll_until(lambda: len(_ACCEPTED.findall(read_text(log))) > before,
                                       BOUND))
            if _ACCEPTED.findall(read_text(log))[-1] == "w1.":
                sock.settimeout(BOUND)
                return sock
            sock.close()
        self.fail("worker 1 served none of %d connections" % ATTEMPTS)

    def assert_replaced(self, process, log, worker):
        self.assertRegex(read_text(log), r"worker 1 not answering for \d+ s; killing it")
        self.assertTrue(poll_until(lambda: read_text(log).count("worker 1 ready") == 2, BOUND))
        self.assertNotIn(worker, child_pids(process.pid))
        self.assertIn("worker 1 ended", read_text(log))

    def test_a_stopped_workers_share_is_served_and_it_is_replaced(self):
        if not HAVE_REUSEPORT:
            raise unittest.SkipTest("no SO_REUSEPORT on this system")
        process, port, log, worker = self.start(extra=["--reuseport"])
        os.kill(worker, signal.SIGSTOP)
        replies = []
        # one at a time: each one the kernel hands the stopped worker's socket waits for the
        # check to find it hung (before the check: for ever)
        while len(replies) < CONNECTIONS and (not replies or replies[-1] == b"220 "):
            with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
                replies.append(_reply(sock))
        self.assertEqual(replies, [b"220 "] * CONNECTIONS)
        self.assert_replaced(process, log, worker)

    def test_without_reuseport_the_stopped_workers_clients_are_let_go(self):
        # the shared socket is accepted by the main process meanwhile, but the worker's own
        # clients would wait for ever
        process, port, log, worker = self.start()
        client = self.worker_client(port, log)
        os.kill(worker, signal.SIGSTOP)
        self.assertTrue(poll_until(lambda: "worker 1 ended" in read_text(log), BOUND))
        try:
            client.sendall(b"NOOP\r\n")
        except OSError:
            pass        # already reset
        self.assertIn(_reply(client), ("ConnectionError", "ConnectionResetError"))
        self.assert_replaced(process, log, worker)

    def test_a_stopped_worker_does_not_hold_up_the_shutdown(self):
        process, port, log, worker = self.start()
        os.kill(worker, signal.SIGSTOP)
        process.send_signal(signal.SIGTERM)
        self.assertTrue(poll_until(lambda: process.poll() is not None, BOUND))
        self.assertRegex(read_text(log), r"worker 1 not answering for \d+ s; killing it")
        self.assertNotIn("starting it again", read_text(log))

    def test_a_worker_waiting_in_a_hook_is_not_killed(self):
        gate = os.path.abspath(self.mktemp())
        process, port, log, worker = self.start(["wait_for_file mail " + gate, "rcpt_ok"])
        client = self.worker_client(port, log)
        lines = client.makefile("rb")
        client.sendall(b"HELO client.example\r\n")
        self.assertEqual(lines.readline()[:4], b"250 ")
        client.sendall(b"MAIL FROM:<a@b.example>\r\n")
        self.assertTrue(poll_until(lambda: os.path.exists(gate + ".waiting"), BOUND))
        # the hook waits on a Deferred while the reactor turns: checks go on being answered
        time.sleep(3 * TIMEOUT)
        open(gate, "w").close()
        self.assertEqual(lines.readline()[:4], b"250 ")
        self.assertNotIn("not answering", read_text(log))
        self.assertEqual(child_pids(process.pid), [worker])

    def test_a_slow_reload_gets_the_start_allowance(self):
        # the worker's reload runs slow_init's init in its reactor for 3 timeouts: the
        # check must wait as it does at start-up, not kill the worker
        slow = os.path.abspath(self.mktemp())
        process, port, log, worker = self.start(["slow_init %s %d" % (slow, 3 * TIMEOUT),
                                                 "rcpt_ok"])
        open(slow, "w").close()
        with open(os.path.join(self.config, "plugins"), "w") as f:
            f.write("slow_init %s %d\nscripted queue OK new chain\nrcpt_ok\n"
                    % (slow, 3 * TIMEOUT))
        process.send_signal(signal.SIGHUP)
        self.assertTrue(poll_until(lambda: _WORKER_RELOADED.search(read_text(log))
                                   or "not answering" in read_text(log), BOUND))
        self.assertNotIn("not answering", read_text(log))
        self.assertEqual(child_pids(process.pid), [worker])
        client = self.worker_client(port, log)
        lines = client.makefile("rb")
        for command, reply in ((b"HELO client.example", b"250 "),
                               (b"MAIL FROM:<a@b.example>", b"250 "),
                               (b"RCPT TO:<me@example.com>", b"250 "),
                               (b"DATA", b"354 ")):
            client.sendall(command + b"\r\n")
            self.assertEqual(lines.readline()[:4], reply, command)
        client.sendall(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(lines.readline(), b"250 new chain\r\n")


class _Transport:
    """Records what the liveness check writes to a worker and the signals it sends."""

    def __init__(self):
        self.written = b""
        self.signals = []

    def write(self, data):
        self.written += data

    def signalProcess(self, name):
        self.signals.append(name)


class _Worker:
    """A worker's process protocol as the check sees it."""

    def __init__(self, number):
        self.number = number
        self.asked_at = None
        self.answered = False
        self.reload_allowed_until = None
        self.killing = False
        self.ended = defer.Deferred()


class _ClockPool(WorkerPool):
    """A WorkerPool on a Clock with one worker that is only recorded, never started."""

    def __init__(self):
        WorkerPool.__init__(self, 1, listening=None, worker_args=[], timeout=10)
        self.clock = Clock()
        self.served_for = []

    def _spawn(self, number):
        self.workers[number] = (_Worker(number), _Transport())
        self._started_at[number] = self.clock.seconds()

    def serve_for(self, number):
        self.served_for.append(number)


class LivenessClockTests(unittest.TestCase):
    def setUp(self):
        self.pool = _ClockPool()
        self.pool.startService()
        self.addCleanup(self.pool.liveness.stop)
        self.worker, self.transport = self.pool.workers[1]

    def run_for(self, seconds, answer):
        for _ in range(int(seconds * 10)):
            self.pool.clock.advance(0.1)
            if answer and self.worker.asked_at is not None:
                self.pool.worker_answered(self.worker)

    def test_a_worker_that_answers_is_asked_again_and_left_alone(self):
        self.run_for(120, answer=True)
        self.assertGreater(self.transport.written.count(worker_liveness.QUESTION), 20)
        self.assertEqual(self.transport.signals, [])

    def test_a_starting_worker_gets_the_start_allowance(self):
        self.run_for(worker_liveness.START_ALLOWANCE - 1, answer=False)
        self.assertEqual(self.transport.signals, [])
        self.run_for(5, answer=False)
        self.assertEqual(self.transport.signals, ["TERM"])
        self.assertEqual(self.pool.served_for, [1])

    def test_a_reloading_worker_gets_the_start_allowance_again(self):
        self.run_for(5, answer=True)
        self.pool.reload()
        self.run_for(worker_liveness.START_ALLOWANCE - 1, answer=False)
        self.assertEqual(self.transport.signals, ["HUP"])
        self.run_for(5, answer=False)
        self.assertEqual(self.transport.signals, ["HUP", "TERM"])

    def test_after_the_reload_allowance_the_timeout_counts_again(self):
        self.run_for(5, answer=True)
        self.pool.reload()
        self.run_for(worker_liveness.START_ALLOWANCE + 1, answer=True)
        self.run_for(14, answer=False)
        self.assertEqual(self.transport.signals, ["HUP", "TERM"])

    def test_term_then_kill_after_the_grace(self):
        self.run_for(5, answer=True)
        self.run_for(14, answer=False)
        self.assertEqual(self.transport.signals, ["TERM"])
        self.run_for(worker_liveness.KILL_GRACE, answer=False)
        self.assertEqual(self.transport.signals, ["TERM", "KILL"])

    def test_no_kill_after_a_stall_of_the_main_process(self):
        # its timers run before it reads the answers that came while it was busy
        self.run_for(5, answer=True)
        self.pool.clock.advance(0.1)        # a question goes out at the next tick …
        while self.worker.asked_at is None:
            self.pool.clock.advance(0.1)
        self.pool.clock.advance(30)         # … and the main process is busy for 30 s
        self.pool.worker_answered(self.worker)     # the answer, read only now
        self.run_for(30, answer=True)
        self.assertEqual(self.transport.signals, [])

    def test_no_kill_for_a_worker_that_ended_after_the_term(self):
        self.run_for(5, answer=True)
        self.run_for(14, answer=False)
        self.worker.ended.callback(None)
        self.run_for(worker_liveness.KILL_GRACE, answer=False)
        self.assertEqual(self.transport.signals, ["TERM"])


class OptionTests(unittest.TestCase):
    def parse(self, *argv):
        config = self.mktemp()
        os.makedirs(config)
        options = Options()
        options.parseOptions(["--config", config] + list(argv))
        return options

    def test_default_and_value(self):
        self.assertEqual(self.parse()["worker-timeout"], worker_liveness.DEFAULT_TIMEOUT)
        self.assertEqual(self.parse("--worker-timeout", "0")["worker-timeout"], 0)

    def test_bad_values_are_refused(self):
        for bad in ("-1", "ten"):
            with self.assertRaises(usage.UsageError):
                self.parse("--worker-timeout", bad)
