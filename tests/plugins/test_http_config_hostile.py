"""http_config against a config server whose answer never ends (its header or its body):
read no further than 16 MiB, a failed fetch at once instead of memory filled until the
``timeout``. Against a stand-in written here (tests/support/endless.py)."""

from twisted.trial import unittest

from tests.plugins import test_http_config
from tests.support.endless import endless_http_servers


class EndlessAnswerTests(unittest.TestCase):
    start = test_http_config.HttpConfigTests.start
    log_lines = test_http_config.HttpConfigTests.log_lines

    async def test_endless_header_or_body_is_a_failed_fetch(self):
        for port, factory in endless_http_servers(self):
            url = "http://127.0.0.1:%d/config/" % port
            server, plugin, _ = self.start("timeout 60 preload me " + url, after=())
            self.assertEqual(await plugin.fetch("me"), "failed")
            self.assertIn("http_config: cannot fetch config me from %sme: answer longer than "
                          "16777216 bytes" % url, self.log_lines())
            self.assertEqual(factory.connections, 1)
