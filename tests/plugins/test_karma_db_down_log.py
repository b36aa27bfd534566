"""karma with its database down: each failure is logged at LOGERROR once, not at every
connection, although a connection meets it twice with two texts (reading the history at
connect, recording the verdict at disconnect). In-process sessions on the private Redis,
stopped."""

from qpsmtpd_tx.codes import LOGINFO
from tests.plugins.test_karma import IP, KarmaTestCase
from tests.support.harness import MemoryClient, capture_log, wait_for
from tests.support.redis import start_redis
from tests.support.store_plugins import ask


class DatabaseDownLogTests(KarmaTestCase):
    async def test_no_logerror_per_connection(self):
        redis = start_redis()
        self.addCleanup(redis.stop)
        server = self.server("redis_url %s redis_timeout 0.5" % redis.url)
        log = capture_log(self, server)
        redis.stop()

        def recorded():
            return sum(1 for _, m in log if "not recorded" in m)
        settled = None
        for n in range(1, 5):
            # (the store fails at once: the greeting may come before MemoryClient returns)
            client = MemoryClient(server, remote_ip=IP)
            await wait_for(lambda: client.greeting or client.transport.value().endswith(b"\r\n"))
            client.take()
            for line in ("HELO client.example", "MAIL FROM:<a@spammy.info>", "QUIT"):
                await ask(client, line)     # a .info sender: a verdict to record at QUIT
            self.assertTrue(await wait_for(lambda: recorded() >= n), (n, log))  # disconnect done
            if n == 2:
                settled = len(log)     # the store's errors have their final text by now
        failed = [(level, m) for level, m in log[settled:] if "database failed" in m]
        self.assertTrue(failed)
        self.assertEqual({level for level, _ in failed}, {LOGINFO}, failed)
