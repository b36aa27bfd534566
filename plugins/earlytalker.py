"""earlytalker — catch clients that talk before the greeting (or before ``354`` at DATA).

A well-behaved SMTP client waits for the ``220`` greeting before it sends anything. Spam
engines that pipeline a whole dialogue blindly do not. This plugin holds the greeting back for
``wait`` seconds and watches for input meanwhile; a client that sent something is an early
talker. Every client sees the greeting that much later, so keep ``wait`` short. Relay
clients, whitelisted hosts (connection note ``whitelisthost``) and connections whose
``karma_history`` note is above 5 are not checked at connect (no delay for them).

Arguments: ``key value`` pairs, all optional:
  ``wait N``            seconds to wait for input (default 1; fractions allowed; 0 only
                        catches input that is already there).
  ``check-at WHEN``     ``CONNECT`` (before the greeting) or ``DATA`` (after the DATA command,
                        before ``354``: the client must wait for ``354`` too); may be given
                        twice to check at both. Default: ``CONNECT`` only.
  ``reject 0|1|naughty`` ``1`` (default) rejects an early talker; ``0`` only logs it (and sets
                        the note); ``naughty`` leaves the rejection to the ``naughty`` plugin.
  ``reject_type T``     ``perm``/``hard`` (5xx), ``temp``/``soft`` (4xx), ``disconnect``,
                        ``temp_disconnect``. Default ``perm``; ``temp`` with ``defer-reject``
                        or ``action denysoft``.
  ``defer-reject 0|1``  a true value (anything but ``0`` or empty) greets an early talker as
                        usual and rejects each MAIL command instead.
  ``action A``          the older way to say ``reject``: ``deny`` and ``denysoft`` mean
                        ``reject 1`` (``denysoft`` with ``reject_type temp``), ``log`` means
                        ``reject 0``. An explicit ``reject`` / ``reject_type`` wins.
  ``loglevel L``        per-plugin log level.
Anything else (an odd number of words, an unknown key, a bad value) stops start-up.

Config files: none.

Notes: sets the connection note ``earlytalker`` (1) for an early talker and lowers the
connection's ``karma`` by 1 (each time it is rejected); reads ``karma_history`` and
``whitelisthost``, and the connection's relay_client flag.

Replies, text ``Connecting host started transmitting before SMTP greeting``:
  - at connect: ``550 <text>`` (``reject_type temp``: ``450``), then the connection is closed;
  - with ``defer-reject``, at each MAIL: ``550 <text>`` (temp: ``450``; disconnect types
    close the connection: ``550`` / ``421``);
  - at DATA: ``554 <text>`` (temp: ``451``).

Differences from qpsmtpd 0.94, on purpose:
  - ``action denysoft`` gives temporary rejections (0.94 ignored the action's type and sent
    550), and ``action deny`` with ``defer-reject`` permanent ones (0.94: always temporary
    with ``defer-reject``, whatever the action);
  - bad arguments stop start-up (0.94 logged an error and ran with defaults, or with no hooks
    at all for an odd number of words).
"""

from qpsmtpd_tx.codes import DECLINED, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError

SMTP_MESSAGE = "Connecting host started transmitting before SMTP greeting"
LOG_MESSAGE = "remote started talking before we said hello"

ACTIONS = ("deny", "denysoft", "log")
REJECT_TYPES = ("perm", "hard", "temp", "soft", "disconnect", "temp_disconnect")
CHECK_POINTS = ("CONNECT", "DATA")


def _true(value):
    """Perl's truth for an argument value: anything but empty and ``0``."""
    return value not in (None, "", "0")


class Earlytalker(Plugin):
    """Wait before the greeting (and optionally at DATA); reject clients that talked."""

    #: the IReactorTime used for the wait (tests give a Clock); None means the reactor
    clock = None

    def init(self, args):
        if len(args) % 2:
            raise PluginError("arguments must be key/value pairs, got %r" % (" ".join(args),))
        options = {}
        self.check_at = set()
        for key, value in zip(args[::2], args[1::2]):
            if key.lower() == "check-at":
                if value.upper() not in CHECK_POINTS:
                    raise PluginError("check-at must be CONNECT or DATA, got %r" % (value,))
                self.check_at.add(value.upper())
            elif key == "loglevel":
                self.set_loglevel(value)
            elif key in ("wait", "reject", "reject_type", "defer-reject", "action"):
                options[key] = value
            else:
                raise PluginError("unknown argument %r (known: action, check-at, defer-reject, "
                                  "reject, reject_type, wait)" % (key,))
        if not self.check_at:
            self.check_at.add("CONNECT")

        try:
            self.wait = float(options.get("wait", "1"))
        except ValueError:
            self.wait = -1.0
        if not self.wait >= 0 or self.wait == float("inf"):
            raise PluginError("wait must be a number of seconds, got %r" % (options["wait"],))

        action = options.get("action")
        if action is not None and action.lower() not in ACTIONS:
            raise PluginError("action must be deny, denysoft or log, got %r" % (action,))
        action = action.lower() if action else None

        self.reject = options.get("reject")
        if self.reject is not None and self.reject not in ("0", "1", "naughty"):
            raise PluginError("reject must be 0, 1 or naughty, got %r" % (self.reject,))
        if self.reject is None:
            self.reject = "0" if action == "log" else "1"

        self.defer_reject = _true(options.get("defer-reject"))
        self.reject_type = options.get("reject_type")
        if self.reject_type is not None and self.reject_type.lower() not in REJECT_TYPES:
            raise PluginError("reject_type must be one of %s, got %r"
                              % (", ".join(REJECT_TYPES), self.reject_type))
        if self.reject_type is None:
            if action == "denysoft" or ("defer-reject" in options and action != "deny"):
                self.reject_type = "temp"
            else:
                self.reject_type = "perm"

    def register(self, registry):
        if "CONNECT" in self.check_at:
            registry.register("connect", self, self.check_connect)
        if "DATA" in self.check_at:
            registry.register("data", self, self.check_data)
        if self.defer_reject:
            registry.register("mail", self, self.reject_mail)

    # -- hooks ------------------------------------------------------------------------------

    def check_connect(self, transaction):
        """connect: wait for input before the greeting."""
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, immune", transaction)
            return DECLINED
        karma = transaction.connection.notes.get("karma_history")
        if karma is not None and _number(karma) > 5:
            self.log(LOGINFO, "skip, karma %s" % (karma,), transaction)
            return DECLINED
        d = self._talked(transaction)
        if d is None:
            return DECLINED
        d.addCallback(self._connect_waited, transaction)
        return d

    def _connect_waited(self, talked, transaction):
        if not talked:
            return self._pass(transaction)
        if not self.defer_reject:
            return self._deny(transaction)
        transaction.connection.notes["earlytalker"] = 1
        self.adjust_karma(transaction, -1)
        self.log(LOGINFO, "%s; rejecting each MAIL" % LOG_MESSAGE, transaction)
        return DECLINED

    def check_data(self, transaction):
        """data: wait for input before ``354``."""
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, immune", transaction)
            return DECLINED
        d = self._talked(transaction)
        if d is None:
            return DECLINED
        d.addCallback(lambda talked: self._deny(transaction) if talked else self._pass(transaction))
        return d

    def reject_mail(self, transaction, sender, params):
        """mail (with defer-reject): reject every sender of an early talker."""
        if not transaction.connection.notes.get("earlytalker"):
            return DECLINED
        return self._deny(transaction)

    # -- helpers ----------------------------------------------------------------------------

    def _talked(self, transaction):
        """A Deferred firing True if the client sends within ``wait`` seconds (None: cannot tell)."""
        session = transaction.session
        if session is None:
            return None
        return session.wait_for_input(self.wait, clock=self.clock)

    def _pass(self, transaction):
        self.log(LOGINFO, "pass, not spontaneous", transaction)
        return DECLINED

    def _deny(self, transaction):
        transaction.connection.notes["earlytalker"] = 1
        self.adjust_karma(transaction, -1)
        return self.get_reject(transaction, SMTP_MESSAGE, LOG_MESSAGE)


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
