"""What the tests of an Authentication-Results entry (tests/test_dkim_verify.py,
test_dkim_auth_result.py, test_authresults_hostile.py) share: the entry as it stands in our
field once stored, the way the dkim and arc plugins add it (``authresults.store``, which makes
every entry safe for the field)."""

from qpsmtpd_tx import authresults
from qpsmtpd_tx.message import Header
from qpsmtpd_tx.testing import fake_transaction

ME = "mx.example.org"
_START = "%s; auth=none; " % ME


def entry_in_field(entry):
    """``entry`` as our Authentication-Results field shows it after a ``data_post`` plugin
    stored it on a message that already has the field."""
    transaction = fake_transaction()
    transaction.header = Header.parse(b"From: a@example.com\nSubject: hi\n")
    authresults.add(transaction.header, ME, transaction.connection, transaction)
    authresults.store(transaction, entry, ME, "data_post")
    [value] = transaction.header.get(authresults.FIELD)
    assert value.startswith(_START), value
    return value[len(_START):]
