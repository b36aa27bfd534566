"""The Maildir syncer (qpsmtpd_tx.syncer) and its delivery child (qpsmtpd_tx.maildir_child):
real child processes, real files. A delivery is reported only after its file and its
directory were fsynced; the deliveries of one reactor turn travel together, and what piles up
while the child is busy becomes its next batch; a child that dies fails what it had not
answered, and the next delivery starts a new one.
"""

import os
import signal
import subprocess
import sys

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from qpsmtpd_tx.codes import LOGERROR
from qpsmtpd_tx.maildir import MaildirError, make_maildir
from qpsmtpd_tx.maildir_frames import OK, decode_replies, encode_request
from qpsmtpd_tx.syncer import Syncer, child_problem
from tests.support.harness import eventually

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def next_turn():
    return deferLater(reactor, 0, lambda: None)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class SyncerTests(unittest.TestCase):
    def setUp(self):
        self.maildir = self.mktemp()
        make_maildir(self.maildir, 0o700)
        self.syncer = Syncer()
        self.logged = []
        self.syncer.log = lambda level, message: self.logged.append((level, message))
        self.addCleanup(self.syncer.close)

    def deliver(self, text, maildir=None):
        return self.syncer.deliver(maildir or self.maildir, 0o700,
                                   [b"Subject: %s\n\n" % text.encode(), b"body\n"])

    def listing(self, sub):
        return sorted(os.listdir(os.path.join(self.maildir, sub)))

    def content(self, name):
        with open(os.path.join(self.maildir, "new", name), "rb") as f:
            return f.read()

    def child_pid(self):
        return self.syncer._child.transport.pid

    async def test_deliveries_of_one_turn_make_one_batch(self):
        ds = [self.deliver("m%d" % n) for n in range(20)]
        names = await defer.gatherResults(ds)
        self.assertEqual(self.listing("new"), sorted(names))
        self.assertEqual(len(set(names)), 20)
        self.assertEqual(self.listing("tmp"), [])
        self.assertEqual(self.content(names[7]), b"Subject: m7\n\nbody\n")
        self.assertEqual((self.syncer.started, self.syncer.batches, self.syncer.files),
                         (1, 1, 20))
        self.assertNotEqual(self.child_pid(), os.getpid())

    async def test_deliveries_waiting_for_a_busy_child_make_its_next_batch(self):
        await self.deliver("started")
        pid = self.child_pid()
        os.kill(pid, signal.SIGSTOP)      # stands for a child waiting on a slow disk
        self.addCleanup(lambda: alive(pid) and os.kill(pid, signal.SIGCONT))
        ds = []
        for turn in range(5):
            ds += [self.deliver("t%d-%d" % (turn, n)) for n in range(2)]
            await next_turn()
        self.assertFalse(any(d.called for d in ds))
        os.kill(pid, signal.SIGCONT)
        names = await defer.gatherResults(ds)
        self.assertEqual(len(self.listing("new")), 11)
        self.assertEqual(self.content(names[9]), b"Subject: t4-1\n\nbody\n")
        self.assertEqual((self.syncer.batches, self.syncer.files), (2, 11))

    async def test_a_failed_delivery_fails_alone(self):
        not_a_dir = os.path.join(self.maildir, "cur", "file")
        open(not_a_dir, "w").close()
        good1 = self.deliver("good1")
        bad = self.deliver("bad", maildir=os.path.join(not_a_dir, "maildir"))
        good2 = self.deliver("good2")
        with self.assertRaises(OSError) as caught:
            await bad
        self.assertIn(caught.exception.strerror, ("Not a directory", "File exists"))
        self.assertIn(not_a_dir, str(caught.exception))
        self.assertEqual(self.listing("new"), sorted([await good1, await good2]))
        self.assertEqual(self.listing("tmp"), [])
        self.assertEqual(self.syncer.batches, 1)

    async def test_killed_child_fails_what_it_had_and_a_new_one_starts(self):
        await self.deliver("started")
        pid = self.child_pid()
        os.kill(pid, signal.SIGSTOP)
        ds = [self.deliver("m%d" % n) for n in range(3)]
        await next_turn()                 # sent to the stopped child
        os.kill(pid, signal.SIGKILL)
        for d in ds:
            with self.assertRaises(MaildirError) as caught:
                await d
            self.assertIn("delivery child ended", str(caught.exception))
            self.assertIn("signal 9", str(caught.exception))
        [(level, message)] = self.logged
        self.assertEqual(level, LOGERROR)
        self.assertIn("3 deliveries failed", message)
        name = await self.deliver("after")
        self.assertEqual(self.syncer.started, 2)
        self.assertNotEqual(self.child_pid(), pid)
        self.assertEqual(self.content(name), b"Subject: after\n\nbody\n")
        self.assertEqual(len(self.listing("new")), 2)

    async def test_close_ends_the_child_and_the_next_delivery_starts_one(self):
        await self.deliver("one")
        pid = self.child_pid()
        await self.syncer.close()
        self.assertFalse(alive(pid))      # exited, and reaped
        self.assertEqual(self.logged, [])
        await self.deliver("two")
        self.assertEqual(self.syncer.started, 2)

    async def test_reactor_shutdown_closes_the_child(self):
        # The real reactor, except that its shutdown triggers are recorded, not fired (they
        # would stop the test run): the one the syncer registers is then called by hand.
        triggers = []

        class Recording:
            def __getattr__(self, name):
                return getattr(reactor, name)

            def addSystemEventTrigger(self, phase, event, f, *args):
                triggers.append((phase, event, f))

        self.syncer = Syncer(reactor=Recording())
        self.syncer.log = lambda level, message: self.logged.append((level, message))
        self.addCleanup(self.syncer.close)
        await self.deliver("one")
        pid = self.child_pid()
        [(phase, event, close)] = triggers
        self.assertEqual((phase, event), ("during", "shutdown"))
        close()
        await eventually(lambda: not alive(pid))
        self.assertEqual(self.logged, [])
        await self.deliver("two")
        self.assertEqual(len(triggers), 1)     # registered once, not per child

    async def test_child_ignores_sigint(self):
        await self.deliver("one")
        pid = self.child_pid()
        os.kill(pid, signal.SIGINT)       # what a ^C in the server's terminal sends
        await self.deliver("two")
        self.assertEqual((self.syncer.started, self.child_pid()), (1, pid))

    async def test_child_that_cannot_start_fails_the_deliveries(self):
        self.syncer._argv = [sys.executable, "-c", "import sys; sys.exit('no way')"]
        with self.assertRaises(MaildirError) as caught:
            await self.deliver("x")
        self.assertIn("exit code 1", str(caught.exception))
        await eventually(lambda: len(self.logged) == 2)
        self.assertEqual([level for level, _ in self.logged], [LOGERROR, LOGERROR])
        self.assertIn("maildir delivery child: no way", [m for _, m in self.logged])
        self.assertEqual(self.listing("new"), [])

    async def test_child_runs_the_servers_package_whatever_the_current_directory(self):
        # ``python -m`` looks in the current directory first: another checkout there must
        # not be what the child runs.
        other = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(other, "qpsmtpd_tx"))
        for name, text in (("__init__.py", ""), ("maildir_child.py", "raise SystemExit(3)")):
            with open(os.path.join(other, "qpsmtpd_tx", name), "w") as f:
                f.write(text)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(other)
        name = await self.deliver("x", maildir=os.path.relpath(self.maildir))
        self.assertEqual(self.content(name), b"Subject: x\n\nbody\n")

    def test_child_finishes_what_it_read_and_exits_at_end_of_input(self):
        # The server's end of the pipe closes (shutdown, or the server killed): requests already
        # written are delivered, then the child exits by itself.
        requests = b"".join(b"".join(encode_request(n, 0o700, os.fsencode(self.maildir),
                                                    [b"m%d\n" % n]))
                            for n in range(1, 6))
        env = dict(os.environ, PYTHONPATH=ROOT)
        done = subprocess.run([sys.executable, "-m", "qpsmtpd_tx.maildir_child"], input=requests,
                              capture_output=True, env=env, timeout=60)
        self.assertEqual((done.returncode, done.stderr), (0, b""))
        replies, used = decode_replies(done.stdout)
        self.assertEqual(used, len(done.stdout))
        self.assertEqual([(r[0], r[1]) for r in replies], [(n, OK) for n in range(1, 6)])
        self.assertEqual(self.listing("new"), sorted(r[4] for r in replies))


class ChildProblemTests(unittest.TestCase):
    """Whether the delivery child can run as this user (else queue/maildir uses threads)."""

    def test_our_interpreter_runs_it(self):
        self.assertIsNone(child_problem())

    def test_an_interpreter_we_may_not_run(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(path, 0o644)
        self.assertEqual(child_problem(path),
                         "%s is not executable by uid %d" % (path, os.geteuid()))


class StartTests(unittest.TestCase):
    """Syncer.start: a child ready before the first delivery, which then uses it."""

    async def test_started_child_takes_the_deliveries(self):
        maildir = self.mktemp()
        make_maildir(maildir, 0o700)
        syncer = Syncer()
        self.addCleanup(syncer.close)
        child = syncer.start()
        self.assertIs(syncer.start(), child)          # one at a time
        name = await syncer.deliver(maildir, 0o700, [b"Subject: x\n\nbody\n"])
        self.assertIn(".P%dM" % child.transport.pid, name)
        self.assertEqual(syncer.started, 1)


class CloseWithinTests(unittest.TestCase):
    """Syncer.close_within: a stopping server waits for its child's exit, but not forever."""

    async def test_fires_when_the_child_has_exited(self):
        syncer = Syncer()
        child = syncer.start()
        pid = child.transport.pid
        await syncer.close_within(60)
        self.assertTrue(child.ended)
        self.assertFalse(alive(pid))                 # reaped by this process: not even a zombie

    async def test_gives_up_on_a_stuck_child(self):
        syncer = Syncer()
        child = syncer.start()
        pid = child.transport.pid
        os.kill(pid, signal.SIGSTOP)                 # stands for a child stuck on a dead disk
        self.addCleanup(lambda: alive(pid) and os.kill(pid, signal.SIGCONT))
        await syncer.close_within(0.2)
        self.assertFalse(child.ended)
        os.kill(pid, signal.SIGCONT)                 # it still finishes and exits by itself
        await eventually(lambda: child.ended)
