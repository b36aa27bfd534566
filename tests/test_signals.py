"""Signals and restarts of a real ``twistd qpsmtpd-tx``: SIGHUP reloads the plugins, SIGTERM
drains the sessions, and a restart removes the spool files of a killed server."""

import os
import signal
import smtplib
import socket

from twisted.internet.task import Clock
from twisted.trial import unittest

from tests.support.harness import TEST_PLUGINS, maildir_messages, write_config
from tests.support.processes import (child_pids as children, poll_until, read_text as read,
                                      start_twistd, stop_process)
from tests.support.server import connect, start_server

#: how long a test waits for something the server does on its own
WAIT = 20.0

SHUTDOWN_TEXT = "mx.example.org Service shutting down, try again later"
MESSAGE = b"From: a@b.example\r\nTo: u@example.com\r\nSubject: drain\r\n\r\nbody\r\n"


def wait_until(condition, what, timeout=WAIT):
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    if not poll_until(condition, timeout, 0.02):
        raise AssertionError("timed out waiting for %s" % what)


class SignalTestCase(unittest.TestCase):
    """A config dir that finds the test plugins; helpers to start and talk to twistd."""

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.config = os.path.join(self.root, "config")
        self.events = os.path.join(self.root, "events")

    def write_config(self, plugins, **files):
        files.setdefault("plugin_dirs", TEST_PLUGINS)
        files.setdefault("loglevel", "6")
        write_config(self.config, plugins, files)

    def write_plugins(self, *lines):
        with open(os.path.join(self.config, "plugins"), "w") as f:
            f.write("".join(line + "\n" for line in lines))

    def start(self, extra=()):
        self.process, self.port, self.log = start_twistd(self, self.config, extra=extra)

    def client(self):
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=WAIT)
        self.addCleanup(client.close)
        self.assertEqual(client.ehlo("client.example")[0], 250)
        return client

    def log_count(self, text):
        return read(self.log).count(text)

    def event_lines(self):
        return read(self.events).splitlines()[self._forgotten:]

    _forgotten = 0

    def forget_events(self, count=None):
        """From now on, event_lines() leaves out its first ``count`` lines (default: all)."""
        self._forgotten += len(self.event_lines()) if count is None else count


class ReloadTests(SignalTestCase):
    """SIGHUP builds a new plugin chain for new sessions; sessions in progress keep theirs."""

    def test_sighup_swaps_the_chain_and_keeps_it_on_errors(self):
        self.write_config(["lifecycle %s one" % self.events])
        self.start()
        old = self.client()
        # the start-up check (check-only mode) initialised and stopped the plugins once
        self.assertEqual(self.event_lines(), ["init one", "stop one", "init one"])
        self.forget_events(2)

        self.write_plugins("lifecycle %s two" % self.events)
        self.process.send_signal(signal.SIGHUP)
        wait_until(lambda: self.log_count("plugins reloaded") == 1, "the reload")
        self.assertEqual(self.client().mail("a@b.example"), (550, b"chain two"))
        self.assertEqual(old.mail("a@b.example"), (550, b"chain one"))   # started before
        self.assertEqual(self.event_lines(), ["init one", "init two"])
        old.quit()
        wait_until(lambda: "stop one" in self.event_lines(), "the old chain's stop()")
        self.assertEqual(self.event_lines(), ["init one", "init two", "stop one"])

        # a broken file: the chain in use stays, the half-built one is stopped
        self.write_plugins("lifecycle %s three" % self.events, "no_such_plugin")
        self.process.send_signal(signal.SIGHUP)
        wait_until(lambda: self.log_count("reload failed") == 1, "the failed reload")
        self.assertIn("reload failed, keeping the plugins in use: %s:2: plugin no_such_plugin: "
                      "plugin not found" % os.path.join(self.config, "plugins"), read(self.log))
        self.assertEqual(self.client().mail("a@b.example"), (550, b"chain two"))
        self.assertEqual(self.event_lines()[3:], ["init three", "stop three"])

        self.assertEqual(stop_process(self.process), 0)
        self.assertEqual(self.event_lines()[5:], ["stop two"])

    def test_sighup_closes_the_old_logging_files(self):
        """The replaced logging/file instances close their files (no descriptor per reload)."""
        log_file = os.path.join(self.root, "q.log")
        self.write_config(["rcpt_ok"], logging="logging/file loglevel LOGINFO %s" % log_file)
        self.start()

        def open_descriptors():
            fd_dir = "/proc/%d/fd" % self.process.pid
            return sum(1 for fd in os.listdir(fd_dir)
                       if os.path.realpath(os.path.join(fd_dir, fd)) == log_file)

        for reloads in range(1, 4):
            self.client().quit()
            wait_until(lambda: "221 " in read(log_file), "a line in the log file")
            self.process.send_signal(signal.SIGHUP)
            wait_until(lambda: read(log_file).count("plugins reloaded") == reloads, "the reload")
        self.client().quit()
        wait_until(lambda: open_descriptors() == 1, "a single open log file")

    def test_a_session_logs_through_its_own_chain(self):
        one, two = os.path.join(self.root, "one.log"), os.path.join(self.root, "two.log")
        self.write_config(["rcpt_ok"], logging="logging/file loglevel LOGINFO %s" % one)
        self.start()
        old = self.client()
        with open(os.path.join(self.config, "logging"), "w") as f:
            f.write("logging/file loglevel LOGINFO %s\n" % two)
        self.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "plugins reloaded" in read(two), "the reload")
        self.assertEqual(old.docmd("NOOP", "old-session")[0], 250)
        self.assertEqual(self.client().docmd("NOOP", "new-session")[0], 250)
        old.quit()
        wait_until(lambda: "NOOP new-session" in read(two), "the new session's line")
        wait_until(lambda: "NOOP old-session" in read(one), "the old session's line")
        self.assertNotIn("old-session", read(two))
        self.assertNotIn("new-session", read(one))

    def test_sighup_reloads_every_worker(self):
        self.write_config(["lifecycle %s one" % self.events])
        # twelve clients stay open from 127.0.0.1: no per-IP limit
        self.start(extra=["--workers", "3", "--max-from-ip", "0"])
        # a worker says so once its signal handlers are in place
        wait_until(lambda: self.log_count("[qpsmtpd_tx.worker] serving") == 2, "two workers")
        # the start-up checks (check-only mode) initialised and stopped the plugins
        checks = self.event_lines().count("stop one")
        self.assertGreaterEqual(checks, 1)
        self.assertEqual(sorted(self.event_lines()), ["init one"] * (3 + checks) + ["stop one"] * checks)
        self.forget_events()   # the three chains in use are initialised: from here, what changes

        self.write_plugins("lifecycle %s two" % self.events)
        self.process.send_signal(signal.SIGHUP)
        wait_until(lambda: self.log_count("plugins reloaded") == 3, "a reload in all 3 processes")
        for _ in range(12):
            self.assertEqual(self.client().mail("a@b.example"), (550, b"chain two"))
        # the old chains stop once their last session (maybe still closing) has ended
        expected = ["init two"] * 3 + ["stop one"] * 3
        wait_until(lambda: sorted(self.event_lines()) == expected, "every old chain to stop")


class DrainTests(SignalTestCase):
    """SIGTERM: stop accepting, finish the transactions in progress, 421 to the others, exit 0."""

    def setUp(self):
        SignalTestCase.setUp(self)
        self.maildir = os.path.join(self.root, "maildir")
        self.gate = os.path.join(self.root, "go")
        self.write_config(["rcpt_ok", "wait_for_file queue %s" % self.gate,
                           "queue/maildir %s" % self.maildir], shutdown_timeout="60")

    def start_delivery(self):
        """A client whose message has been sent up to the final dot; the queue hook waits."""
        client = self.client()
        self.assertEqual(client.mail("a@b.example")[0], 250)
        self.assertEqual(client.rcpt("u@example.com")[0], 250)
        self.assertEqual(client.docmd("DATA")[0], 354)
        client.send(MESSAGE + b".\r\n")
        wait_until(lambda: os.path.exists(self.gate + ".waiting"), "the delivery to start")
        return client

    def connection_refused(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT) as s:
                greeting = s.makefile("rb").readline()
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:
            return False   # in the backlog when the socket closed
        # accepted before the socket closed: told to go away, never greeted
        if greeting:
            self.assertTrue(greeting.startswith(b"421 mx.example.org Service shutting down"), greeting)
        return False

    def test_sigterm_finishes_the_delivery_in_flight(self):
        self.start()
        busy = self.start_delivery()
        idle = self.client()
        self.process.send_signal(signal.SIGTERM)

        self.assertEqual(idle.getreply(), (421, SHUTDOWN_TEXT.encode()))
        wait_until(self.connection_refused, "the listening socket to close")
        self.assertIsNone(self.process.poll())          # still delivering
        self.assertEqual(maildir_messages(self.maildir), [])

        open(self.gate, "w").close()
        code, text = busy.getreply()
        self.assertEqual(code, 250, text)
        self.assertEqual(busy.getreply(), (421, SHUTDOWN_TEXT.encode()))
        self.assertEqual(self.process.wait(WAIT), 0)
        delivered = maildir_messages(self.maildir)
        self.assertEqual(len(delivered), 1)
        self.assertTrue(delivered[0].endswith(b"Subject: drain\n\nbody\n"), delivered[0])

    def test_sigterm_with_workers(self):
        """Each worker drains too: the master exits 0 once all have ended."""
        self.start(extra=["--workers", "2"])
        wait_until(lambda: self.log_count("[qpsmtpd_tx.worker] serving") == 1, "the worker")
        # while the main process is stopped, only the worker accepts
        self.process.send_signal(signal.SIGSTOP)
        try:
            clients = [self.client()]
        finally:
            self.process.send_signal(signal.SIGCONT)
        clients += [self.client() for _ in range(3)]
        workers = children(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        for client in clients:
            self.assertEqual(client.getreply(), (421, SHUTDOWN_TEXT.encode()))
        self.assertEqual(self.process.wait(WAIT), 0)
        self.assertFalse([p for p in workers if os.path.exists("/proc/%d" % p)])
        # The worker's lines reach the log when the main process has read them from the
        # worker's pipe, which it may not have done yet when the worker's 421s arrive; by
        # its exit it has read them all (a worker has ended once its pipes are closed).
        self.assertIn("worker 1: [qpsmtpd_tx] w1.", read(self.log))

    def test_drain_gives_up_after_shutdown_timeout(self):
        """A transaction that does not end within shutdown_timeout is cut; the process exits 0."""
        self.write_config(["rcpt_ok", "wait_for_file queue %s" % self.gate,
                           "queue/maildir %s" % self.maildir], shutdown_timeout="1")
        self.start()
        busy = self.start_delivery()
        self.process.send_signal(signal.SIGTERM)
        self.assertEqual(self.process.wait(WAIT), 0)
        self.assertRaises(smtplib.SMTPServerDisconnected, busy.getreply)
        self.assertIn("1 sessions still busy after 1 s; closing them", read(self.log))
        self.assertEqual(maildir_messages(self.maildir), [])


class SpoolCleanupTests(SignalTestCase):
    """A restart removes the spool files a killed server left, and nothing else."""

    def test_restart_removes_a_killed_servers_spool_files(self):
        spool = os.path.join(self.root, "spool")
        self.write_config(["rcpt_ok", "queue/maildir %s" % os.path.join(self.root, "maildir")],
                          spool_dir=spool, size_threshold="1000")
        self.start()
        client = self.client()
        client.mail("a@b.example")
        client.rcpt("u@example.com")
        self.assertEqual(client.docmd("DATA")[0], 354)
        client.send(MESSAGE + b"x" * 998 + b"\r\n" * 2000)        # no final dot: in the middle
        wait_until(lambda: os.listdir(spool), "a spool file")
        self.process.kill()
        self.process.wait()
        left = os.listdir(spool)
        self.assertEqual(len(left), 1)
        foreign = ["notes.txt", "12345.1.abcdefgh", "qpsmtpd-tx.x.1.abc"]
        # a live process's file, as a sibling worker's would be
        live = "qpsmtpd-tx.%d.1.abcdefgh" % os.getpid()
        for name in foreign + [live]:
            open(os.path.join(spool, name), "w").close()

        self.start()
        self.assertEqual(sorted(os.listdir(spool)), sorted(foreign + [live]))
        self.assertIn("removed 1 spool files of stopped servers from %s: %s" % (spool, left[0]),
                      read(self.log))


class DrainSessionTests(unittest.TestCase):
    """SMTPServer.drain on a server in this process, over real loopback sockets."""

    async def test_transaction_ends_before_the_421(self):
        server, port = start_server(self, ["rcpt_ok"])
        idle = await connect(self, port)
        busy = await connect(self, port)
        await busy.command("EHLO c.example")
        self.assertEqual((await busy.command("MAIL FROM:<a@b.example>"))[0], 250)
        drained = server.drain()
        self.assertEqual(await idle.reply(), (421, [SHUTDOWN_TEXT]))
        await idle.wait_closed()
        # inside a transaction: commands are still answered until it ends
        self.assertEqual((await busy.command("RCPT TO:<u@example.com>"))[0], 250)
        self.assertFalse(drained.called)
        self.assertEqual((await busy.command("RSET"))[0], 250)
        self.assertEqual(await busy.reply(), (421, [SHUTDOWN_TEXT]))
        await busy.wait_closed()
        await drained

    async def test_new_client_while_draining_is_not_served(self):
        server, port = start_server(self, ["rcpt_ok"])
        server.drain()
        client = await connect(self, port)
        self.assertEqual(client.greeting, (421, [SHUTDOWN_TEXT]))
        await client.wait_closed()

    async def test_sessions_are_cut_after_shutdown_timeout(self):
        server, port = start_server(self, ["rcpt_ok"], {"shutdown_timeout": "7"})
        busy = await connect(self, port)
        await busy.command("EHLO c.example")
        await busy.command("MAIL FROM:<a@b.example>")
        clock = Clock()
        drained = server.drain(clock=clock)
        clock.advance(6.9)
        self.assertFalse(drained.called)
        clock.advance(0.1)
        self.assertTrue(drained.called)
        await busy.wait_closed()
