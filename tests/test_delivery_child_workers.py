"""The Maildir delivery child starts with the server, in every ``--workers`` process, under a
real ``twistd qpsmtpd-tx`` with smtplib as the client; where the user the server runs as
(``--uid``) may not run its Python, the workers are not started and the one process left
delivers from its threads, both said at start-up.
"""

import os
import pwd
import smtplib
import socket
import subprocess
import sys

from twisted.internet import threads
from twisted.trial import unittest

from qpsmtpd_tx.testing import eventually
from tests.support.harness import TEST_PLUGINS, write_config
from tests.support.processes import (CHECKOUT, child_pids, delivery_child_pids, poll_until,
                                      readable_temp_dir, recv_exactly, reserve_port,
                                      server_env, start_maildir_twistd, stop_process,
                                      wait_for_port)
from tests.test_workers_reuseport import listening_sockets

MESSAGE = b"Subject: eager\r\n\r\nhello\r\n"
#: seconds a process gets to start (generous: the machine is shared)
BOUND = 30.0
#: clients connecting at once: the chance that the kernel gives all of them the same one of
#: two sockets is 2 in a million
CONNECTIONS = 20


def send(port, count=1):
    for _ in range(count):
        with smtplib.SMTP("127.0.0.1", port, timeout=BOUND) as client:
            assert client.sendmail("a@b.example", ["u@example.com"], MESSAGE) == {}


def maildir_writers(maildir):
    """The pids in the names of the files in ``maildir``/new (``TIME.PpidM…``)."""
    return {int(name.split(".P", 1)[1].split("M", 1)[0])
            for name in os.listdir(os.path.join(maildir, "new"))}


class EagerChildTests(unittest.TestCase):
    async def test_every_worker_has_its_child_before_any_mail(self):
        process, port, log, maildir = start_maildir_twistd(self, ["--workers", "2"])

        def ready():
            workers = child_pids(process.pid)
            return (len(workers) == 1 and len(delivery_child_pids(process.pid)) == 1
                    and len(delivery_child_pids(workers[0])) == 1)
        await eventually(ready, BOUND)
        [worker] = child_pids(process.pid)
        children = delivery_child_pids(process.pid) + delivery_child_pids(worker)
        self.assertEqual(os.listdir(os.path.join(maildir, "new")), [])
        # the children that wrote the messages are the ones that were there before them
        await threads.deferToThread(send, port, 10)
        self.assertEqual(len(os.listdir(os.path.join(maildir, "new"))), 10)
        self.assertLessEqual(maildir_writers(maildir), set(children))
        self.assertEqual(delivery_child_pids(process.pid) + delivery_child_pids(worker), children)
        with open(log, "rb") as f:
            text = f.read()
        self.assertNotIn(b"delivery child", text)
        self.assertNotIn(b"delivering from threads", text)

    async def test_a_killed_child_is_replaced_at_the_next_delivery(self):
        process, port, log, maildir = start_maildir_twistd(self)
        await eventually(lambda: delivery_child_pids(process.pid) != [], BOUND)
        [first] = delivery_child_pids(process.pid)
        os.kill(first, 9)
        await eventually(lambda: delivery_child_pids(process.pid) == [], BOUND)
        await threads.deferToThread(send, port)
        [second] = delivery_child_pids(process.pid)
        self.assertEqual(maildir_writers(maildir), {second})


class WorkersUnderUidTests(unittest.TestCase):
    """--workers with --uid to a user that may not run the server's Python (here: root's
    pyenv under /root, mode 0700). Runs as root only, and only where that user may not."""

    def setUp(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("switching users needs root")
        self.user = pwd.getpwnam("nobody")
        if _may_run_python(self.user):
            raise unittest.SkipTest("nobody may run %s: nothing to fall back from"
                                    % sys.executable)
        # the server reads its config as nobody
        self.dir = readable_temp_dir(self, "qpsmtpd-tx-workers-uid-")
        self.config = os.path.join(self.dir, "config")
        self.maildir = os.path.join(self.dir, "maildir")
        spool = os.path.join(self.dir, "spool")
        write_config(self.config, ["rcpt_ok", "queue/maildir %s" % self.maildir],
                     {"spool_dir": spool, "loglevel": "5"})
        for path in (spool, self.maildir):
            os.makedirs(path)
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def start(self, *extra):
        port = reserve_port(self)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        log_path = os.path.join(self.dir, "log")
        log = open(log_path, "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "--uid", str(self.user.pw_uid),
             "--gid", str(self.user.pw_gid), "qpsmtpd-tx", "--config", self.config,
             "--listen", "tcp:%d:interface=127.0.0.1" % port, "--workers", "2"] + list(extra),
            cwd=CHECKOUT, env=server_env(), stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(stop_process, process)
        wait_for_port(port, process)
        return process, port, log_path

    async def served_alone(self, *extra):
        process, port, log = self.start(*extra)
        await threads.deferToThread(send, port, 5)
        self.assertEqual(len(os.listdir(os.path.join(self.maildir, "new"))), 5)
        # written by the server itself (its threads), not by a child
        self.assertEqual(maildir_writers(self.maildir), {process.pid})
        self.assertEqual(child_pids(process.pid), [])
        self.assertEqual(delivery_child_pids(process.pid), [])
        with open(log, "rb") as f:
            text = f.read().decode(errors="replace")
        self.assertRegex(text, r"--workers: cannot start the 1 extra processes \(\S+ is not "
                         r"executable by uid %d\): serving from this process only"
                         % self.user.pw_uid)
        self.assertIn("cannot run the delivery child", text)
        self.assertNotIn("Traceback", text)
        return port

    async def test_one_process_serves_and_delivers_from_threads(self):
        await self.served_alone()

    async def test_the_workers_reuseport_sockets_are_served_here(self):
        # the kernel goes on handing them their share of the connections
        port = await self.served_alone("--reuseport")
        self.assertEqual(listening_sockets(port), 2)

    async def test_no_connection_made_during_the_start_is_lost(self):
        # Connections that arrive while the server starts wait in the kernel's queue of the
        # socket their hash picks, the worker's own one too: it must be accepted on, not
        # closed (which resets them).
        gate = os.path.join(self.dir, "gate")
        os.makedirs(gate)
        os.chown(gate, self.user.pw_uid, self.user.pw_gid)
        gate = os.path.join(gate, "open")
        write_config(self.config, ["wait_at_start " + gate, "rcpt_ok"],
                     {"spool_dir": os.path.join(self.dir, "spool"), "loglevel": "5",
                      "plugin_dirs": TEST_PLUGINS})
        _, port, _ = self.start("--reuseport", "--max-from-ip", "0")
        self.assertTrue(poll_until(lambda: os.path.exists(gate + ".waiting"), BOUND))
        clients = [socket.create_connection(("127.0.0.1", port), timeout=BOUND)
                   for _ in range(CONNECTIONS)]
        for client in clients:
            self.addCleanup(client.close)
        open(gate, "w").close()
        greetings = await threads.deferToThread(lambda: [_greeting(c) for c in clients])
        self.assertEqual(greetings, [b"220 "] * CONNECTIONS)


def _greeting(client):
    """The first 4 bytes the server sends on socket ``client``, or the name of what went
    wrong instead (the connection reset or closed, no answer within its timeout)."""
    try:
        return recv_exactly(client, 4)
    except OSError as e:
        return type(e).__name__


def _may_run_python(user):
    """Whether ``user`` may run the server's Python (tried in a process running as it)."""
    try:
        subprocess.run([sys.executable, "-c", "pass"], user=user.pw_uid, group=user.pw_gid,
                       extra_groups=[], cwd="/", check=True, capture_output=True, timeout=BOUND)
    except (PermissionError, subprocess.CalledProcessError):
        return False
    return True
