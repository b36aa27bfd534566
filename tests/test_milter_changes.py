"""A milter's end-of-message changes applied to a transaction (qpsmtpd_tx/milter/changes.py),
without sockets: header field positions and occurrences, body replacement through the
spool, recipient and sender changes."""

import os

from twisted.trial import unittest

from qpsmtpd_tx.address import Address
from qpsmtpd_tx.codes import LOGWARN
from qpsmtpd_tx.message import BodySpool, Header
from qpsmtpd_tx.milter import changes, codec
from qpsmtpd_tx.milter.codec import Reply
from qpsmtpd_tx.objects import Transaction


def header():
    return Header.parse(b"Received: one\nX-A: first\nSubject: s\nX-A: second\n")


class HeaderTests(unittest.TestCase):
    def names(self, h):
        return [raw.decode().rstrip("\n") for _, raw in h.fields]

    def test_insert_at_a_position_or_last(self):
        h = header()
        changes.insert_header(h, 1, "X-New", "v")
        changes.insert_header(h, 99, "X-Last", "w")
        self.assertEqual(self.names(h), ["Received: one", "X-New: v", "X-A: first", "Subject: s",
                                         "X-A: second", "X-Last: w"])

    def test_change_the_nth_occurrence_delete_or_add(self):
        h = header()
        changes.change_header(h, 2, "x-a", "changed")        # names compare in any case
        changes.change_header(h, 0, "Subject", "")           # 0 is the first: deleted
        changes.change_header(h, 3, "X-A", "")               # no third X-A, no value: nothing
        changes.change_header(h, 1, "X-Missing", "added")
        self.assertEqual(self.names(h), ["Received: one", "X-A: first", "x-a: changed",
                                         "X-Missing: added"])


class EnvelopeAndBodyTests(unittest.TestCase):
    def setUp(self):
        self.spool_dir = self.mktemp()
        self.transaction = Transaction(sender=Address("a", "b.example"),
                                       recipients=[Address("u", "example.com")],
                                       header=header(), body=BodySpool(self.spool_dir, 10))
        self.transaction.body.write(b"old\n")
        self.logged = []

    def apply(self, *mods):
        changes.apply(self.transaction, mods, lambda level, text: self.logged.append((level, text)))

    def test_body_replaced_through_the_spool(self):
        big = b"line\r\n" * 100
        self.apply(*[Reply(codec.R_REPLBODY, data=big[i:i + 7]) for i in range(0, len(big), 7)])
        body = self.transaction.body
        self.assertEqual(body.getvalue(), b"line\n" * 100)
        self.assertTrue(body.filename and os.path.dirname(body.filename).endswith(self.spool_dir))
        self.assertEqual(self.transaction.data_size, len(header().as_bytes()) + 1 + 500)

    def test_recipients_and_sender(self):
        self.apply(Reply(codec.R_ADDRCPT, address="<v@example.com>"),
                   Reply(codec.R_ADDRCPT, address="v@example.com"),       # already there
                   Reply(codec.R_DELRCPT, address="<u@EXAMPLE.com>"),
                   Reply(codec.R_DELRCPT, address="<nobody@example.com>"),
                   Reply(codec.R_ADDRCPT, address="not an address"),
                   Reply(codec.R_CHGFROM, address="<>"))
        self.assertEqual([r.format() for r in self.transaction.recipients], ["<v@example.com>"])
        self.assertTrue(self.transaction.sender.is_null)
        self.assertEqual([text for level, text in self.logged if level == LOGWARN],
                         ["deleted recipient <nobody@example.com> (not a recipient)",
                          "cannot add recipient 'not an address'"])
