"""logging/transaction_id — write log lines to standard error, tagged with the transaction id.

List it in the ``logging`` config file: ``logging/transaction_id [LEVEL]``. It is
``logging/connection_id`` (same argument, same line format: ``qpsmtpd-tx plugins doc
logging/connection_id``) with ``<txn-id>`` where that one writes ``<conn-id>``.

``<txn-id>`` is the id of the transaction the line belongs to (``transaction.id``:
``<conn-id>.<n>``, the connection id and the number of the transaction in it, counting from 1
for the one that exists before HELO; the core's per-message ``message <txn-id> from …`` line
uses the same id), or ``???`` for a line outside any connection. Use it to pick the lines of
one message out of a busy log. The plugin's own lines are not written.

New behaviour: qpsmtpd 0.94 ships this plugin only as a demonstration that refuses to load
("The transaction ID feature is currently unsupported") because its transactions had no id;
this one works.

Config files: none. Notes: none. Replies: none.
"""

from qpsmtpd_tx.extend import isa_plugin

ConnectionId = isa_plugin("logging/connection_id")


class TransactionId(ConnectionId):
    """logging/connection_id, with the transaction id in front of each line."""

    def tag(self, transaction):
        """The id written in front of a line of ``transaction`` (``???`` if none)."""
        if transaction is not None and getattr(transaction, "id", None):
            return transaction.id
        return super().tag(None)
