"""karma: the history kept per IP, the penalty box, the recipient limit and bad karma at
DATA, in-process on the file store (the plugin's clock set by the test) and on the private
Redis."""

import os

from twisted.trial import unittest

from qpsmtpd_tx import karma_db
from qpsmtpd_tx.codes import LOGDEBUG, LOGERROR, LOGINFO
from qpsmtpd_tx.kvstore.sqlite import SQLiteStore
from tests.support.harness import (
    MemoryClient, StartupErrorMixin, capture_log, loaded_plugin, make_server, wait_for)
from tests.support.redis import shared_redis, start_redis
from tests.support.store_plugins import START, ask, clocked_server

IP = "192.0.2.1"
KEY = "karma:3221225985"
PENALTY = "550 You were naughty. You cannot connect for 1.00 more days.\r\n"


class KarmaTestCase(unittest.TestCase):
    def server(self, args="", before=(), after=(), files=None):
        self.db_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.db_dir)
        lines = list(before) + ["karma db_dir %s %s" % (self.db_dir, args)] + list(after) + [
            "rcpt_ok", "queue/maildir %s" % os.path.abspath(self.mktemp())]
        server, self.plugin, self.clock = clocked_server(self, "karma", lines, files)
        return server

    async def connect(self, server, ip=IP):
        client = MemoryClient(server, remote_ip=ip)
        await wait_for(lambda: client.transport.value().endswith(b"\r\n"))
        client.greeting = client.take()
        return client

    async def stored(self, expected=None):
        """The stored record of IP once it is ``expected`` (any record if None), polled
        while the disconnect hook writes it; the last value read after 10 s otherwise."""
        value = []

        async def read():
            value[:] = [await self.plugin.store.get(KEY)]
        for _ in range(500):
            await read()
            if value[0] is not None and expected in (None, value[0]):
                break
            await wait_for(lambda: False, timeout=0.02)
        return value[0]

    async def naughty_session(self, server, ip=IP):
        """A connection whose sender is in .info (karma -4), then QUIT."""
        client = await self.connect(server, ip)
        await ask(client, "HELO client.example")
        await ask(client, "MAIL FROM:<a@spammy.info>")
        await ask(client, "QUIT")
        return client


class PenaltyBoxTests(KarmaTestCase):
    async def test_naughty_client_is_refused_at_connect_then_let_in(self):
        server = self.server("reject connect")
        await self.naughty_session(server)
        self.assertEqual(await self.stored(), "%d:1:0:1" % START)
        client = await self.connect(server)
        self.assertEqual(client.greeting, PENALTY)
        self.assertTrue(client.closed)
        self.assertEqual(await self.plugin.store.get(KEY), "%d:1:0:2" % START)
        self.clock.advance(86400)
        client = await self.connect(server)
        self.assertTrue(client.greeting.startswith("220 "), client.greeting)
        self.assertEqual(client.session.connection.notes["karma_history"], -1)

    async def test_reject_naughty_leaves_it_to_the_naughty_plugin(self):
        server = self.server(after=["naughty reject mail"])
        await self.naughty_session(server)
        await self.stored()
        client = await self.connect(server)
        self.assertTrue(client.greeting.startswith("220 "), client.greeting)
        await ask(client, "HELO client.example")
        self.assertEqual(await ask(client, "MAIL FROM:<a@example.net>"),
                         "550 You were naughty. You cannot connect for 1.00 more days.\r\n")

    async def test_nice_history_is_not_penalized_by_one_naughty_message(self):
        server = self.server("reject connect")
        client = await self.connect(server)
        client.session.connection.notes["karma"] = 3
        await ask(client, "QUIT")
        self.assertEqual(await self.stored(), "0:0:1:1")
        await self.naughty_session(server)
        self.assertEqual(await self.stored("0:1:1:2"), "0:1:1:2")
        client = await self.connect(server)
        self.assertTrue(client.greeting.startswith("220 "), client.greeting)

    async def test_bonus_for_a_long_naughty_history(self):
        server = self.server("reject connect")
        await self.plugin.store.check_and_set(KEY, None, "0:6:0:6", 1000)
        await self.naughty_session(server)
        record = karma_db.Record.parse(await self.stored("%d:7:0:7" % (START + 7 * 86400)))
        # history 0 - 7 = -7: penalty from 7 days ahead, plus penalty_days
        self.assertEqual(record.penalty_start, START + 7 * 86400)
        client = await self.connect(server)
        self.assertEqual(client.greeting,
                         "550 You were naughty. You cannot connect for 8.00 more days.\r\n")

    async def test_relay_client_is_never_refused(self):
        server = self.server("reject connect", before=["relay"], files={"relayclients": IP})
        await self.plugin.store.check_and_set(KEY, None, "%d:5:0:5" % START, 1000)
        client = await self.connect(server)
        self.assertTrue(client.greeting.startswith("220 "), client.greeting)


class SessionTests(KarmaTestCase):
    async def test_second_recipient_of_an_unknown_client_is_deferred(self):
        server = self.server()
        client = await self.connect(server)
        await ask(client, "HELO client.example")
        await ask(client, "MAIL FROM:<a@example.net>")
        self.assertTrue((await ask(client, "RCPT TO:<u@example.com>")).startswith("250 "))
        self.assertEqual(await ask(client, "RCPT TO:<v@example.com>"),
                         "450 too many recipients for karma 0 (h: 0)\r\n")

    async def test_good_history_may_send_to_several(self):
        server = self.server()
        await self.plugin.store.check_and_set(KEY, None, "0:0:2:2", 1000)
        client = await self.connect(server)
        self.assertEqual(client.session.connection.notes["karma_history"], 2)
        await ask(client, "HELO client.example")
        await ask(client, "MAIL FROM:<a@example.net>")
        await ask(client, "RCPT TO:<u@example.com>")
        self.assertTrue((await ask(client, "RCPT TO:<v@example.com>")).startswith("250 "))

    async def test_pre_connection_sets_the_history_for_hosts_allow(self):
        """karma's history is known at pre-connection, where hosts_allow reads it."""
        server = self.server(after=["hosts_allow"])
        await self.plugin.store.check_and_set(KEY, None, "0:0:7:7", 1000)
        log = capture_log(self, server)
        client = await self.connect(server)
        self.assertTrue(client.greeting.startswith("220 "), client.greeting)
        # hosts_allow raises the limit of a client whose history is above 5
        self.assertIn((LOGDEBUG, "connect limit +3 for positive karma"), log)

    async def test_very_bad_karma_refused_at_data(self):
        server = self.server("reject 1")
        client = await self.connect(server)
        await ask(client, "HELO client.example")
        await ask(client, "MAIL FROM: <a@spammy.info>")  # -2 and -4
        await ask(client, "RCPT TO:<u@example.com>")
        self.assertEqual(await ask(client, "DATA"), "554 very bad karma: -6\r\n")
        self.assertTrue(client.closed)

    async def test_neutral_connection_is_not_recorded(self):
        server = self.server()
        client = await self.connect(server)
        log = capture_log(self, server)
        await ask(client, "QUIT")
        self.assertTrue(await wait_for(lambda: (7, "no karma") in log))
        self.assertIsNone(await self.plugin.store.get(KEY))


class RedisTests(KarmaTestCase):
    async def test_penalty_box_on_redis(self):
        redis = shared_redis()
        redis.flush()
        server = self.server("reject connect redis_url %s" % redis.url)
        await self.naughty_session(server)
        self.assertEqual(await self.stored(), "%d:1:0:1" % START)
        ttl = int(redis.command("TTL", KEY)[1:])
        self.assertTrue(59 * 86400 < ttl <= 60 * 86400, ttl)
        client = await self.connect(server)
        self.assertEqual(client.greeting, PENALTY)

    async def test_redis_down_lets_clients_in_and_logs(self):
        redis = start_redis()
        self.addCleanup(redis.stop)
        server = self.server("reject connect redis_url %s redis_timeout 0.5" % redis.url)
        log = capture_log(self, server)
        redis.stop()
        client = await self.connect(server)
        self.assertTrue(client.greeting.startswith("220 "), client.greeting)
        self.assertTrue(any(level == LOGERROR and "database failed" in message
                            for level, message in log), log)
        for _ in range(3):      # the database stays down: no LOGERROR per connection
            # (the store now fails at once: the greeting may come before MemoryClient returns)
            client = MemoryClient(server, remote_ip=IP)
            await wait_for(lambda: client.greeting or client.transport.value().endswith(b"\r\n"))
            greeting = client.greeting or client.take()
            self.assertTrue(greeting.startswith("220 "), greeting)
        failed = [(level, m) for level, m in log if "database failed" in m]
        errors = [m for level, m in failed if level == LOGERROR]
        # each distinct error once at LOGERROR ("Lost connection", then "not connected")
        self.assertEqual(len(errors), len(set(errors)), failed)
        self.assertEqual([level for level, _ in failed[-2:]], [LOGINFO] * 2, failed)


class StartupTests(StartupErrorMixin, unittest.TestCase):
    def test_bad_arguments_stop_startup(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        for args, expected in [("reject sometimes", "reject must be one of 0|1|connect|naughty"),
                               ("reject_type later", "reject_type must be one of"),
                               ("penalty_days soon", "penalty_days must be a positive number"),
                               ("negative", "arguments must be key/value pairs"),
                               ("colour red", "unknown argument 'colour'")]:
            self.assertStartupError(["karma db_dir %s %s" % (directory, args)],
                                    ":1: plugin karma: " + expected)

    def test_file_is_made_in_db_dir(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        server = make_server(self, ["karma db_dir %s" % directory])
        self.addCleanup(server.stop_plugins)
        self.assertTrue(os.path.exists(os.path.join(directory, "karma.sqlite")))
        self.assertIsInstance(loaded_plugin(server, "karma").store, SQLiteStore)


class KarmaToolLineTests(StartupErrorMixin, unittest.TestCase):
    def test_karma_tool_in_plugins_points_to_the_command(self):
        """Perl 0.94 prints karma_tool's usage and exits without serving; we say what to use."""
        self.assertStartupError(["karma_tool"], ":1: plugin karma_tool: karma_tool is qpsmtpd's "
                                "command-line tool for karma's database, not a plugin: remove "
                                "the line and run `qpsmtpd-tx karma")
