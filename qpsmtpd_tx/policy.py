"""Per-recipient policy: the one lookup every content filter uses, and recipient grouping.

**The lookup.** A content filter declares the per-recipient settings it reads as
:class:`Setting` objects in ``recipient_settings``. For a recipient ``R``, the value of a
setting is, in this order:

1. ``R.notes[note]`` — set at RCPT time by a notes source (``aliases``, ``rcpt_notes/sql``,
   ``rcpt_notes/ldap``, or any plugin of yours that runs before ``rcpt_ok``);
2. the plugin's argument of that name on its ``plugins`` line;
3. the setting's default.

Plugins call ``self.setting(recipient, note)`` (one recipient) or
``self.transaction_setting(transaction, note)`` (the value for the whole message).

**Policies.** SMTP has one answer after DATA for all recipients. The config file
``recipient_policy`` chooses how recipients whose settings differ share a message:

- ``split`` (default): every recipient is accepted; at the end of DATA each filter decides
  once per distinct set of its settings (:func:`qpsmtpd_tx.outcomes.recipient_groups`) and
  each recipient gets its own outcome; :mod:`qpsmtpd_tx.outcomes` has the reply table.
- ``group``: once a transaction has a recipient, a recipient whose settings differ
  (any setting of any loaded filter) is answered ``452 4.5.3 Try this recipient in another
  transaction``; RFC 5321 clients send it again in a new transaction (§3.3, §4.5.3.1.10).
  Every transaction then has one policy.
- ``strictest``: every recipient is accepted; a setting's value for the message is the
  strictest of the recipients' values (each Setting says what strictest means: the lowest
  spam threshold, ``reject`` before ``tag``…).

Only settings read after RCPT (``phase`` ``data``, ``data_headers_end``, ``data_post``, the
default, or ``queue``) group recipients: a setting with ``phase="rcpt"`` is read for each recipient on its own, at
RCPT time, so recipients whose values differ can share a transaction.

**Aliases.** A notes source rewrites a recipient by setting its note ``alias_targets`` at RCPT
time: a list of ``user@host`` strings or Address objects, or one string of addresses separated
by commas or spaces. When the recipient is accepted, the session adds the targets to the
transaction instead of it (:func:`expand_alias`); each target carries a copy of the
recipient's notes, with ``original_recipient`` (the address the client gave) and without
``alias_targets``. The reply still names the address the client sent, and the plugins that
decided about relaying saw that address too.
"""

import attr

from qpsmtpd_tx.address import Address

#: recipient note: the addresses that replace the recipient once it is accepted
ALIAS_TARGETS = "alias_targets"
#: recipient note on each alias target: the address the client gave in RCPT
ORIGINAL_RECIPIENT = "original_recipient"

#: the hooks a Setting may be read in (``Setting.phase``); all but ``rcpt`` group recipients
RCPT = "rcpt"
PHASES = (RCPT, "data", "data_headers_end", "data_post", "queue")

SPLIT = "split"
GROUP = "group"
STRICTEST = "strictest"
POLICIES = (SPLIT, GROUP, STRICTEST)

DIFFERENT_POLICY_TEXT = "4.5.3 Try this recipient in another transaction"


@attr.s(frozen=True)
class Setting:
    """A per-recipient setting a plugin reads.

    ``note``: the recipient note (``spamassassin_reject_threshold``); ``argument``: the plugin
    argument that sets it for everyone (``reject_threshold``), or None; ``default``: used when
    neither is set; ``convert``: turns the text of a note or argument into the value
    (``float``) and raises ValueError for a bad one; ``strictest``: picks the strictest of
    several values (``min`` for a spam threshold); ``phase``: the hook the plugin reads it in,
    one of :data:`PHASES` (default ``data_post``, what content filters do). A setting read
    after RCPT groups recipients (:attr:`groups`); one read at ``rcpt`` does not.
    """

    note = attr.ib()
    argument = attr.ib(default=None)
    default = attr.ib(default=None)
    convert = attr.ib(default=str)
    strictest = attr.ib(default=min)
    phase = attr.ib(default="data_post", validator=attr.validators.in_(PHASES), kw_only=True)

    @property
    def groups(self):
        """True if recipients whose values differ need separate transactions (read after RCPT)."""
        return self.phase != RCPT


#: qpsmtpd's ``reject`` values, least strict first (None, a plugin's unset value, means ``1``)
REJECT_LEVELS = ("0", "naughty", "1")
#: qpsmtpd's ``reject_type`` values that refuse for good (the others refuse for now)
PERMANENT_TYPES = ("perm", "hard", "disconnect")
REJECT_TYPES = PERMANENT_TYPES + ("temp", "soft", "temp_disconnect")


def reject_level(text):
    """A ``reject`` note: ``0``, ``1`` or ``naughty`` (ValueError otherwise)."""
    text = str(text).strip().lower()
    if text not in REJECT_LEVELS:
        raise ValueError(text)
    return text


def reject_type(text):
    """A ``reject_type`` note: ``perm``, ``temp``… (ValueError otherwise)."""
    text = str(text).strip().lower()
    if text not in REJECT_TYPES:
        raise ValueError(text)
    return text


def strictest_level(values):
    """The strictest ``reject``: ``1`` before ``naughty`` before ``0``."""
    return max(values, key=lambda v: REJECT_LEVELS.index("1" if v is None else v))


def strictest_type(values):
    """The strictest ``reject_type``: a permanent one if any, else the first."""
    return next((v for v in values if v is None or v.lower() in PERMANENT_TYPES), values[0])


def reject_settings(prefix, reject, reject_type_, phase="data_post"):
    """The Settings of a filter's qpsmtpd-style ``reject`` and ``reject_type`` read per
    recipient: notes ``PREFIX_reject`` and ``PREFIX_reject_type``, defaulting to ``reject`` and
    ``reject_type_`` (the plugin's own values: its arguments or its defaults)."""
    return (Setting(prefix + "_reject", None, reject, reject_level, strictest_level, phase=phase),
            Setting(prefix + "_reject_type", None, reject_type_, reject_type, strictest_type,
                    phase=phase))


def resolve(setting, recipient, arguments):
    """The value of ``setting`` for ``recipient`` (None: no recipient) — the documented lookup.

    A note that does not convert is ignored (the argument or default applies) and reported
    by raising nothing: notes are validated by their sources at load time.
    """
    if recipient is not None:
        value = recipient.notes.get(setting.note)
        if value is not None:
            try:
                return setting.convert(value)
            except (TypeError, ValueError):
                pass
    if setting.argument is not None and arguments.get(setting.argument) is not None:
        return setting.convert(arguments[setting.argument])
    return setting.default


def policy_key(plugins, recipient):
    """Everything content filters would decide differently for this recipient, as a tuple.

    Only the settings that group recipients count (:attr:`Setting.groups`): an RCPT-time
    setting has done its work by the time the message is filtered.
    """
    key = []
    for plugin in plugins:
        for setting in plugin.recipient_settings:
            if setting.groups:
                key.append((plugin.name, setting.note, plugin.setting(recipient, setting.note)))
    return tuple(key)


def first_difference(key, other):
    """``(plugin, note, value, other_value)`` of the first setting two :func:`policy_key`
    results disagree on, or None if they agree."""
    for mine, theirs in zip(key, other):
        if mine != theirs:
            return mine[0], mine[1], mine[2], theirs[2]
    return None


def declared_settings(server):
    """``{note: [(plugin path, Setting), …]}``: the settings the loaded filters read (what a
    notes source may set, and how each filter converts it)."""
    declared = {}
    for plugin in getattr(server, "policy_plugins", None) or ():
        for setting in plugin.recipient_settings:
            declared.setdefault(setting.note, []).append((plugin.path, setting))
    return declared


def expand_alias(recipient):
    """``(recipients, invalid)``: what the transaction gets for an accepted ``recipient``.

    Without an ``alias_targets`` note: ``([recipient], [])``. Otherwise one new Address per
    target (in order, duplicates dropped), each with a copy of the recipient's notes minus
    ``alias_targets`` plus ``original_recipient`` (an Address target's own notes are added
    on top); ``invalid`` lists the targets that are not
    addresses (skipped). If no target is valid, the recipient itself is kept.
    """
    targets = recipient.notes.get(ALIAS_TARGETS)
    if not targets:
        return [recipient], []
    if isinstance(targets, str):
        targets = targets.replace(",", " ").split()
    notes = dict(recipient.notes)
    del notes[ALIAS_TARGETS]
    notes.setdefault(ORIGINAL_RECIPIENT, recipient.address)
    result, invalid = [], []
    for target in targets:
        own_notes = {}
        if isinstance(target, Address):
            address = Address(target.user, target.host)
            own_notes = target.notes
        else:
            address = Address.parse(str(target))
        if address is None or address.is_null:
            invalid.append(target)
            continue
        if address in result:
            continue
        address.notes = dict(notes)
        address.notes.update(own_notes)
        result.append(address)
    return (result or [recipient]), invalid
