"""Connection and Transaction: the state plugins read and annotate.

Notes are plain dicts: ``connection.notes`` live for the connection, ``transaction.notes`` are
wiped with each new transaction (MAIL, RSET, end of DATA, HELO/EHLO), and each recipient's
``Address.notes`` travel with that recipient.
"""

import itertools
import time

import attr

from qpsmtpd_tx.message import BodySpool

_connection_ids = itertools.count(1)
_connection_id_prefix = ""


def set_connection_id_prefix(prefix):
    """Make this process's connection ids distinct from other workers' (``w1.`` …)."""
    global _connection_id_prefix
    _connection_id_prefix = prefix


def next_connection_id():
    """A connection id unique among the server's processes, used in log lines."""
    return "%s%x" % (_connection_id_prefix, next(_connection_ids))


@attr.s(slots=True, eq=False)
class Connection:
    """One client connection: its peers, what it said in HELO/EHLO, and its notes."""

    remote_ip = attr.ib(default="")
    remote_port = attr.ib(default=0)
    local_ip = attr.ib(default="")
    local_port = attr.ib(default=0)
    remote_host = attr.ib(default=None)
    remote_info = attr.ib(default=None)
    id = attr.ib(factory=next_connection_id)
    hello = attr.ib(default=None)
    hello_host = attr.ib(default=None)
    relay_client = attr.ib(default=False)
    tls = attr.ib(default=False)
    auth_user = attr.ib(default=None)
    auth_mechanism = attr.ib(default=None)
    notes = attr.ib(factory=dict)
    started = attr.ib(factory=time.time)
    transaction_count = attr.ib(default=0)
    #: the connection's DNS lookups (:class:`qpsmtpd_tx.dns.DNSBudget`), set by the session
    dns = attr.ib(default=None)


@attr.s(slots=True, eq=False)
class Transaction:
    """One mail transaction: envelope, message and notes.

    ``header`` is None until the end of the header block was read in DATA; ``body`` holds the
    text after the header's empty separator line.
    """

    connection = attr.ib(default=None)
    id = attr.ib(default="")
    sender = attr.ib(default=None)
    recipients = attr.ib(factory=list)
    notes = attr.ib(factory=dict)
    header = attr.ib(default=None)
    #: the header's ``(name, raw)`` fields as the client sent them, kept when the header is
    #: read, before plugins and the core add or remove fields (DKIM and ARC are checked on
    #: these); None until then
    received_fields = attr.ib(default=None)
    body = attr.ib(factory=BodySpool)
    data_size = attr.ib(default=0)
    started = attr.ib(factory=time.time)
    #: the SMTPSession running this transaction (plugins use it to reply themselves)
    session = attr.ib(default=None, repr=False)

    def add_recipient(self, address):
        """Append a recipient (an Address)."""
        self.recipients.append(address)

    def remove_recipient(self, address):
        """Remove every recipient with the same address string."""
        target = address.address if hasattr(address, "address") else str(address)
        self.recipients = [r for r in self.recipients if r.address != target]

    def message_bytes(self):
        """Header, separator and body as one bytes object (LF endings)."""
        return self.header_bytes() + self.body.getvalue()

    def header_bytes(self):
        """The header block followed by the empty separator line."""
        return (self.header.as_bytes() if self.header is not None else b"") + b"\n"

    def discard(self):
        """Release the body spool (also when a plugin replaced or removed it)."""
        discard = getattr(self.body, "discard", None)
        if discard is not None:
            discard()
