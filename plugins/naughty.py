"""naughty — reject connections that earlier plugins marked as naughty, at one chosen point.

Deferred rejection: a plugin given ``reject naughty`` (``dnsbl``, ``karma``, ``earlytalker``,
``badmailfrom``…) does not reject by itself when its check fails; it stores its rejection text
in the connection note ``naughty`` (texts of several plugins are kept one per line) and lets
the session go on. This plugin sends that text at the point chosen with ``reject``. Waiting
gives clients the chance to authenticate first (a successful AUTH clears the note), lets
spam-filter plugins see the message when ``reject data_post`` is used, and lets every plugin
reject at the same point.

Arguments: ``key value`` pairs, all optional:
  ``reject HOOK``       where to reject: ``connect``, ``mail``, ``rcpt`` (default), ``data``
                        or ``data_post``. The check also runs at ``data_post`` in every case,
                        in case another plugin answered the chosen hook before this one (e.g.
                        ``rcpt_ok`` accepting a recipient: list ``naughty`` above it, or pick
                        ``data``).
  ``reject_type T``     the rejection when the marking plugin did not give one (connection
                        note ``naughty_reject_type``): ``perm``/``hard``, ``temp``/``soft``,
                        ``disconnect`` (default), ``temp_disconnect``.
  ``loglevel L``        per-plugin log level.
Anything else (an unknown hook or type, an unknown key) stops start-up.

Config files: none.

Notes: reads the connection notes ``naughty`` (the text) and ``naughty_reject_type``, and the
recipient notes of the same names: a filter whose ``reject naughty`` is read per recipient
(e.g. ``headers_reject=naughty`` for some recipients only, README "Per-recipient policy")
marks those recipients instead of the connection, and with ``recipient_policy split`` the
message is refused for them only (their copy quarantined) and goes on for the others.

Replies: the stored text, with the code of the hook and the type, e.g. for the default
``disconnect``: ``550`` at connect, mail and rcpt, ``554`` at data, ``552`` at data_post, each
followed by closing the connection; ``temp_disconnect``: ``450`` at connect, ``421`` at mail,
rcpt and data, ``452`` at data_post; ``perm`` / ``temp`` keep the connection open (e.g.
``550`` / ``450`` at rcpt). A note that holds no text (e.g. ``1``) gets the core's default
text for that hook and code.

Differences from qpsmtpd 0.94, on purpose: an unknown hook or type stops start-up (0.94
logged an error and rejected at data_post, or returned the type's name as the code).
"""

from qpsmtpd_tx import outcomes
from qpsmtpd_tx.codes import DECLINED, DENY_DISCONNECT, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError

HOOKS = ("connect", "mail", "rcpt", "data", "data_post")
REJECT_TYPES = ("perm", "hard", "temp", "soft", "disconnect", "temp_disconnect")


class Naughty(Plugin):
    """Reject a connection carrying a deferred rejection (connection note ``naughty``)."""

    def init(self, args):
        options = self.parse_kv_args(args, {"reject", "reject_type"})
        self.reject_hook = options.get("reject", "rcpt").lower()
        if self.reject_hook not in HOOKS:
            raise PluginError("reject must be one of %s, got %r"
                              % (", ".join(HOOKS), options["reject"]))
        self.reject_type = options.get("reject_type", "disconnect")
        if self.reject_type.lower() not in REJECT_TYPES:
            raise PluginError("reject_type must be one of %s, got %r"
                              % (", ".join(REJECT_TYPES), self.reject_type))

    def register(self, registry):
        registry.register(self.reject_hook, self, self.naughty)
        if self.reject_hook != "data_post":
            registry.register("data_post", self, self.naughty)

    def naughty(self, transaction, *args):
        """The chosen hook (and data_post): reject if the connection is naughty; else, for
        the recipients marked naughty, the message is refused for them only."""
        if transaction.connection.notes.get("naughty"):
            self.log(LOGINFO, "disconnecting", transaction)
            return self._refusal(transaction.connection.notes)
        marked = [r for r in outcomes.accepted(transaction) if r.notes.get("naughty")]
        if not marked:
            self.log(LOGINFO, "pass", transaction)
            return DECLINED
        return self.per_recipient_result(transaction, [
            (recipients, self._refusal(notes) if notes.get("naughty") else DECLINED)
            for notes, recipients in outcomes.group_by(
                outcomes.accepted(transaction),
                lambda r: {key: r.notes.get(key) for key in ("naughty", "naughty_reject_type")})])

    def _refusal(self, notes):
        """The refusal for ``notes`` holding ``naughty`` (the connection's or a recipient's)."""
        text = notes.get("naughty")
        code = self.get_reject_type(DENY_DISCONNECT, notes.get("naughty_reject_type"))
        if not isinstance(text, str):
            return code
        # Texts of several plugins are joined with CRLF; the reply wants one per line.
        return code, text.replace("\r\n", "\n")
