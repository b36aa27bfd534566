"""The limit on recipients per transaction (config item ``max_recipients``)."""

from twisted.trial import unittest

from qpsmtpd_tx.server import StartupError
from tests.support.harness import MemoryClient, codes_of, make_server

TOO_MANY = "452 4.5.3 Too many recipients\r\n"


def client_after_mail(testcase, plugins=("rcpt_ok",), files=None):
    client = MemoryClient(make_server(testcase, list(plugins), files))
    client.command("EHLO client.example")
    client.command("MAIL FROM:<a@b.example>")
    return client


def rcpts(count, start=0):
    return "".join("RCPT TO:<u%d@example.com>\r\n" % n for n in range(start, start + count))


class RecipientLimitTests(unittest.TestCase):
    def test_default_is_1000(self):
        client = client_after_mail(self)
        self.assertEqual(codes_of(client.send(rcpts(1000))), [250] * 1000)
        self.assertEqual(client.command("RCPT TO:<one-more@example.com>"), TOO_MANY)
        self.assertEqual(len(client.session.transaction.recipients), 1000)

    def test_configured_limit_and_next_transaction(self):
        client = client_after_mail(self, files={"max_recipients": "2"})
        self.assertEqual(codes_of(client.send(rcpts(3))), [250, 250, 452])
        # The rcpt hooks are not even asked once the transaction is full.
        client.send(rcpts(1, start=10))
        self.assertEqual([str(r) for r in client.session.transaction.recipients],
                         ["<u0@example.com>", "<u1@example.com>"])
        # The refused recipients can go in the next transaction.
        self.assertEqual(codes_of(client.send("DATA\r\nSubject: x\r\n\r\ny\r\n.\r\n")), [354, 451])
        client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(codes_of(client.send(rcpts(2, start=2))), [250, 250])

    def test_rcpt_hooks_not_run_when_full(self):
        client = client_after_mail(self, plugins=["scripted rcpt OK"], files={"max_recipients": "1"})
        client.send(rcpts(3))
        calls = [hook for hook, _ in client.session.connection.notes["scripted_calls"]]
        self.assertEqual(calls, ["rcpt"])

    def test_zero_means_no_limit(self):
        client = client_after_mail(self, files={"max_recipients": "0"})
        self.assertEqual(codes_of(client.send(rcpts(1500))), [250] * 1500)

    def test_alias_targets_count(self):
        files = {"max_recipients": "3",
                 "aliases": "team@example.com -> a@example.com, b@example.com\n"
                            "big@example.com -> a@example.com, b@example.com, c@example.com, d@example.com\n"}
        client = client_after_mail(self, plugins=["aliases", "rcpt_ok"], files=files)
        # One alias alone over the limit is refused as a whole.
        self.assertEqual(client.command("RCPT TO:<big@example.com>"), TOO_MANY)
        self.assertEqual(client.command("RCPT TO:<x@example.com>"), "250 <x@example.com>, recipient ok\r\n")
        self.assertEqual(client.command("RCPT TO:<team@example.com>"), "250 <team@example.com>, recipient ok\r\n")
        # Full: 3 recipients in the transaction, though only 2 RCPTs were accepted.
        self.assertEqual(client.command("RCPT TO:<y@example.com>"), TOO_MANY)
        self.assertEqual(len(client.session.transaction.recipients), 3)

    def test_alias_targets_already_present_are_not_counted_twice(self):
        files = {"max_recipients": "2", "aliases": "team@example.com -> a@example.com, b@example.com\n"}
        client = client_after_mail(self, plugins=["aliases", "rcpt_ok"], files=files)
        self.assertEqual(codes_of(client.send("RCPT TO:<a@example.com>\r\nRCPT TO:<team@example.com>\r\n")),
                         [250, 250])
        self.assertEqual(len(client.session.transaction.recipients), 2)

    def test_bad_value_stops_start_up(self):
        for value in ("lots", "-1"):
            with self.assertRaises(StartupError) as caught:
                make_server(self, ["rcpt_ok"], {"max_recipients": value})
            self.assertRegex(str(caught.exception), r"/max_recipients:1: ")
