"""Tests of the logging plugin logging/transaction_id (logging/connection_id with the transaction
id as the tag): one case calls its hook with fake transactions, one runs a session end to end
over a real loopback socket (tests.support.server); its argument errors are checked with
logging/connection_id's (test_logging_connection_id).
"""

from twisted.trial import unittest

from qpsmtpd_tx import codes
from tests.support.content_logging_cases import IdLoggingCase, fake_transaction


class TransactionIdTests(IdLoggingCase, unittest.TestCase):
    def test_transaction_id_format_and_default_level(self):
        server, plugin = self.plugin("logging/transaction_id")
        self.assertEqual(plugin.log_threshold, codes.LOGWARN)
        txn = fake_transaction()
        txn.id = "7f.3"
        plugin.hook_logging(txn, codes.LOGWARN, "data_post", "loop", "fail")
        plugin.hook_logging(txn, codes.LOGNOTICE, None, None, "not written")
        plugin.hook_logging(None, codes.LOGWARN, None, None, "outside")
        self.assertEqual(plugin.stream.getvalue(), "7f.3 loop plugin: fail\n??? outside\n")

    async def test_transaction_id_end_to_end(self):
        lines, cid = await self.run_session("logging/transaction_id LOGINFO")
        # .1 before HELO, .2 after HELO, .3 after MAIL, .4 after the message
        self.assertIn("%s.1 dispatching NOOP" % cid, lines)
        self.assertIn("%s.1 dispatching HELO client.example" % cid, lines)
        self.assertIn("%s.2 dispatching MAIL FROM:<s@sender.example>" % cid, lines)
        self.assertIn("%s.3 rcpt_ok plugin: pass: example.com in rcpthosts" % cid, lines)
        self.assertIn("%s.3 message %s.3 from <s@sender.example> to <u@example.com>, "
                      "24 bytes: 250 Queued" % (cid, cid), lines)
        self.assertIn("%s.4 503 Use MAIL before RCPT" % cid, lines)
