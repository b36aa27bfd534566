"""queue/exim-bsmtp's ``pool N``: long-lived ``exim -bs`` processes, each carrying many messages.

The Exim is the suite's real one (``tests/support/exim.py``, Debian's binary with a private
configuration; skipped with the reason where it cannot be fetched). Its refusals
(``message_size_limit``, ``recipients_max``) and its ``421`` after
``smtp_accept_max_per_connection`` messages are Exim's own. A STAND-IN is used only for a
process that hangs (a script that sleeps before it would run the real Exim; the test says so).
"""

import os
import signal
import smtplib

from twisted.internet import defer
from twisted.trial import unittest

from qpsmtpd_tx.server import StartupError
from tests.plugins.test_queue_exim_bsmtp import (
    BODY, HEADER, INTERNAL, STORED, EximTestCase, split_delivered, write_script)
from tests.support.harness import eventually, make_server, write_config
from tests.support.processes import poll_until, processes_running, start_twistd, stop_process


def message(n):
    """Message number ``n`` (its Subject says which)."""
    return HEADER.replace(b"Subject: exim", b"Subject: pooled %d" % n) + b"\r\n" + BODY


class PoolTestCase(EximTestCase):
    def start_pool(self, options="pool 2", exim_path=None, **exim_options):
        if not hasattr(self, "mta"):
            self.exim(**exim_options)
        server, port = self.start("queue/exim-bsmtp exim_path %s %s -C %s" % (
            exim_path or self.mta.command, options, self.mta.config))
        self.addCleanup(server.stop_plugins)
        self.pool = server.plugins[1].pool
        return server, port

    def exim_processes(self, parent=None):
        """PIDs of the ``exim -bs`` processes the plugin runs on this test's configuration
        (children of ``parent``, default this process; not the delivery processes they fork)."""
        pids = []
        for pid in processes_running(self.mta.config):
            try:
                with open("/proc/%s/stat" % pid) as f:
                    parent_pid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent_pid == (parent or os.getpid()):
                pids.append(pid)
        return pids


class PoolDeliveryTests(PoolTestCase):
    async def test_many_messages_from_parallel_clients_on_two_processes(self):
        server, port = self.start_pool("pool 2")
        await self.send_in_parallel(port)
        # twelve messages, at most two processes at any time, never more started
        self.assertEqual(self.pool.opened, 2)
        self.assertEqual(len(self.exim_processes()), 2)
        await self.idle()
        delivered = [split_delivered(d.replace(b"local-esmtp", b"local-bsmtp"))
                     for d in self.mta.delivered()]
        self.assertEqual(sorted((d[0], d[1]) for d in delivered),
                         sorted(("<s%d.%d@b.example>" % (i, n), "r%d.%d@example.com" % (i, n))
                                for i in range(4) for n in range(3)))
        self.assertEqual({d[3] for d in delivered}, {STORED})
        received = self.received_lines()
        self.assertEqual(len(received), 12)
        self.assertTrue(all(" P=local-esmtp " in line for line in received), received)

    async def test_250_only_after_exims_250(self):
        # Exim logs "<=" once the message is safe in its spool, before its 250: each of our
        # 250s finds the message in Exim's log already.
        server, port = self.start_pool("pool 1")
        client = await self.session(port)
        for n in range(3):
            self.assertEqual(await self.send(client, data=message(n)), (250, ["Queued!"]))
            self.assertEqual(len(self.received_lines()), n + 1)

    async def test_refusals_per_message_keep_the_process(self):
        server, port = self.start_pool("pool 1", message_size_limit="20K", recipients_max=1)
        client = await self.session(port)
        self.assertEqual(await self.send(client, data=message(1)), (250, ["Queued!"]))
        big = message(2).replace(b"last", b"z" * 30000)
        self.assertEqual(await self.send(client, data=big),
                         (552, ["Message size exceeds maximum permitted"]))
        self.assertEqual(await self.send(client, recipients=["<u@example.com>", "<v@example.com>"]),
                         (451, ["too many recipients"]))
        self.assertEqual(await self.send(client, data=message(3)), (250, ["Queued!"]))
        self.assertEqual(self.pool.opened, 1)
        await self.idle()
        self.assertEqual(sorted(split_delivered(d.replace(b"local-esmtp", b"local-bsmtp"))[3]
                                .split(b"\n")[2] for d in self.mta.delivered()),
                         [b"Subject: pooled 1", b"Subject: pooled 3"])

    async def test_messages_per_process_and_exims_own_limit(self):
        # pool_messages 2: a new process after two messages. Exim's own limit
        # (smtp_accept_max_per_connection 1: "421 too many messages in this connection" to
        # the second MAIL) breaks a reused process before the message: it goes once more, on
        # a new one, and is delivered once.
        for options, settings, started in (
                ("pool 1 pool_messages 2", (), 3),
                ("pool 1", ("smtp_accept_max_per_connection = 1",), 5)):
            self.exim(settings=settings)
            server, port = self.start_pool(options)
            client = await self.session(port)
            for n in range(5):
                self.assertEqual(await self.send(client, data=message(n)), (250, ["Queued!"]))
            self.assertEqual(self.pool.opened, started, options)
            await self.idle()
            self.assertEqual(len(self.mta.delivered()), 5, options)
            del self.mta

    async def test_idle_process_that_died_is_replaced(self):
        server, port = self.start_pool("pool 1")
        client = await self.session(port)
        self.assertEqual(await self.send(client, data=message(1)), (250, ["Queued!"]))
        [pid] = self.exim_processes()
        os.kill(int(pid), signal.SIGKILL)
        await eventually(lambda: not self.exim_processes())
        self.assertEqual(await self.send(client, data=message(2)), (250, ["Queued!"]))
        self.assertEqual(self.pool.opened, 2)
        await self.idle()
        self.assertEqual(len(self.mta.delivered()), 2)

    async def test_idle_processes_quit_after_pool_idle_and_at_stop(self):
        server, port = self.start_pool("pool 2 pool_idle 0.5")
        client = await self.session(port)
        self.assertEqual(await self.send(client, data=message(1)), (250, ["Queued!"]))
        self.assertEqual(len(self.exim_processes()), 1)
        await eventually(lambda: not self.exim_processes())
        self.assertEqual(self.pool.open_count, 0)
        self.assertEqual(await self.send(client, data=message(2)), (250, ["Queued!"]))
        self.assertEqual(len(self.exim_processes()), 1)
        await server.stop_plugins()
        await eventually(lambda: not self.exim_processes())

    async def test_hanging_process_is_killed_and_the_bound_holds(self):
        # STAND-IN: the first process sleeps 30 s before it would run the real Exim (a hung
        # Exim); the ones after run Exim at once. pool 1: the second client waits for the
        # slot, which frees when the hung one is killed after ``timeout``.
        self.exim()
        directory = self.mktemp()
        os.mkdir(directory)
        marker = os.path.abspath(os.path.join(directory, "hung-once"))
        script = os.path.abspath(write_script(directory, "hang-once-exim",
                              "import os, sys, time\n"
                              "if not os.path.exists(%r):\n"
                              "    open(%r, 'w').close()\n    time.sleep(30)\n"
                              "os.execv(%r, [%r] + sys.argv[1:])\n"
                              % (marker, marker, self.mta.command, self.mta.command)))
        server, port = self.start_pool("pool 1 timeout 1", exim_path=script)
        first, second = await self.session(port), await self.session(port)
        replies = await defer.gatherResults([
            defer.Deferred.fromCoroutine(self.send(first, data=message(1))),
            defer.Deferred.fromCoroutine(self.send(second, data=message(2)))])
        self.assertEqual(sorted(replies), [
            (250, ["Queued!"]), (451, [INTERNAL + " (exim timed out after 1 seconds)"])])
        self.assertEqual(self.pool.opened, 2)
        await eventually(lambda: not processes_running(script))
        await self.idle()
        self.assertEqual(len(self.mta.delivered()), 1)


class PoolTwistdTests(PoolTestCase):
    """A real ``twistd qpsmtpd-tx`` process with the pool, and smtplib."""

    def test_messages_through_twistd_and_its_processes_end_with_it(self):
        self.exim()
        log = os.path.abspath(self.mktemp() + ".qpsmtpd.log")
        config = write_config(os.path.abspath(self.mktemp()), [
            "rcpt_ok", self.mta.plugin_line("pool 2")], {"logging": "logging/file loglevel LOGINFO %s" % log})
        process, port, _ = start_twistd(self, config)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.example")
            for n in range(4):
                self.assertEqual(client.sendmail("a@b.example", ["u%d@example.com" % n],
                                                 message(n)), {})
        self.assertEqual(len(self.exim_processes(process.pid)), 1)
        # SIGTERM: the server's shutdown says QUIT to its idle exim processes
        self.assertEqual(stop_process(process), 0)
        self.assertTrue(poll_until(lambda: not self.exim_processes(process.pid), 10))
        self.assertTrue(self.mta.wait_idle_blocking())
        self.assertEqual(len(self.mta.delivered()), 4)
        self.assertEqual(len(self.received_lines()), 4)
        # it answered the QUIT and exited 0 (its input closing would make it exit 1)
        with open(log) as f:
            self.assertRegex(f.read(), r"exim -bs \(pid \d+\) ended: exit status 0, after 4 messages")


class PoolArgumentTests(unittest.TestCase):
    def test_arguments(self):
        server = make_server(self, ["rcpt_ok", "queue/exim-bsmtp pool 3 pool_idle 5 "
                                               "pool_messages 50 -C /etc/x.conf"])
        plugin = server.plugins[-1]
        self.assertEqual(plugin.argv, ["/usr/sbin/exim4", "-bs", "-C", "/etc/x.conf"])
        self.assertEqual((plugin.pool.max_open, plugin.pool.max_idle, plugin.pool.idle_timeout,
                          plugin.pool.max_uses), (3, 3, 5, 50))
        self.assertIsNone(make_server(self, ["rcpt_ok", "queue/exim-bsmtp"]).plugins[-1].pool)

    def test_bad_arguments_stop_start_up(self):
        for line, why in (("pool x", "pool must be a whole number"),
                          ("pool 2 pool_idle -1", "pool_idle must be a number of seconds"),
                          ("pool 2 exim_path /usr/sbin/rsmtp", "pool needs Exim itself")):
            with self.assertRaises(StartupError, msg=line) as caught:
                make_server(self, ["rcpt_ok", "queue/exim-bsmtp " + line])
            self.assertIn(why, str(caught.exception))
