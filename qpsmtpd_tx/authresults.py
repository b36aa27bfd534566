"""The message's one Authentication-Results field (RFC 8601), built from the stored results.

Plugins store results (``spf=pass smtp.mailfrom=example.com``, ``dkim=pass header.d=…``)
with :meth:`~qpsmtpd_tx.plugin.Plugin.store_auth_results`: into the transaction note
``authentication_results`` (a list), so a second message on a connection does not repeat
the first one's results; results stored at connect or HELO/EHLO (``iprev=pass``) are about
the connection and go into the connection note of the same name (text), for every message. The field is
``<me>; auth=…[; <connection results>][; <transaction results>]``.

Before adding its field the core removes every incoming Authentication-Results field whose
authserv-id is ours (RFC 8601 section 5: a client must not be able to pass off results as
ours). Results stored after the field was added (by ``data_post`` plugins such as dkim and
dmarc) rewrite it in place, so the message always carries exactly one field of ours.
"""

import re

from qpsmtpd_tx import cfws
from qpsmtpd_tx.printable import printable

FIELD = "Authentication-Results"
NOTE = "authentication_results"
#: the most characters of a message's text (a reason quoting a tag value, a ``d=``) an entry
#: repeats: a hostile field of a few hundred KB must not make ours as big
MAX_VALUE = 256


#: what may not reach the field from a message's text
_NOT_PRINTABLE = re.compile(r"[^ -~]")


def clipped(text):
    """``text``, cut to :data:`MAX_VALUE` characters (ending in ``...`` when cut)."""
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 3] + "..."


def safe_entry(entry):
    """``entry`` with every character that is not printable ASCII as ``?``: text from a
    message (a folded tag value holds CR LF) cannot split the field."""
    if entry.isascii() and entry.isprintable():    # the usual entry: nothing to replace
        return entry
    return _NOT_PRINTABLE.sub("?", entry)


def reason(text):
    """The ``reason="…"`` property of an entry for ``text``: clipped, no backslash, ``'`` for
    ``"``."""
    return 'reason="%s"' % clipped(text).replace("\\", "").replace('"', "'")


def authserv_id(value):
    """The authserv-id of an Authentication-Results value, as RFC 8601 reads it: its first
    token or quoted string after comments and white space (a version number after it, or a
    ``;`` inside a comment, is not part of it), lower case and without a final dot; '' if
    there is none."""
    return cfws.first_value(value).lower().rstrip(".")


def header_value(me, connection, transaction=None):
    """The value of our Authentication-Results field: SMTP AUTH, then the stored results."""
    if connection.auth_user:
        parts = [me, "auth=pass (%s) smtp.auth=%s" % ((connection.auth_mechanism or "").lower(),
                                                      printable(connection.auth_user))]
    else:
        parts = [me, "auth=none"]
    stored = connection.notes.get(NOTE)
    if stored:
        _add_results(parts, stored)
    if transaction is not None:
        stored = transaction.notes.get(NOTE)
        if type(stored) is list:     # (the usual: the list store() keeps)
            parts += stored
        elif stored:
            _add_results(parts, stored)
    return "; ".join(parts)


def _add_results(parts, stored):
    if isinstance(stored, (list, tuple)):
        parts.extend(stored)
    else:
        parts.append(stored)


_FIELD_LOWER = FIELD.lower()


def _our_id(me):
    """``me`` as :func:`authserv_id` gives it."""
    return me.lower().rstrip(".")


def _is_ours(field, ours):
    name, raw = field
    return (len(name) == len(FIELD) and name.lower() == _FIELD_LOWER
            and authserv_id(raw.decode("utf-8", "surrogateescape").partition(":")[2]) == ours)


def remove_ours(header, me):
    """Delete the fields of ``header`` claiming our authserv-id ``me``; return how many."""
    ours = _our_id(me)
    size = len(FIELD)
    fields = header.fields
    removed = 0
    # (most fields: a name of another length, passed over without a call; most messages:
    # none of ours to remove, so no new list. A loop: on Python 3.11 a list comprehension
    # is a function made and called)
    for field in fields:
        if len(field[0]) == size and _is_ours(field, ours):
            removed += 1
    if removed:
        header.fields = [field for field in fields
                         if len(field[0]) != size or not _is_ours(field, ours)]
    return removed


def add(header, me, connection, transaction):
    """Remove spoofed fields, then prepend ours (the core does this before ``data_post``)."""
    removed = remove_ours(header, me)
    header.add(FIELD, header_value(me, connection, transaction), prepend=True)
    header.auth_results_raw = header.fields[0][1]
    return removed


#: results stored in these hooks are about the connection (fcrdns's ``iprev`` at connect)
CONNECTION_HOOKS = frozenset(("pre-connection", "connect", "helo", "ehlo"))


def store(transaction, result, me=None, hook=None):
    """Keep ``result``: in the connection note (text, as qpsmtpd) when stored in one of the
    :data:`CONNECTION_HOOKS`, else in the transaction's list; if the message already has
    our field (``me`` given), rewrite it so it shows the new result. The field is written
    here without :class:`~qpsmtpd_tx.message.Header`'s checks, so every result goes through
    :func:`safe_entry` (a plugin's result quoting message text must not split the field)."""
    result = safe_entry(result)
    if hook in CONNECTION_HOOKS:
        notes = transaction.connection.notes
        previous = notes.get(NOTE)
        notes[NOTE] = "%s; %s" % (previous, result) if previous else result
    else:
        transaction.notes.setdefault(NOTE, []).append(result)
    header = transaction.header
    if me is None or header is None:
        return
    value = header_value(me, transaction.connection, transaction)
    raw = ("%s: %s\n" % (FIELD, value)).encode("utf-8", "surrogateescape")
    known = header.auth_results_raw     # ours as last written: no need to parse it again
    ours = None
    fields = header.fields
    for i, field in enumerate(fields):     # (add() put ours near the top: found at once)
        if field[1] is not known:
            if len(field[0]) != len(FIELD):     # (most fields: not even the name's length)
                continue
            if ours is None:
                ours = _our_id(me)
            if not _is_ours(field, ours):
                continue
        fields[i] = (FIELD, raw)
        header.auth_results_raw = raw
        return
