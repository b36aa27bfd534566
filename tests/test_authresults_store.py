"""qpsmtpd_tx.authresults.store rewriting our Authentication-Results field: found again by
the bytes it last wrote, without parsing it (each data_post result rewrites it), and still
found by its authserv-id when something else rewrote it."""

from twisted.trial import unittest

from qpsmtpd_tx import authresults
from qpsmtpd_tx.message import Header
from qpsmtpd_tx.objects import Connection, Transaction

ME = "mx.example.org"


def _transaction():
    header = Header.parse(b"Received: from x\nAuthentication-Results: other.example; spf=fail\n"
                          b"From: a@example.com\nSubject: hi\n")
    transaction = Transaction(connection=Connection(), header=header)
    authresults.add(header, ME, transaction.connection, transaction)
    header.add("Received", "by us", prepend=True)
    return transaction


class StoreTests(unittest.TestCase):
    def count_parses(self):
        calls = []
        original = authresults.authserv_id

        def counting(value):
            calls.append(value)
            return original(value)
        self.patch(authresults, "authserv_id", counting)
        return calls

    def ours(self, transaction):
        return [raw for name, raw in transaction.header.fields
                if name == authresults.FIELD and raw.startswith(b"%s: %s;" % (
                    authresults.FIELD.encode(), ME.encode()))]

    def test_results_rewrite_our_field_without_parsing_it(self):
        transaction = _transaction()
        parses = self.count_parses()
        for result in ("dkim=pass header.d=example.com", "dmarc=pass header.from=example.com"):
            authresults.store(transaction, result, ME, "data_post")
        self.assertEqual(parses, [])
        self.assertEqual(self.ours(transaction), [
            b"Authentication-Results: mx.example.org; auth=none; dkim=pass header.d=example.com;"
            b" dmarc=pass header.from=example.com\n"])
        self.assertEqual(transaction.header.get("Authentication-Results")[1],
                         "other.example; spf=fail")

    def test_a_field_rewritten_elsewhere_is_found_by_its_authserv_id(self):
        transaction = _transaction()
        fields = transaction.header.fields
        [index] = [i for i, (_, raw) in enumerate(fields) if raw.startswith(
            b"Authentication-Results: mx.")]
        fields[index] = (authresults.FIELD, fields[index][1].replace(b"auth=none", b"x=y"))
        authresults.store(transaction, "dkim=none", ME, "data_post")
        self.assertEqual(self.ours(transaction), [
            b"Authentication-Results: mx.example.org; auth=none; dkim=none\n"])
        self.assertEqual(len(transaction.header.get("Authentication-Results")), 2)

    def test_a_copied_header_finds_our_field_by_its_authserv_id(self):
        transaction = _transaction()
        transaction.header = Header(transaction.header.fields)
        authresults.store(transaction, "dkim=none", ME, "data_post")
        self.assertEqual(self.ours(transaction), [
            b"Authentication-Results: mx.example.org; auth=none; dkim=none\n"])

    def test_a_result_cannot_split_the_field(self):
        """A plugin's result quoting message text with a line break (here written on
        purpose) stays in our one field: no Bcc field appears."""
        transaction = _transaction()
        authresults.store(transaction, "x=pass reason=\"a\r\nBcc: victim@example.net\"", ME,
                          "data_post")
        self.assertEqual(transaction.header.get("Bcc"), [])
        self.assertEqual(self.ours(transaction), [
            b"Authentication-Results: mx.example.org; auth=none;"
            b" x=pass reason=\"a??Bcc: victim@example.net\"\n"])
