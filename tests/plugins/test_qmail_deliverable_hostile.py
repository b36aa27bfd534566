"""qmail_deliverable against a broken qmail-deliverabled: an HTTP answer that never ends
(its header, or its body) is read no further than 64 KiB and counts as no answer, at once
rather than at the ``timeout``. Against a stand-in written here (tests/support/endless.py);
the SMTP server is real, on a loopback socket."""

from twisted.trial import unittest

from tests.plugins import test_qmail_deliverable
from tests.support.endless import endless_http_servers


class EndlessAnswerTests(unittest.TestCase):
    rcpt = test_qmail_deliverable.QmailDeliverableTests.rcpt

    async def test_endless_header_or_body_is_no_answer(self):
        for port, factory in endless_http_servers(self):
            replies = await self.rcpt("qmail_deliverable timeout 60 server 127.0.0.1:%d" % port,
                                      ["bob@example.com"])
            self.assertEqual(replies[0][0], 250)
            self.assertIn("error, Server 127.0.0.1:%d unreachable or broken! (answer longer "
                          "than 65536 bytes)" % port, self.log)
            self.assertEqual(factory.connections, 1)
