"""At disconnect the session makes a new transaction only when post-connection hooks will see
it (qpsmtpd resets the transaction there; without such hooks nothing would use the new one).
The hooks still get a fresh transaction, after QUIT and when the client just goes."""

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial import unittest

from qpsmtpd_tx import session as session_module
from qpsmtpd_tx.objects import Transaction
from tests.support.harness import MemoryClient, make_server


class CountedTransaction(Transaction):
    """A real Transaction that counts how many were made (``made``)."""

    made = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        CountedTransaction.made += 1


class LastTransactionTests(unittest.TestCase):
    """Transactions made by a connection that says EHLO and QUIT (or goes away)."""

    def setUp(self):
        CountedTransaction.made = 0
        self.patch(session_module, "Transaction", CountedTransaction)

    def connection(self, plugins, quit=True):
        client = MemoryClient(make_server(self, plugins))
        client.command("EHLO client.example")
        if quit:
            self.assertTrue(client.command("QUIT").startswith("221 "))
        client.protocol.connectionLost(Failure(ConnectionDone()))
        return client

    def test_none_for_nobody(self):
        for quit in (True, False):
            CountedTransaction.made = 0
            self.connection(["rcpt_ok"], quit)
            self.assertEqual(CountedTransaction.made, 2, quit)     # at connect and after EHLO

    def test_a_fresh_one_for_post_connection_hooks(self):
        for quit in (True, False):
            CountedTransaction.made = 0
            client = self.connection(["note_rcpt", "scripted post-connection DECLINED"], quit)
            self.assertEqual(CountedTransaction.made, 3, quit)
            calls = client.session.connection.notes["scripted_calls"]
            self.assertEqual([hook for hook, _ in calls], ["post-connection"])
            self.assertEqual(client.session.transaction.notes, {}, quit)
