"""loop, uribl and sender_permitted_from read their level per recipient (notes
``loop_max_hops``, ``uribl_action``, ``spf_reject``): with ``recipient_policy split`` one
message gets an outcome per recipient. loop runs in memory; uribl and sender_permitted_from
ask the suite's private NSD (tests/support/dns.py) over a loopback socket."""

import os

from twisted.trial import unittest

from tests.plugins.test_sender_permitted_from import SPFCase
from tests.plugins.test_uribl import LISTED_TEXT, URIBLCase
from tests.support.filter_cases import message
from tests.support.harness import MemoryClient, codes_of, eventually, maildir_messages, make_server


class LoopTests(unittest.TestCase):
    async def test_max_hops_per_recipient(self):
        maildir = os.path.abspath(self.mktemp())
        server = make_server(self, [
            "note_rcpt strict@example.com loop_max_hops=3 bad@example.com loop_max_hops=lots",
            "loop 10", "rcpt_ok", "queue/maildir %s %%u" % maildir],
            {"quarantine_dir": os.path.abspath(self.mktemp())})
        client = MemoryClient(server)
        client.command("EHLO c.example")
        client.command("MAIL FROM:<a@b.example>")
        for rcpt in ("strict", "plain", "bad"):
            client.command("RCPT TO:<%s@example.com>" % rcpt)
        client.command("DATA")
        # 2 Received here + ours = 3 hops: strict@'s limit, not the argument's 10
        client.protocol.dataReceived(b"Received: a\r\nReceived: b\r\nSubject: x\r\n\r\nb\r\n.\r\n")
        await eventually(lambda: client.transport.value())
        self.assertEqual(codes_of(client.take()), [250])
        delivered = {r: maildir_messages(os.path.join(maildir, r + "@example.com"))
                     for r in ("strict", "plain", "bad")}
        # a bad note falls back to the argument
        self.assertEqual({r: len(m) for r, m in delivered.items()},
                         {"strict": 0, "plain": 1, "bad": 1})


class URIBLActionTests(URIBLCase):
    async def test_uribl_action_per_recipient(self):
        zone = self.list_zone(self.listed("spam.example.com"))
        self.serve_uribl(zone, before=["note_rcpt strict@example.com uribl_action=deny"
                                       " quiet@example.com uribl_action=log"])
        client = await self.open()
        # one refused (quarantined), the zone's add-header for plain@; only plain@ is left,
        # so its copy is the message the queue gets
        outcome = await self.transaction(client, ["strict@example.com", "plain@example.com"],
                                         message("see spam.example.com"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.top(1), ["X-URIBL-Match: spam.example.com in %s: %s"
                                          % (zone, LISTED_TEXT)])
        outcome = await self.transaction(client, ["quiet@example.com"],
                                         message("see spam.example.com"))
        self.assertEqual(outcome.header.count("X-URIBL-Match"), 0)
        outcome = await self.transaction(client, ["strict@example.com"],
                                         message("see spam.example.com"))
        self.assertEqual(outcome.data, (552, "spam.example.com in %s: %s" % (zone, LISTED_TEXT)))


class SPFLevelTests(SPFCase):
    async def send_from(self, client, sender, rcpts):
        """One message from ``sender`` to ``rcpts``: the reply code to its end."""
        self.assertEqual((await client.command("MAIL FROM:<%s>" % sender))[0], 250)
        for rcpt in rcpts:
            self.assertEqual((await client.command("RCPT TO:<%s>" % rcpt))[0], 250)
        self.assertEqual((await client.command("DATA"))[0], 354)
        return (await client.command(message("hello") + "."))[0]

    async def test_spf_reject_note_at_data_time(self):
        quarantine = os.path.abspath(self.mktemp())
        self.serve_spf("reject 1", files={"quarantine_dir": quarantine},
                       before=["note_rcpt strict@example.com spf_reject=3"
                               " picky@example.com spf_reject=2"])
        client = await self.open()
        fail = "user@" + self.domain("fail")
        # level 1 at MAIL FROM lets the fail through; strict@'s level 3 refuses it at the end
        code = await self.send_from(client, fail, ["strict@example.com", "alice@example.com"])
        self.assertEqual(code, 250)
        [held] = maildir_messages(quarantine)
        self.assertIn(b"X-Recipient-Rejected: <strict@example.com>; 552 SPF - forgery: ", held)
        self.assertIn(b"\nReceived-SPF: fail ", held)
        # level 2 makes a fail temporary: the whole message waits
        code = await self.send_from(client, fail, ["picky@example.com", "alice@example.com"])
        self.assertEqual(code, 452)
        # a sender that passes: nobody is refused
        code = await self.send_from(client, "user@" + self.domain("pass"), ["strict@example.com"])
        self.assertEqual(code, 250)
