"""greylisting: in-process sessions on the file store with the plugin's clock set by the test
(timeouts of hours checked without waiting), the exclusions and arguments, and Redis down."""

import os

from twisted.trial import unittest

from qpsmtpd_tx.codes import LOGERROR, LOGINFO
from qpsmtpd_tx.kvstore.sqlite import SQLiteStore
from tests.support.harness import MemoryClient, StartupErrorMixin, capture_log
from tests.support.redis import shared_redis, start_redis
from tests.support.store_plugins import START, ask, clocked_server

DENIED = "450 This mail is temporarily denied\r\n"


class GreylistingTestCase(unittest.TestCase):
    def server(self, args="", plugins_before=(), files=None, db_dir=None):
        """A server running greylisting (``args``) on a fresh db_dir, then rcpt_ok and a
        queue; the plugin's clock is a Clock at START (``self.clock``)."""
        db_dir = db_dir or os.path.abspath(self.mktemp())
        os.makedirs(db_dir, exist_ok=True)
        lines = list(plugins_before) + ["greylisting db_dir %s %s" % (db_dir, args), "rcpt_ok",
                                        "queue/maildir %s" % os.path.abspath(self.mktemp())]
        server, self.plugin, self.clock = clocked_server(self, "greylisting", lines, files)
        self.db_dir = db_dir
        return server

    async def session(self, server, ip="192.0.2.1", sender="a@example.net"):
        client = MemoryClient(server, remote_ip=ip)
        self.assertEqual((await ask(client, "HELO client.example"))[:3], "250")
        return client, await ask(client, "MAIL FROM:<%s>" % sender)


class TimeoutTests(GreylistingTestCase):
    async def test_black_grey_white(self):
        server = self.server("black_timeout 600 grey_timeout 3600 white_timeout 86400")
        _, reply = await self.session(server)
        self.assertEqual(reply, DENIED)
        self.clock.advance(599)
        _, reply = await self.session(server)
        self.assertEqual(reply, DENIED)  # still black
        self.clock.advance(2)
        client, reply = await self.session(server)
        self.assertTrue(reply.startswith("250 "), reply)
        self.assertTrue((await ask(client, "RCPT TO:<u@example.com>")).startswith("250 "))
        # white now: any later message passes, for white_timeout after the last one
        self.clock.advance(80000)
        _, reply = await self.session(server)
        self.assertTrue(reply.startswith("250 "), reply)
        self.clock.advance(80000)
        _, reply = await self.session(server)
        self.assertTrue(reply.startswith("250 "), reply)
        # another IP is still unknown
        _, reply = await self.session(server, ip="192.0.2.2")
        self.assertEqual(reply, DENIED)

    async def test_retry_after_grey_timeout_starts_over(self):
        """0.94 let such a retry pass for ever; the triplet is new again here."""
        server = self.server("black_timeout 600 grey_timeout 3600")
        _, reply = await self.session(server)
        self.clock.advance(3601)
        _, reply = await self.session(server)
        self.assertEqual(reply, DENIED)
        self.clock.advance(601)
        _, reply = await self.session(server)
        self.assertTrue(reply.startswith("250 "), reply)

    async def test_white_expires(self):
        server = self.server("black_timeout 10 grey_timeout 100 white_timeout 1000")
        await self.session(server)
        self.clock.advance(11)
        await self.session(server)
        self.clock.advance(1001)
        _, reply = await self.session(server)
        self.assertEqual(reply, DENIED)

    async def test_record_format_and_key(self):
        """qpsmtpd's key (the IP as an integer) and value, with every record a TTL."""
        server = self.server("black_timeout 10 sender 1")
        await self.session(server, sender="b@example.net")
        store = SQLiteStore(os.path.join(self.db_dir, "greylist.sqlite"))
        self.addCleanup(store.close)
        store.clock = self.clock
        rows = await store.scan("greylist:")
        self.assertEqual([(k, v) for k, v, _ in rows],
                         [("greylist:3221225985:b@example.net", "%d:1:0:0" % START)])
        self.assertEqual(rows[0][2], START + 12000)  # the default grey_timeout


class ModeTests(GreylistingTestCase):
    async def test_deny_late_defers_at_data(self):
        server = self.server("deny_late 1")
        client, reply = await self.session(server)
        self.assertTrue(reply.startswith("250 "), reply)
        self.assertTrue((await ask(client, "RCPT TO:<u@example.com>")).startswith("250 "))
        self.assertEqual(await ask(client, "DATA"), "451 This mail is temporarily denied\r\n")

    async def test_reject_0_and_mode_testonly_only_record(self):
        for args in ("reject 0", "mode testonly", "mode off"):
            server = self.server(args)
            log = capture_log(self, server)
            _, reply = await self.session(server)
            self.assertTrue(reply.startswith("250 "), (args, reply))
            self.assertIn("fail: initial DENYSOFT, unknown", [m for _, m in log])

    async def test_config_file_settings_and_argument_override(self):
        server = self.server("black_timeout 5",
                             files={"denysoft_greylist": "black_timeout 600\nreject 0\n"})
        self.assertEqual(self.plugin.timeouts["black_timeout"], 5)
        self.assertEqual(self.plugin.reject, "0")

    async def test_per_recipient_timeouts_from_notes(self):
        server = self.server(
            "per_recipient 1 black_timeout 600",
            plugins_before=["note_rcpt fast@example.com greylisting_black_timeout=0"])
        client, reply = await self.session(server)
        self.assertTrue(reply.startswith("250 "), reply)
        self.assertEqual(await ask(client, "RCPT TO:<slow@example.com>"), DENIED)
        client, _ = await self.session(server)
        self.clock.advance(1)
        # the same IP (the triplet is the IP alone): black for slow@, grey already for fast@
        self.assertTrue((await ask(client, "RCPT TO:<fast@example.com>")).startswith("250 "))

    async def test_recipient_in_triplet_and_null_sender_deferred_at_data(self):
        server = self.server("recipient 1")
        client, reply = await self.session(server, sender="")
        self.assertTrue(reply.startswith("250 "), reply)
        self.assertTrue((await ask(client, "RCPT TO:<u@example.com>")).startswith("250 "))
        self.assertEqual(await ask(client, "DATA"), "451 This mail is temporarily denied\r\n")
        client, _ = await self.session(server)
        self.assertEqual(await ask(client, "RCPT TO:<v@example.com>"), DENIED)


class ExclusionTests(GreylistingTestCase):
    async def test_relay_client_is_not_greylisted(self):
        server = self.server(plugins_before=["relay"], files={"relayclients": "192.0.2.1\n"})
        _, reply = await self.session(server)
        self.assertTrue(reply.startswith("250 "), reply)
        _, reply = await self.session(server, ip="192.0.2.9")
        self.assertEqual(reply, DENIED)

    async def test_whitelisted_sender_is_not_greylisted(self):
        server = self.server(plugins_before=["whitelist"],
                             files={"whitelistsenders": "a@example.net\n"})
        _, reply = await self.session(server)
        self.assertTrue(reply.startswith("250 "), reply)

    async def _with_notes(self, server, **notes):
        client = MemoryClient(server)
        client.session.connection.notes.update(notes)
        await ask(client, "HELO client.example")
        return await ask(client, "MAIL FROM:<a@example.net>")

    async def test_geoip_countries_pass(self):
        server = self.server("geoip US,CA")
        self.assertTrue((await self._with_notes(server, geoip_country="CA")).startswith("250"))
        self.assertEqual(await self._with_notes(server, geoip_country="CN"), DENIED)
        self.assertEqual(await self._with_notes(server), DENIED)

    async def test_p0f_restricts_greylisting_to_matches(self):
        server = self.server("p0f genre,windows,distance,3")
        linux = {"genre": "Linux", "distance": "1"}
        self.assertTrue((await self._with_notes(server, p0f=linux)).startswith("250"))
        self.assertTrue((await self._with_notes(server)).startswith("250"))  # no p0f note
        far = {"genre": "Linux", "distance": "9"}
        self.assertEqual(await self._with_notes(server, p0f=far), DENIED)
        windows = {"genre": "Windows", "distance": "0"}
        self.assertEqual(await self._with_notes(server, p0f=windows), DENIED)


class FailureTests(GreylistingTestCase):
    async def test_redis_down_fails_open_and_logs(self):
        redis = start_redis()
        self.addCleanup(redis.stop)
        server = self.server("redis_url %s redis_timeout 0.5" % redis.url)
        log = capture_log(self, server)
        _, reply = await self.session(server)
        self.assertEqual(reply, DENIED)
        redis.stop()
        _, reply = await self.session(server)
        self.assertTrue(reply.startswith("250 "), reply)
        errors = [m for level, m in log if level == LOGERROR]
        self.assertTrue(any("database failed, passing: redis://127.0.0.1:%d/0" % redis.port in m
                            for m in errors), errors)
        for _ in range(3):      # the database stays down: no LOGERROR per message
            _, reply = await self.session(server)
            self.assertTrue(reply.startswith("250 "), reply)
        failed = [(level, m) for level, m in log if "database failed, passing" in m]
        errors = [m for level, m in failed if level == LOGERROR]
        # each distinct error once at LOGERROR ("Lost connection", then "not connected")
        self.assertEqual(len(errors), len(set(errors)), failed)
        self.assertEqual([level for level, _ in failed[-2:]], [LOGINFO] * 2, failed)

    async def test_redis_store_from_config_file(self):
        redis = shared_redis()
        redis.flush()
        server = self.server(files={"redis_server": "127.0.0.1:%d" % redis.port})
        _, reply = await self.session(server)
        self.assertEqual(reply, DENIED)
        self.assertEqual(redis.command("EXISTS", "greylist:3221225985"), ":1")
        ttl = int(redis.command("TTL", "greylist:3221225985")[1:])
        self.assertTrue(0 < ttl <= 12000, ttl)


class StartupTests(StartupErrorMixin, unittest.TestCase):
    def test_bad_arguments_stop_startup(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        for args, expected in [
                ("black_timeout soon", "black_timeout must be a number of seconds"),
                ("mode sometimes", "mode must be denysoft, testonly or off"),
                ("p0f genre", "p0f must be KEY,VALUE pairs"),
                ("p0f colour,red", "p0f: unknown key 'colour'"),
                ("remote_ip 0", "enable one of remote_ip, sender, or recipient"),
                ("per_recipient_db 1", "per_recipient_db 1 is not supported"),
                ("frobnicate 1", "unknown argument 'frobnicate'"),
                ("redis_url http://x/", "not a redis://"),
                ("db_dir %s/nowhere" % directory, "db_dir %s/nowhere is not a directory" % directory)]:
            self.assertStartupError(["greylisting db_dir %s %s" % (directory, args)],
                                    ":1: plugin greylisting: " + expected)

    def test_unusable_database_file_names_it(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "greylist.sqlite"), "wb") as f:
            f.write(b"garbage" * 200)
        self.assertStartupError(["greylisting db_dir %s" % directory],
                                "cannot use the database %s/greylist.sqlite" % directory)

