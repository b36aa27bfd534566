"""Per-recipient outcomes of one message (``recipient_policy split``) and the DATA reply.

With ``split`` every recipient shares the transaction, and each content filter decides per
distinct set of its settings (:func:`recipient_groups`): a filter that refuses the message
for some recipients only records a refusal for them (:func:`refuse`) and lets the message go
on for the others; later filters see only the recipients still accepted (:func:`accepted`).
A filter that changes the header for some recipients only (a munged Subject, a tag) records
the change for them (:func:`edit_header`); at queue time the recipients are delivered in
*copies*, one per distinct set of changes (:func:`copies`).

SMTP has one reply after DATA. :func:`data_reply` is the table:

=================================  ==========================================================
every recipient accepted           the queue's reply (250)
every recipient refused            that refusal (5xx)
any temporary failure              its 4xx for the whole message (nothing is delivered; the
                                   client retries)
accepted and refused mixed         the queue's reply (250) for the accepted recipients; each
                                   refused one is quarantined, discarded or delivered tagged
                                   (config ``rejected_recipients``) and logged
=================================  ==========================================================

No bounce is ever generated.
"""

import attr

from qpsmtpd_tx import codes, policy
from qpsmtpd_tx.message import Header

ACCEPT, REJECT, TEMPFAIL = "accept", "reject", "tempfail"
#: what happens to the copy of a recipient refused while others are accepted (config item
#: ``rejected_recipients``)
QUARANTINE, DISCARD, TAG = DISPOSITIONS = ("quarantine", "discard", "tag")
#: the header a tagged copy (``rejected_recipients tag``) gets, one per refusal
TAG_HEADER = "X-Recipient-Rejected"
#: transaction note holding the :class:`MessageOutcomes`
NOTE = "recipient_outcomes"


@attr.s(frozen=True, slots=True)
class Outcome:
    """One recipient's refusal: ``kind`` (REJECT or TEMPFAIL), the SMTP ``code`` and ``text``
    the whole message would have got, and the ``filter`` (plugin name) that decided."""

    kind = attr.ib()
    code = attr.ib()
    text = attr.ib()
    filter = attr.ib()

    def describe(self):
        """``552 spam score exceeded threshold (by spamassassin)`` for logs and tags."""
        return "%d %s (by %s)" % (self.code, self.text, self.filter)


@attr.s(frozen=True, slots=True)
class Verdict:
    """What :func:`data_reply` decided: ``code`` and ``text`` to answer now (``code`` None:
    deliver and answer with the queue's reply), the recipients to ``deliver`` to, and the
    ``refused`` ``(recipient, Outcome)`` pairs whose copies go where the operator says."""

    code = attr.ib()
    text = attr.ib()
    deliver = attr.ib()
    refused = attr.ib()


class MessageOutcomes:
    """The refusals and header changes recorded for one transaction's recipients."""

    def __init__(self):
        #: recipient → Outcome, in the order they were refused
        self.refused = {}
        #: recipient → list of ``(function, args)`` applied to its copy's header
        self.edits = {}


def of(transaction):
    """The transaction's :class:`MessageOutcomes` (created on first use)."""
    found = transaction.notes.get(NOTE)
    if found is None:
        found = transaction.notes[NOTE] = MessageOutcomes()
    return found


def accepted(transaction):
    """The transaction's recipients that no filter has refused, in order."""
    found = transaction.notes.get(NOTE)
    if found is None or not found.refused:
        return list(transaction.recipients)
    return [r for r in transaction.recipients if r not in found.refused]


def refuse(transaction, recipients, outcome):
    """Record ``outcome`` for each of ``recipients`` (the first refusal of a recipient counts)."""
    refused = of(transaction).refused
    for recipient in recipients:
        refused.setdefault(recipient, outcome)


def edit_header(transaction, recipients, function, *args):
    """Call ``function(header, *args)`` on the header of ``recipients``' copy.

    When ``recipients`` are all the recipients and none was refused, the message's own
    header is changed at once; otherwise the change is kept for their copy (applied by
    :func:`copies`, after the changes to the whole message), so that the copy of a recipient
    refused earlier (quarantined, or delivered tagged) does not get a later filter's change
    meant for the others. ``function`` and ``args`` are compared to tell copies apart, so use
    a module-level function or an unbound method (``Header.add``), not a lambda.
    """
    everyone = accepted(transaction)
    if set(recipients) >= set(everyone) and len(everyone) == len(transaction.recipients):
        if transaction.header is not None:
            function(transaction.header, *args)
        return
    edits = of(transaction).edits
    for recipient in recipients:
        edits.setdefault(recipient, []).append((function, args))


def copies(transaction):
    """``[(recipients, header)]``: one copy of the message per distinct set of header changes.

    Recipients with no changes share the message's own header (the first copy when there
    are any); each other copy gets its own :class:`~qpsmtpd_tx.message.Header`.
    """
    found = transaction.notes.get(NOTE)
    edits = found.edits if found is not None else {}
    groups = group_by(transaction.recipients, lambda r: tuple(edits.get(r, ())))
    groups.sort(key=lambda group: len(group[0]) > 0)
    result = []
    for key, members in groups:
        header = transaction.header
        if key and header is not None:
            header = Header(header.fields)
            for function, args in key:
                function(header, *args)
        result.append((members, header))
    return result


def group_by(items, key):
    """``[(key, [items])]`` in order of first appearance; keys are compared with ``==`` (they
    need not be hashable: dicts of settings, tuples of header changes)."""
    groups = []
    for item in items:
        value = key(item)
        for group_value, members in groups:
            if group_value == value:
                members.append(item)
                break
        else:
            groups.append((value, [item]))
    return groups


def data_reply(recipients, refused):
    """The :class:`Verdict` for ``recipients`` given ``refused`` (recipient → Outcome).

    Any temporary failure answers its 4xx and delivers nothing; all refused answers the
    last refusal (the filter that refused the last accepted recipient); otherwise the
    accepted recipients are delivered and the refused ones listed.
    """
    outcomes = [(r, refused[r]) for r in recipients if r in refused]
    for _, outcome in outcomes:
        if outcome.kind == TEMPFAIL:
            return Verdict(outcome.code, outcome.text, [], [])
    deliver = [r for r in recipients if r not in refused]
    if outcomes and not deliver:
        last = list(refused.values())[-1]
        return Verdict(last.code, last.text, [], outcomes)
    return Verdict(None, None, deliver, outcomes)


# -- for content filters ------------------------------------------------------------------------


def recipient_groups(plugin, transaction):
    """``[(values, recipients)]``: the accepted recipients by ``plugin``'s settings.

    ``values`` maps each note of the plugin's grouping settings (:attr:`policy.Setting.groups`)
    to its value for the group. With ``recipient_policy split`` there is one group per
    distinct set of values; with ``group`` and ``strictest`` one group of every recipient
    with the message's values (:meth:`~qpsmtpd_tx.plugin.Plugin.transaction_setting`).
    Without recipients: one empty group with the argument-or-default values.
    """
    settings = [s for s in plugin.recipient_settings if s.groups]
    recipients = accepted(transaction)
    server_policy = getattr(plugin.server, "recipient_policy", policy.SPLIT)
    if not recipients or server_policy != policy.SPLIT:
        values = {s.note: plugin.transaction_setting(transaction, s.note) for s in settings}
        return [(values, recipients)]
    return group_by(recipients, lambda r: {s.note: plugin.setting(r, s.note) for s in settings})


#: hook results that refuse the message for good, or for now
_REJECTS = (codes.DENY, codes.DENY_DISCONNECT)
_TEMPFAILS = (codes.DENYSOFT, codes.DENYSOFT_DISCONNECT)
#: the data_post reply code of each refusal (see qpsmtpd_tx.replies)
_DATA_POST_CODE = {codes.DENY: 552, codes.DENY_DISCONNECT: 552,
                   codes.DENYSOFT: 452, codes.DENYSOFT_DISCONNECT: 452}


def _code(result):
    return result[0] if isinstance(result, tuple) else result


def per_recipient_result(plugin, transaction, results, default_text="Message denied"):
    """Turn a filter's results per group (``[(recipients, result)]``) into its hook's result.

    ``result`` is what the hook would return for a message to those recipients only
    (DECLINED, ``(DENY, text)``…). If every group has the same result it is returned as it
    is. Otherwise a temporary failure of any group is returned for the whole message; a
    refusal is recorded for its group's recipients (:func:`refuse`) and DECLINED returned,
    unless no recipient is left accepted: then the refusal is returned.
    """
    if not results:
        return codes.DECLINED
    first = results[0][1]
    if all(result == first for _, result in results):
        return first
    for _, result in results:
        if _code(result) in _TEMPFAILS:
            return result
    refusal = None
    for recipients, result in results:
        code = _code(result)
        if code in _REJECTS:
            text = result[1] if isinstance(result, tuple) and len(result) > 1 else default_text
            refuse(transaction, recipients, Outcome(REJECT, _DATA_POST_CODE[code], text,
                                                    plugin.name))
            plugin.log(codes.LOGINFO, "refused for %s: %s" % (
                ", ".join(r.format() for r in recipients), text), transaction)
            refusal = result
    if refusal is not None and not accepted(transaction):
        return refusal
    return codes.DECLINED
