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

**Grouping.** SMTP has one answer after DATA for all recipients, so recipients whose settings
differ cannot share a message. The config file ``recipient_policy`` chooses:

- ``group`` (default): once a transaction has a recipient, a recipient whose settings differ
  (any setting of any loaded filter) is answered ``452 4.5.3 Try this recipient in another
  transaction``; RFC 5321 clients send it again in a new transaction (§3.3, §4.5.3.1.10).
  Every transaction then has one policy.
- ``strictest``: every recipient is accepted; a setting's value for the message is the
  strictest of the recipients' values (each Setting says what strictest means: the lowest
  spam threshold, ``reject`` before ``tag``…).
"""

import attr

GROUP = "group"
STRICTEST = "strictest"
POLICIES = (GROUP, STRICTEST)

DIFFERENT_POLICY_TEXT = "4.5.3 Try this recipient in another transaction"


@attr.s(frozen=True)
class Setting:
    """A per-recipient setting a plugin reads.

    ``note``: the recipient note (``spamassassin_reject_threshold``); ``argument``: the plugin
    argument that sets it for everyone (``reject_threshold``), or None; ``default``: used when
    neither is set; ``convert``: turns the text of a note or argument into the value
    (``float``) and raises ValueError for a bad one; ``strictest``: picks the strictest of
    several values (``min`` for a spam threshold).
    """

    note = attr.ib()
    argument = attr.ib(default=None)
    default = attr.ib(default=None)
    convert = attr.ib(default=str)
    strictest = attr.ib(default=min)


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
    """Everything content filters would decide differently for this recipient, as a tuple."""
    key = []
    for plugin in plugins:
        for setting in plugin.recipient_settings:
            key.append((plugin.name, setting.note, plugin.setting(recipient, setting.note)))
    return tuple(key)
