"""Tests of the logging/devnull plugin: a real session over a loopback socket
(tests.support.server) with and without it, watching the core's log events.
"""

from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from qpsmtpd_tx import codes
from tests.support.plugin_server import server_with
from tests.support.server import connect, start_server


class DevNullTests(unittest.TestCase):
    def collect_core_log(self):
        events = []

        def observer(event):
            if str(event.get("log_namespace", "")).startswith("qpsmtpd_tx"):
                events.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    async def run_session(self, files):
        events = self.collect_core_log()
        server, port = start_server(self, [], files)
        client = await connect(self, port)
        self.assertEqual(await client.command("NOOP"), (250, ["OK"]))
        self.assertEqual((await client.command("QUIT"))[0], 221)
        await client.wait_closed()
        return server, events

    async def test_builtin_logger_without_devnull(self):
        server, events = await self.run_session({"loglevel": "7"})
        self.assertTrue(any("dispatching NOOP" in e.get("line", "") for e in events))

    async def test_devnull_swallows_everything(self):
        server, events = await self.run_session({"loglevel": "7", "logging": "logging/devnull"})
        self.assertEqual(events, [])
        for level in range(8):
            self.assertFalse(server.log_enabled(level))
        self.assertEqual(server.logging_plugins[0].hook_logging(None, 0, None, None, "x"),
                         codes.DECLINED)

    def test_devnull_does_not_silence_other_logging_plugins(self):
        server = server_with(self, [], {"logging": "logging/devnull\nlogging/warn LOGINFO"})
        self.assertTrue(server.log_enabled(codes.LOGINFO))
        self.assertFalse(server.log_enabled(codes.LOGDEBUG))
