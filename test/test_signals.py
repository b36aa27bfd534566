"""Signals and restarts of a real ``twistd qpsmtpd-tx``: SIGHUP reloads the plugins, and a
restart removes the spool files of a killed server."""

import os
import signal
import smtplib
import subprocess
import time

from twisted.trial import unittest

from test.support.harness import TEST_PLUGINS, write_config
from test.support.processes import start_twistd, stop_process

#: how long a test waits for something the server does on its own
WAIT = 20.0

MESSAGE = b"From: a@b.example\r\nTo: u@example.com\r\nSubject: drain\r\n\r\nbody\r\n"


def wait_until(condition, what, timeout=WAIT):
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.02)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())


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
        return read(self.events).splitlines()


class ReloadTests(SignalTestCase):
    """SIGHUP builds a new plugin chain for new sessions; sessions in progress keep theirs."""

    def test_sighup_swaps_the_chain_and_keeps_it_on_errors(self):
        self.write_config(["lifecycle %s one" % self.events])
        self.start()
        old = self.client()

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

        stop_process(self.process)
        self.assertEqual(self.event_lines()[5:], ["stop two"])

    def test_sighup_reloads_every_worker(self):
        self.write_config(["lifecycle %s one" % self.events])
        self.start(extra=["--workers", "3"])
        wait_until(lambda: len(children(self.process.pid)) == 2, "two workers")
        # each worker has set up its signal handlers once it has served a client
        for _ in range(500):
            if "] w1." in read(self.log) and "] w2." in read(self.log):
                break
            self.client().quit()
        self.assertIn("] w2.", read(self.log))
        self.assertIn("] w1.", read(self.log))

        self.write_plugins("lifecycle %s two" % self.events)
        self.process.send_signal(signal.SIGHUP)
        wait_until(lambda: self.log_count("plugins reloaded") == 3, "a reload in all 3 processes")
        for _ in range(12):
            self.assertEqual(self.client().mail("a@b.example"), (550, b"chain two"))
        # the old chains stop once their last session (maybe still closing) has ended
        expected = ["init one"] * 3 + ["init two"] * 3 + ["stop one"] * 3
        wait_until(lambda: sorted(self.event_lines()) == expected, "every old chain to stop")


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
