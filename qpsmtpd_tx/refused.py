"""Where the copy of a refused recipient goes when others of the message are accepted.

With ``recipient_policy split`` a message some filters refused for some recipients only is
answered 250 and delivered to the others (:mod:`qpsmtpd_tx.outcomes`). Each refused
recipient is logged (LOGNOTICE: recipient, filter, reply) and its copy goes where the config
item ``rejected_recipients`` says:

- ``quarantine`` (default): one file in the Maildir ``quarantine_dir`` (default
  ``var/quarantine`` in the server's working directory) before anything is queued, with
  ``Return-Path``, one ``Delivered-To`` per refused recipient and one
  ``X-Recipient-Rejected: <rcpt>; 552 text (by filter)`` per refusal above the header. If
  it cannot be written the whole message is answered ``451`` (nothing is lost);
- ``discard``: nothing is kept;
- ``tag``: the recipient stays in the delivery, its copy with the ``X-Recipient-Rejected``
  field at the top.

No bounce is ever sent.
"""

import os

from qpsmtpd_tx import codes, outcomes
from qpsmtpd_tx.maildir import write_maildir
from qpsmtpd_tx.message import Header

#: the quarantine Maildir's default, relative to the server's working directory
DEFAULT_QUARANTINE = os.path.join("var", "quarantine")
QUARANTINE_FAILED_TEXT = "Unable to quarantine the message for some recipients; try again later"


def quarantine_dir(server):
    """The absolute path of the quarantine Maildir (config ``quarantine_dir``)."""
    return os.path.abspath(getattr(server, "quarantine_dir", None) or DEFAULT_QUARANTINE)


def tag_value(recipient, outcome):
    """The ``X-Recipient-Rejected`` value for one refusal."""
    return "%s; %s" % (recipient.format(), outcome.describe())


def dispose(session, refused):
    """Log each ``(recipient, Outcome)`` of ``refused`` and send its copy where the config
    says; the refused recipients leave the transaction unless tagged.

    Returns None when done, or a Deferred (the quarantine is written in a thread) firing
    with None, or failing when the quarantine could not be written.
    """
    server, txn = session.server, session.transaction
    how = getattr(server, "rejected_recipients", outcomes.QUARANTINE)
    where = {outcomes.QUARANTINE: "quarantined in %s" % quarantine_dir(server),
             outcomes.DISCARD: "discarded", outcomes.TAG: "delivered tagged"}[how]
    for recipient, outcome in refused:
        session.log(codes.LOGNOTICE, "recipient %s refused by %s: %d %s; its copy is %s" % (
            recipient.format(), outcome.filter, outcome.code, outcome.text, where))
    if how == outcomes.TAG:
        edits = outcomes.of(txn).edits
        for recipient, outcome in refused:
            edits.setdefault(recipient, []).append(
                (Header.add, (outcomes.TAG_HEADER, tag_value(recipient, outcome), True)))
        return None
    gone = {recipient for recipient, _ in refused}
    txn.recipients = [r for r in txn.recipients if r not in gone]
    if how == outcomes.DISCARD:
        return None
    return quarantine(server, txn, refused, session.log)


def after_delivery(server, transaction, refused, log):
    """For a back end that refused some recipients after taking the message for the others
    (LMTP): log each ``(recipient, Outcome)`` and keep its copy as ``rejected_recipients``
    says (``tag`` cannot deliver it: quarantined as well). None, or a Deferred."""
    how = getattr(server, "rejected_recipients", outcomes.QUARANTINE)
    where = "discarded" if how == outcomes.DISCARD else "quarantined in %s" % quarantine_dir(
        server)
    for recipient, outcome in refused:
        log(codes.LOGNOTICE, "recipient %s refused by %s after the message: %d %s; its copy "
            "is %s" % (recipient.format(), outcome.filter, outcome.code, outcome.text, where),
            transaction)
    if how == outcomes.DISCARD:
        return None
    return quarantine(server, transaction, refused,
                      lambda level, text: log(level, text, transaction))


def quarantine(server, transaction, refused, log):
    """Write one copy for the ``(recipient, Outcome)`` pairs into the quarantine Maildir (in
    a thread); a Deferred firing when it is on disk (failing if it cannot be written)."""
    sender = transaction.sender.format() if transaction.sender is not None else "<>"
    lines = ["Return-Path: %s\n" % sender]
    lines += ["Delivered-To: %s\n" % r.address for r, _ in refused]
    lines += ["%s: %s\n" % (outcomes.TAG_HEADER, tag_value(r, o)) for r, o in refused]
    head = "".join(lines).encode("utf-8", "surrogateescape")
    body = transaction.body.open()
    directory = quarantine_dir(server)
    d = server.run_blocking(_write, directory, [head, transaction.header_bytes()], body)
    d.addCallback(lambda name: log(
        codes.LOGINFO, "quarantined as %s" % os.path.join(directory, "new", name)))
    return d


def _write(directory, head, body):
    try:
        return write_maildir(directory, 0o700, head, body)
    finally:
        body.close()
