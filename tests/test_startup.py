"""Start-up of a real ``twistd qpsmtpd-tx``, in the foreground and as a daemon: what the operator sees.

Every failure must end the process with a non-zero status and clear lines on the terminal
(standard error of the twistd command), in daemon mode too, and leave nothing running.
"""

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time

from twisted.trial import unittest

from qpsmtpd_tx.startup import privilege_problem, switches_user
from tests.support.harness import write_config
from tests.support.processes import CHECKOUT, free_port, reserve_port, server_env, twistd_argv

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def pids_with_argument(argument, not_children_of=None):
    """PIDs of the processes whose command line has ``argument`` (a unique temp path); with
    ``not_children_of``, leaving out that process's children (a child forked by the daemon,
    its delivery child, has the daemon's command line until it has exec'ed its own)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                words = f.read().split(b"\0")
            with open("/proc/%s/stat" % entry, "rb") as f:
                state, parent = f.read().rsplit(b")", 1)[1].split()[:2]
        except OSError:
            continue
        if not_children_of is not None and int(parent) == not_children_of:
            continue
        if argument.encode() in words and state != b"Z":
            found.append(int(entry))
    return found


def assert_nothing_left(testcase, argument, timeout=20.0):
    """Wait for every process started with ``argument`` to end; kill (by PID) and fail if not."""
    deadline = time.monotonic() + timeout
    while pids_with_argument(argument) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = pids_with_argument(argument)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    testcase.assertEqual(left, [], "processes left running")


class StartupTestCase(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "config")
        self.pidfile = os.path.join(self.dir, "twistd.pid")
        self.logfile = os.path.join(self.dir, "twistd.log")

    def write_config(self, plugins, files=None):
        write_config(self.config, plugins, files)

    def daemon_argv(self, port, extra=()):
        return [TWISTD, "--pidfile", self.pidfile, "--logfile", self.logfile, "qpsmtpd-tx",
                "--config", self.config, "--listen", "tcp:%d:interface=127.0.0.1" % port] + list(extra)

    def run_twistd(self, argv):
        """Run a twistd command to its end (a daemon's starting command returns once it runs)."""
        self.addCleanup(self.stop_daemon)
        return subprocess.run(argv, cwd=self.dir, env=server_env(), capture_output=True,
                              timeout=60)

    def stop_daemon(self):
        """Stop a daemon this test started (by the PID in its pid file), and wait for its end."""
        try:
            with open(self.pidfile) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        assert_nothing_left(self, self.config)

    def assertFailedClearly(self, result, *expected):
        """Exit status 1, each of ``expected`` on standard error, no traceback anywhere."""
        err = result.stderr.decode(errors="replace")
        self.assertEqual(result.returncode, 1, err)
        for text in expected:
            self.assertIn(text, err)
        self.assertNotIn("Traceback", err + result.stdout.decode(errors="replace"))
        return err


class PortInUseTests(StartupTestCase):
    """A port that cannot be bound ends the start with status 1 and one clear line."""

    def setUp(self):
        StartupTestCase.setUp(self)
        self.write_config(["rcpt_ok", "queue/maildir %s" % os.path.join(self.dir, "maildir")])
        self.blocker = socket.socket()
        self.addCleanup(self.blocker.close)
        self.blocker.bind(("127.0.0.1", 0))
        self.blocker.listen(1)
        self.port = self.blocker.getsockname()[1]

    def test_foreground(self):
        result = self.run_twistd(twistd_argv(self.config, self.port))
        err = self.assertFailedClearly(
            result, "qpsmtpd-tx: cannot start: cannot listen on tcp:%d:interface=127.0.0.1: " % self.port,
            "Address already in use")
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        assert_nothing_left(self, self.config)

    def test_daemon(self):
        result = self.run_twistd(self.daemon_argv(self.port))
        self.assertFailedClearly(result, "Address already in use")
        self.assertFalse(os.path.exists(self.pidfile))
        assert_nothing_left(self, self.config)
        with open(self.logfile) as f:
            self.assertIn("Address already in use", f.read())


class DaemonTests(StartupTestCase):
    """``twistd`` without ``-n``: the starting command reports every start-up error and returns."""

    def test_bad_plugin_argument(self):
        self.write_config(["rcpt_ok extra"])
        result = self.run_twistd(self.daemon_argv(free_port()))
        self.assertFailedClearly(result, "qpsmtpd-tx: cannot start: %s:1: plugin rcpt_ok: takes no "
                                 "arguments" % os.path.join(self.config, "plugins"))
        self.assertFalse(os.path.exists(self.pidfile))
        assert_nothing_left(self, self.config)

    def test_plugin_failure_before_binding(self):
        # A Maildir that cannot be created is only found when the plugins really start, after
        # twistd has daemonized. Without a user switch that is before the port is bound: the
        # (blocked) port is not even tried.
        blocker = os.path.join(self.dir, "a-file")
        open(blocker, "w").close()
        self.write_config(["rcpt_ok", "queue/maildir %s" % os.path.join(blocker, "maildir")])
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            result = self.run_twistd(self.daemon_argv(busy.getsockname()[1]))
        err = self.assertFailedClearly(
            result, "qpsmtpd-tx: cannot start: %s:2: plugin queue/maildir: cannot create %s/maildir"
            % (os.path.join(self.config, "plugins"), blocker))
        self.assertIn("An error has occurred", err)     # twistd's own line, after ours
        self.assertNotIn("Address already in use", err)
        self.assertFalse(os.path.exists(self.pidfile))
        assert_nothing_left(self, self.config)
        with open(self.logfile) as f:
            self.assertIn("cannot create %s/maildir" % blocker, f.read())

    def test_failure_after_switching_user(self):
        # With --uid the plugins start after the switch (their files belong to that user),
        # so after the port is bound: the failure must still reach the terminal.
        if os.geteuid() != 0:
            raise unittest.SkipTest("switching users needs root")
        self.write_config(["rcpt_ok", "queue/maildir %s" % os.path.join(self.dir, "maildir")],
                          {"spool_dir": "/tmp"})
        os.chmod(os.path.dirname(self.dir), 0o755)   # trial's temp dir: let nobody read the config
        port = free_port()
        result = self.run_twistd([TWISTD, "--uid", "nobody"] + self.daemon_argv(port)[1:])
        self.assertFailedClearly(result, "plugin queue/maildir: cannot create %s/maildir: "
                                 "Permission denied" % self.dir)
        assert_nothing_left(self, self.config)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

    def test_successful_start_returns_and_serves(self):
        maildir = os.path.join(self.dir, "maildir")
        self.write_config(["rcpt_ok", "queue/maildir %s" % maildir])
        port = reserve_port(self)      # held until the test's end; the daemon listens on it
        # capture_output: the command must return although the daemon keeps running (it must
        # not hold on to our standard error)
        result = self.run_twistd(self.daemon_argv(port))
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        with open(self.pidfile) as f:
            pid = int(f.read())
        self.assertEqual(pids_with_argument(self.config, not_children_of=pid), [pid])
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            self.assertEqual(client.sendmail("a@b.example", ["u@example.com"], b"Subject: x\r\n\r\nhi\r\n"), {})
        self.assertEqual(len(os.listdir(os.path.join(maildir, "new"))), 1)


class AllProblemsTests(StartupTestCase):
    """One start lists every problem of the config, each with its file and line."""

    def test_every_problem_in_one_run(self):
        self.write_config(["no_such_plugin", "rcpt_ok extra", "queue/maildir a b c d",
                           "another_missing"])
        result = subprocess.run(twistd_argv(self.config, free_port()), env=server_env(),
                                capture_output=True, timeout=60, cwd=CHECKOUT)
        plugins = os.path.join(self.config, "plugins")
        err = self.assertFailedClearly(
            result, "qpsmtpd-tx: cannot start: 4 problems:\n",
            plugins + ":1: plugin no_such_plugin: plugin not found",
            plugins + ":2: plugin rcpt_ok: takes no arguments",
            plugins + ":3: plugin queue/maildir: usage",
            plugins + ":4: plugin another_missing: plugin not found")
        self.assertEqual(len(err.strip().splitlines()), 5, err)


class OptionTests(StartupTestCase):
    """Mistaken options fail loudly instead of meaning something else."""

    def test_c_is_refused(self):
        self.write_config(["rcpt_ok"])
        result = self.run_twistd([TWISTD, "-n", "--pidfile=", "qpsmtpd-tx", "-c", "20",
                           "--listen", "tcp:%d:interface=127.0.0.1" % free_port()])
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"-c is not an option of twistd qpsmtpd-tx: write --config DIR",
                      result.stdout + result.stderr)

    def test_missing_config_directory(self):
        result = self.run_twistd(twistd_argv(os.path.join(self.dir, "nowhere"), free_port()))
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"--config: config directory %s: no such directory"
                      % os.path.join(self.dir, "nowhere").encode(), result.stdout + result.stderr)


class PrivilegeTests(unittest.TestCase):
    """--uid/--gid that this process cannot apply are refused before twistd daemonizes.

    The tests run as root here, and a non-root Python cannot run (the interpreter lives under
    /root): the check is called with the current uid/gid given instead of taken from the process.
    """

    def test_switches_user(self):
        self.assertFalse(switches_user({"uid": None, "gid": None}, 0, 0))
        self.assertFalse(switches_user({"uid": 0, "gid": 0}, 0, 0))
        self.assertTrue(switches_user({"uid": 65534, "gid": None}, 0, 0))
        self.assertTrue(switches_user({"uid": None, "gid": 65534}, 0, 0))

    def test_only_root_switches(self):
        self.assertIsNone(privilege_problem({"uid": 65534, "gid": 65534}, 0, 0))
        self.assertIsNone(privilege_problem({"uid": None, "gid": None}, 1000, 1000))
        self.assertIsNone(privilege_problem({"uid": 1000, "gid": 1000}, 1000, 1000))
        self.assertEqual(privilege_problem({"uid": 65534, "gid": None}, 1000, 1000),
                         "--uid/--gid: only root can switch to uid 65534, gid None "
                         "(this process runs as uid 1000)")
        self.assertIsNotNone(privilege_problem({"uid": None, "gid": 0}, 1000, 1000))
