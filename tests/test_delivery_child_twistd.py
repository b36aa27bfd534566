"""The Maildir delivery child under a real ``twistd qpsmtpd-tx``, with smtplib as the client:
the message is written by the child the server started (its pid is in the file name), and the
child never outlives the server, whether it stops gently (SIGTERM) or is killed (SIGKILL)."""

import os
import signal
import smtplib

from twisted.internet import threads
from twisted.trial import unittest

from tests.support.harness import eventually
from tests.support.processes import start_maildir_twistd, stop_process

MESSAGE = b"Subject: via the child\r\n\r\nhello\r\n"


def send(port):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return client.sendmail("a@b.example", ["u@example.com"], MESSAGE)


def children(pid):
    """The pids of ``pid``'s children that run the delivery child."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == pid and b"qpsmtpd_tx.maildir_child" in cmdline:
            found.append(int(name))
    return found


def running(pid):
    """True while ``pid`` exists and is not a zombie (an orphan's zombie may wait for a
    container's init to reap it)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


class DeliveryChildTwistdTests(unittest.TestCase):
    async def delivered_by_child(self):
        self.process, port, self.log, maildir = start_maildir_twistd(self)
        # started with the server, before any mail
        await eventually(lambda: children(self.process.pid) != [])
        [child] = children(self.process.pid)
        self.assertEqual(await threads.deferToThread(send, port), {})
        self.assertEqual(children(self.process.pid), [child])
        [name] = os.listdir(os.path.join(maildir, "new"))
        self.assertIn(".P%dM" % child, name)
        with open(os.path.join(maildir, "new", name), "rb") as f:
            self.assertIn(b"Subject: via the child\n\nhello\n", f.read())
        self.assertEqual(os.listdir(os.path.join(maildir, "tmp")), [])
        return child

    async def test_stops_with_the_server(self):
        child = await self.delivered_by_child()
        self.assertEqual(stop_process(self.process), 0)
        await eventually(lambda: not running(child))
        with open(self.log, "rb") as f:
            self.assertNotIn(b"delivery child", f.read())     # no error logged

    async def test_server_reaps_its_child_at_shutdown(self):
        """The stopping server waits for its child's exit and reaps it: once the server has
        exited, not even a zombie of the child is left (this container's init does not reap
        orphans, so without the wait the child stayed a zombie here)."""
        child = await self.delivered_by_child()
        self.assertEqual(stop_process(self.process), 0)
        self.assertFalse(os.path.exists("/proc/%d" % child))

    async def test_killed_server_leaves_no_child(self):
        child = await self.delivered_by_child()
        self.assertEqual(stop_process(self.process, sig=signal.SIGKILL), -signal.SIGKILL)
        await eventually(lambda: not running(child))
