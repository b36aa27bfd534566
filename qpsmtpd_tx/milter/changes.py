"""A milter's changes to a message, applied to our transaction: header fields added,
inserted, changed or deleted, the body replaced, recipients added and deleted, the sender
changed (the ``R_*`` modifications of :mod:`~qpsmtpd_tx.milter.codec`, received with the
final answer to the end of the message). QUARANTINE is not a change: the plugin decides it.
"""

from qpsmtpd_tx.address import Address
from qpsmtpd_tx.codes import LOGINFO, LOGWARN
from qpsmtpd_tx.message import BodySpool, field_bytes
from qpsmtpd_tx.milter import codec


def apply(transaction, modifications, log):
    """Apply ``modifications`` (codec.Reply objects, in the milter's order) to
    ``transaction``; ``log(level, text)`` records each one."""
    new_body = None
    for mod in modifications:
        command = mod.command
        if command == codec.R_ADDHEADER:
            transaction.header.add(mod.name, mod.value)
        elif command == codec.R_INSHEADER:
            insert_header(transaction.header, mod.index, mod.name, mod.value)
        elif command == codec.R_CHGHEADER:
            change_header(transaction.header, mod.index, mod.name, mod.value)
        elif command == codec.R_REPLBODY:
            if new_body is None:
                new_body = BodyReplacement(transaction)
            new_body.write(mod.data)
        elif command == codec.R_ADDRCPT:
            add_recipient(transaction, mod.address, log)
        elif command == codec.R_DELRCPT:
            delete_recipient(transaction, mod.address, log)
        elif command == codec.R_CHGFROM:
            change_sender(transaction, mod.address, mod.parameters, log)
    if new_body is not None:
        new_body.install()
        log(LOGINFO, "replaced the body (%d bytes)" % transaction.body.size)


def insert_header(header, index, name, value):
    """Insert a field at position ``index`` of the header (0: at the top; past the end: last)."""
    header.fields.insert(min(index, len(header.fields)), (name, field_bytes(name, value)))


def change_header(header, index, name, value):
    """Change (or with an empty value delete) the ``index``-th field called ``name`` (1 for
    the first; 0 is taken as 1); when there is no such field, a value is added."""
    lname, seen = name.lower(), 0
    for i, (field, _) in enumerate(header.fields):
        if field.lower() != lname:
            continue
        seen += 1
        if seen == max(index, 1):
            if value.strip():
                header.fields[i] = (name, field_bytes(name, value))
            else:
                del header.fields[i]
            return
    if value.strip():
        header.add(name, value)


def milter_address(text):
    """An address as a milter gives it (``<a@b>`` or ``a@b``) → Address, or None."""
    text = text.strip()
    if not text.startswith("<"):
        text = "<%s>" % text
    return Address.parse(text)


def add_recipient(transaction, text, log):
    """ADDRCPT: a new recipient (no notes), unless it is one already."""
    address = milter_address(text)
    if address is None or address.is_null:
        log(LOGWARN, "cannot add recipient %r" % text)
        return
    if address not in transaction.recipients:
        transaction.add_recipient(address)
    log(LOGINFO, "added recipient %s" % address.format())


def delete_recipient(transaction, text, log):
    """DELRCPT: every recipient with that address goes (the domain in any case)."""
    address = milter_address(text)
    before = len(transaction.recipients)
    if address is not None:
        transaction.recipients = [r for r in transaction.recipients if r != address]
    if len(transaction.recipients) < before:
        log(LOGINFO, "deleted recipient %s" % text)
    else:
        log(LOGWARN, "deleted recipient %s (not a recipient)" % text)


def change_sender(transaction, text, parameters, log):
    """CHGFROM: the new sender; its ESMTP parameters are dropped (and logged)."""
    address = Address.null() if text.strip() in ("<>", "") else milter_address(text)
    if address is None:
        log(LOGWARN, "cannot change the sender to %r" % text)
        return
    transaction.sender = address
    log(LOGINFO, "changed the sender to %s%s" % (
        address.format(), " (parameters dropped: %s)" % " ".join(parameters) if parameters else ""))


class BodyReplacement:
    """The body a milter sends in REPLBODY chunks (CRLF line endings), spooled as the
    message's new body (LF line endings, in memory or in ``spool_dir`` as any body)."""

    def __init__(self, transaction):
        self.transaction = transaction
        old = transaction.body
        self.spool = BodySpool(getattr(old, "spool_dir", None), getattr(old, "threshold", 0))
        self._cr = b""

    def write(self, data):
        """Add a chunk (a CRLF split across two chunks is joined)."""
        data = self._cr + data
        self._cr = b"\r" if data.endswith(b"\r") else b""
        if self._cr:
            data = data[:-1]
        self.spool.write(data.replace(b"\r\n", b"\n"))

    def install(self):
        """Make it the message's body (the old one is released)."""
        self.spool.write(self._cr)
        self.spool.finish()
        old, self.transaction.body = self.transaction.body, self.spool
        old.discard()
        header = self.transaction.header
        self.transaction.data_size = (len(header.as_bytes()) if header else 0) + 1 + self.spool.size
