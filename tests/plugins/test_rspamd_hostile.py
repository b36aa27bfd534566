"""The ``rspamd`` plugin against a broken or hostile rspamd: an HTTP header that never ends,
a body of megabytes or one that never ends, JSON nested beyond Python's recursion limit,
scores that are not finite numbers. Against stand-in HTTP servers on 127.0.0.1 written here
(a real rspamd does not answer like this; tests/plugins/test_rspamd.py has the real one)."""

import json

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.testing import capture_log
from tests.plugins.test_rspamd import answer, fake_rspamd, rspamd_server, transaction
from tests.support.endless import endless_http_servers, endless_server, http_request_done

UNABLE = (codes.DENYSOFT, "Unable to scan for spam")


def standin(testcase, head, more=b""):
    """A stand-in rspamd on 127.0.0.1 answering ``head`` (+ ``more`` forever); its URL."""
    port, _ = endless_server(testcase, head, more, http_request_done)
    return "http://127.0.0.1:%d" % port


class HostileRspamdTests(unittest.TestCase):
    async def scan(self, url, args="timeout 30"):
        server, plugin = rspamd_server(self, "url %s %s" % (url, args))
        self.logs = capture_log(self, server)
        self.txn = transaction()
        return await plugin.hook_data_post(self.txn)

    def errors(self):
        return [m for level, m in self.logs if level == codes.LOGERROR]

    async def assertTooLong(self, url):
        self.assertEqual(await self.scan(url), UNABLE)
        self.assertEqual(self.errors(), ["cannot scan: answer longer than 1048576 bytes; "
                                         "answering 452 Unable to scan for spam (fail_open 0)"])

    async def test_header_or_body_that_never_ends(self):
        for port, _ in endless_http_servers(self):
            await self.assertTooLong("http://127.0.0.1:%d" % port)

    async def test_body_of_megabytes(self):
        body = b" " * (3 << 20) + json.dumps(answer("no action")[1]).encode()
        await self.assertTooLong(standin(
            self, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)))

    async def test_json_nested_too_deep(self):
        _, url = fake_rspamd(self, (200, b"[" * 200000 + b"]" * 200000))
        self.assertEqual(await self.scan(url), UNABLE)
        [error] = self.errors()
        self.assertTrue(error.startswith("cannot scan: the answer is not JSON: [[[["), error)

    async def test_scores_that_are_not_finite_count_as_zero(self):
        _, url = fake_rspamd(self, (200, json.dumps(answer(
            "add header", score=float("nan"), required_score=float("inf"))[1]).encode()))
        self.assertEqual(await self.scan(url), codes.DECLINED)
        self.assertEqual(self.txn.header.get("X-Spam-Status"),
                         ["Yes, score=0.00 required=0.00 action=add_header tests=SYM_A, SYM_B"])
