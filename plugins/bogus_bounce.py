"""bogus_bounce — refuse bounces that cannot be real: several recipients, or a Return-Path.

Old name: ``check_bogus_bounce`` (an alias of this plugin).

A bounce (a message from the null sender ``<>``) answers one message, so it goes to exactly
one recipient; and it must not carry a non-empty ``Return-Path:`` header (RFC 3834). After the
data, a bounce that breaks either rule is logged or refused.

Arguments: ``[log|deny|denysoft] [action log|deny|denysoft] [reject 0|1|naughty]
[reject_type TYPE] [loglevel N]``
  ``log``, ``deny``, ``denysoft`` (or ``action X``)
                   what to do with a bogus bounce: ``log`` (default) only logs it; ``deny``
                   refuses it with 552, ``denysoft`` with 452.
  ``reject``       overrides the action's choice: ``0`` log only, ``1`` refuse, ``naughty``
                   leave the rejection to the ``naughty`` plugin.
  ``reject_type``  overrides the action's code: ``perm``/``hard`` (552), ``temp``/``soft``
                   (452), ``disconnect`` (552 and close), ``temp_disconnect`` (452 and close).
  ``loglevel``     per-plugin log level (``6``, ``LOGINFO``, ``+1``, ``-2``).

Per-recipient settings (recipient notes, README "Per-recipient policy"): ``bogus_bounce_reject``
(``0``, ``1``, ``naughty``) and ``bogus_bounce_reject_type`` override ``reject`` and ``reject_type`` for
that recipient (note → argument → default); with ``recipient_policy split`` the message is
refused for the recipients whose level refuses it and goes on for the others.

Config files: none.

Notes: with ``reject naughty``, writes connection notes ``naughty`` / ``naughty_reject_type``.

Replies (after the data):
  ``552 fail, this bounce message does not have 1 recipient``
  ``552 a bounce return path must be empty (RFC 3834)``
  (452 with ``denysoft``). A ``Return-Path:`` that is empty or ``<>`` counts as empty.

Differences from qpsmtpd 0.94, on purpose:
  - the recipient count is really checked (0.94 counted the recipients in a way that always
    gave 1, so a bounce to many recipients passed);
  - ``deny`` and ``denysoft`` refuse (0.94 kept its ``reject 0`` default for them, so they
    only logged, unless ``action deny reject 1`` was written out);
  - ``Return-Path: <>`` passes (0.94 compared the header with its line end still attached,
    so every bounce carrying a Return-Path was refused);
  - a bad argument stops start-up.
"""

from qpsmtpd_tx.codes import DECLINED, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError

ACTIONS = ("log", "deny", "denysoft")
REJECT_VALUES = ("0", "1", "naughty")
REJECT_TYPES = ("perm", "hard", "temp", "soft", "disconnect", "temp_disconnect")

TOO_MANY = "fail, this bounce message does not have 1 recipient"
RETURN_PATH = "a bounce return path must be empty (RFC 3834)"


class BogusBounce(Plugin):
    """Log or refuse null-sender messages with several recipients or a Return-Path."""

    def init(self, args):
        args = list(args)
        action = None
        if len(args) % 2:
            action = args.pop(0)
        options = self.parse_kv_args(args, {"action", "reject", "reject_type"})
        if action is not None and "action" in options:
            raise PluginError("the action is given twice: %r and action %r"
                              % (action, options["action"]))
        action = (action or options.get("action") or "log").lower()
        if action not in ACTIONS:
            raise PluginError("the action must be log, deny or denysoft, not %r" % action)
        reject = options.get("reject", "0" if action == "log" else "1")
        if reject not in REJECT_VALUES:
            raise PluginError("reject must be 0, 1 or naughty, not %r" % reject)
        reject_type = options.get("reject_type", "temp" if action == "denysoft" else "perm")
        if reject_type.lower() not in REJECT_TYPES:
            raise PluginError("reject_type must be one of %s, not %r"
                              % ("|".join(REJECT_TYPES), reject_type))
        self.action = action
        self.reject = reject
        self.reject_type = reject_type
        self.read_reject_per_recipient("bogus_bounce")

    def hook_data_post(self, transaction):
        sender = transaction.sender
        if sender is not None and not sender.is_null:
            self.log(LOGINFO, "pass, not a null sender", transaction)
            return DECLINED
        recipients = transaction.recipients
        if len(recipients) != 1:
            return self.get_reject(
                transaction, TOO_MANY, "bogus bounce to %d recipients: %s"
                % (len(recipients), ",".join(r.format() for r in recipients)))
        header = transaction.header
        paths = header.get("Return-Path") if header is not None else []
        if any(path not in ("", "<>") for path in paths):
            return self.get_reject(transaction, RETURN_PATH,
                                   "bounce messages must not have a Return-Path")
        self.log(LOGINFO, "pass, single recipient, empty Return-Path", transaction)
        return DECLINED
