"""The base class plugins derive from.

A plugin file under ``plugins/`` (named as qpsmtpd names it, e.g. ``plugins/queue/maildir.py``)
defines one class declared ``@implementer(IPlugin)``, normally a subclass of :class:`Plugin`.
Its docstring is its documentation (``qpsmtpd-tx plugins doc NAME`` prints it). The loader
creates one instance per ``plugins`` line, calls ``init(args)``, registers every method named
``hook_<hook>`` (``-`` in a hook name becomes ``_``), then calls ``register(registry)``.

A hook is called as ``hook_<name>(self, transaction, *args)`` and returns a code from
:mod:`qpsmtpd_tx.codes`, a ``(code, message)`` pair, or a Deferred / coroutine giving one.
The session is ``transaction.session`` and the connection ``transaction.connection``.
"""

import attr
from zope.interface import implementer

from qpsmtpd_tx import authresults, codes, outcomes, policy
from qpsmtpd_tx.config import ConfigError
from qpsmtpd_tx.hooks import current_hook
from qpsmtpd_tx.interfaces import IPlugin
from qpsmtpd_tx.printable import printable

#: qpsmtpd's ``Qpsmtpd::DSN->relaying_denied`` text
RELAYING_DENIED = "Relaying denied (#5.7.1)"
#: a permanent refusal and the temporary one of the same kind (``get_reject(temporary=True)``)
_SOFTER = {codes.DENY: codes.DENYSOFT, codes.DENY_DISCONNECT: codes.DENYSOFT_DISCONNECT}
#: the ``reject_type`` value of each temporary refusal
_TYPE_OF = {codes.DENYSOFT: "temp", codes.DENYSOFT_DISCONNECT: "temp_disconnect"}


def _texts(lines):
    return tuple(line.text for line in lines)


@attr.s(slots=True, frozen=True)
class _Parsed:
    """What :meth:`Plugin.parsed_config` keeps of an item: the config generation it was read
    in, the lines read then (None if they could not be), and the value in use."""

    generation = attr.ib()
    lines = attr.ib()
    value = attr.ib()


class PluginError(Exception):
    """A plugin cannot start: bad arguments, a bad config line, a missing file.

    Raised at start-up; the loader adds the ``plugins`` file and line it came from.
    """


@implementer(IPlugin)
class Plugin:
    """Base class: argument parsing, config access and logging for plugins.

    Attributes set by the loader before ``init``: ``name`` (qpsmtpd's escaped name, used in
    logs and notes), ``path`` (as written in ``plugins``), ``args``, and ``server`` (gives
    ``config`` and the log).
    """

    name = None
    path = None
    args = ()
    server = None
    #: per-plugin log level adjustment from a ``loglevel N|+N|-N`` argument (None: not set)
    loglevel = None
    #: the ``key value`` arguments as parsed by parse_kv_args
    arguments = {}
    #: the per-recipient settings this plugin reads (:class:`qpsmtpd_tx.policy.Setting`; its
    #: ``phase`` says when, and so whether it groups recipients)
    recipient_settings = ()

    def init(self, args):
        """Receive the ``plugins`` line arguments. The default accepts none."""
        if args:
            raise PluginError("takes no arguments, got %r" % (" ".join(args),))

    def register(self, registry):
        """Register hooks beyond the ``hook_*`` methods; the default does nothing."""

    def stop(self):
        """Called once when the server shuts down, or when a SIGHUP has loaded a new instance
        and the sessions that used this one have ended; may return a Deferred. Default: nothing."""

    # -- helpers ---------------------------------------------------------------------------

    def config(self, name, transaction=None):
        """The lines of config item ``name`` (list of str; empty if missing).

        A file that cannot be read (a ConfigError: unreadable, a circular ``$include``) stops
        start-up; met later, the lines read before stay, logged once (see
        :meth:`parsed_config`): read an item the hooks use in ``init`` too, so that there are.
        """
        return list(self._parsed(("lines", name), name, _texts, transaction, True))

    def parsed_config(self, name, parser, transaction=None, lines_only=False):
        """``parser(lines)`` of config item ``name`` (ConfigLines), parsed again only after the
        config changed (SIGHUP, a config hook).

        At start-up a parser's PluginError (or the config's ConfigError: a file that cannot be
        read) stops the server; later, a broken file keeps the previous value and is logged at
        LOGERROR once per change of the config, not at each call, so a bad edit never takes
        the server down nor floods the log. With ``lines_only`` (a parser that reads nothing
        but its lines), lines equal to the ones last read keep their value without being
        parsed again, whether they were good or broken (then not logged again either).
        """
        return self._parsed(name, name, parser, transaction, lines_only)

    def _parsed(self, key, name, parser, transaction, lines_only):
        """:meth:`parsed_config`, kept under ``key`` (:meth:`config` keeps its own)."""
        try:
            cache = self._parsed_config
        except AttributeError:
            cache = self._parsed_config = {}
        config = self.server.config
        previous = cache.get(key)
        if previous is not None and previous.generation == config.generation:
            return previous.value   # (the path of nearly every call: kept short)
        lines = None
        try:
            lines = config.get_lines(name)
            if lines_only and previous is not None and lines == previous.lines:
                value = previous.value
            else:
                value = parser(lines)
        except (PluginError, ConfigError) as e:
            if previous is None:
                raise
            self.log(codes.LOGERROR, "keeping the previous %s: %s" % (name, e), transaction)
            value = previous.value
        cache[key] = _Parsed(config.generation, lines, value)
        return value

    def config_map(self, name, transaction=None):
        """Config item ``name`` as a mapping (``<name>.cdb``, else the file's lines; see
        :meth:`~qpsmtpd_tx.config.Config.get_map`), or None while its cdb file is broken (or
        the plain file cannot be read): then logged at LOGERROR once, not at each lookup,
        until the file changes or is fixed.

        No previous map is kept for a broken cdb file: it may have been rewritten in place
        (cdbmake renames a new file over the old one, which never leaves a broken file), and
        a mapping of a file truncated in place cannot be read safely.
        """
        key = ("config_map", name)
        try:
            table = self.server.config.get_map(name)
        except ConfigError as e:
            self.log_once(key, codes.LOGERROR, "%s not used: %s" % (name, e), transaction)
            return None
        self.problem_over(key)
        return table

    def config_scalar(self, name, default=None, transaction=None):
        """The first line of config item ``name``, or ``default`` (see :meth:`config`)."""
        lines = self._parsed(("lines", name), name, _texts, transaction, True)
        return lines[0] if lines else default

    def log(self, level, message, transaction=None):
        """Log ``message`` at ``level``, tagged with this plugin (and the connection if given).

        A ``loglevel`` argument adjusts the level as qpsmtpd does: an absolute value logs every
        line of this plugin at that level; ``+N`` makes lines N less severe, ``-N`` more.
        Control characters in ``message`` are escaped (:func:`~qpsmtpd_tx.printable.printable`).
        """
        if self.loglevel is not None:
            level = self._own_level(level)
        if not self.server.log_enabled(level):
            return      # (most lines at the usual loglevel: not worth escaping)
        # Plugins often log client text: escaped, it cannot split the line or reach a terminal.
        self.server.log(level, printable(message), plugin=self, transaction=transaction)

    def log_once(self, key, level, message, transaction=None, again=None):
        """Log a problem that each use meets again (a broken file at every connection) once:
        ``message`` at ``level`` if it is not the message last logged under ``key``, else at
        level ``again`` (None: not at all), so that it cannot flood the log.
        :meth:`problem_over` (the file works again) lets the next one be logged in full."""
        logged = self.__dict__.setdefault("_logged_once", {})
        if logged.get(key) != message:
            logged[key] = message
            self.log(level, message, transaction)
        elif again is not None:
            self.log(again, message, transaction)

    def problem_over(self, key):
        """The problem logged under ``key`` by :meth:`log_once` is gone."""
        logged = self.__dict__.get("_logged_once")
        if logged:
            logged.pop(key, None)

    def log_enabled(self, level):
        """True if :meth:`log` at ``level`` would log (this plugin's ``loglevel`` applied):
        for a line whose text costs something to build."""
        if self.loglevel is not None:
            level = self._own_level(level)
        return self.server.log_enabled(level)

    def _own_level(self, level):
        kind, value = self.loglevel
        return value if kind == "abs" else max(0, min(7, level + value))

    def parse_kv_args(self, args, known, defaults=None):
        """Parse ``key value key value …`` arguments into a dict.

        ``known`` lists the accepted keys; ``loglevel`` is always accepted and applied.
        Raises PluginError for an unknown key or a key without a value.
        """
        result = dict(defaults or {})
        if len(args) % 2:
            raise PluginError("arguments must be key/value pairs, got %r" % (" ".join(args),))
        for key, value in zip(args[::2], args[1::2]):
            if key == "loglevel":
                self.set_loglevel(value)
                continue
            if key not in known:
                raise PluginError("unknown argument %r (known: %s)" % (key, ", ".join(sorted(known))))
            result[key] = value
        self.arguments = result
        return result

    def set_loglevel(self, value):
        """Apply a ``loglevel`` argument: absolute (``6``, ``LOGINFO``) or relative (``+1``, ``-2``)."""
        try:
            if value[:1] in "+-" and value[1:].isdigit():
                self.loglevel = ("rel", int(value))
            else:
                self.loglevel = ("abs", codes.parse_log_level(value))
        except ValueError:
            raise PluginError("bad loglevel %r" % (value,))

    # -- per-recipient settings (see qpsmtpd_tx.policy) -----------------------------------------

    def setting(self, recipient, note):
        """This plugin's setting ``note`` for ``recipient``: recipient note → argument → default."""
        for setting in self.recipient_settings:
            if setting.note == note:
                return policy.resolve(setting, recipient, self.arguments)
        raise KeyError("%s declares no recipient setting %r" % (self.path, note))

    def transaction_setting(self, transaction, note):
        """The setting for the whole message: the recipients' common value, else the strictest
        (of the recipients no filter has refused yet)."""
        values = [self.setting(r, note) for r in outcomes.accepted(transaction)]
        if not values:
            return self.setting(None, note)
        if all(v == values[0] for v in values):
            return values[0]
        setting = next(s for s in self.recipient_settings if s.note == note)
        return setting.strictest(values)

    def recipient_groups(self, transaction):
        """``[(values, recipients)]``: the accepted recipients by this plugin's settings, one
        group per distinct set of values with ``recipient_policy split``, else one group
        (see :func:`qpsmtpd_tx.outcomes.recipient_groups`). Decide once per group."""
        return outcomes.recipient_groups(self, transaction)

    def per_recipient_result(self, transaction, results):
        """The hook's result for ``[(recipients, result)]`` decided per group: the common
        result, else a refusal recorded for some recipients only (see
        :func:`qpsmtpd_tx.outcomes.per_recipient_result`)."""
        return outcomes.per_recipient_result(self, transaction, results)

    def edit_header(self, transaction, recipients, function, *args):
        """``function(header, *args)`` on the header of ``recipients``' copy of the message
        (the message's own header when they are all its recipients); see
        :func:`qpsmtpd_tx.outcomes.edit_header`."""
        outcomes.edit_header(transaction, recipients, function, *args)

    # -- qpsmtpd's rejection conventions (arguments ``reject`` and ``reject_type``) ------------

    #: ``reject`` argument: None or "1" → reject; "0" → log only; "naughty" → defer to naughty
    reject = None
    #: ``reject_type`` argument: perm|hard, temp|soft, disconnect, temp_disconnect (None: default)
    reject_type = None

    def get_reject_type(self, default=codes.DENY, value=None):
        """The return code for ``reject_type`` (``value`` or the plugin's), else ``default``."""
        value = value or self.reject_type
        if not value:
            return default
        value = value.lower()
        if value in ("temp", "soft"):
            return codes.DENYSOFT
        if value in ("perm", "hard"):
            return codes.DENY
        if value == "disconnect":
            return codes.DENY_DISCONNECT
        if value == "temp_disconnect":
            return codes.DENYSOFT_DISCONNECT
        return default

    #: ``(reject note, reject_type note)`` once :meth:`read_reject_per_recipient` was called
    reject_notes = None

    def read_reject_per_recipient(self, prefix):
        """Read ``reject`` and ``reject_type`` per recipient from now on: the notes
        ``PREFIX_reject`` (``0``, ``1``, ``naughty``) and ``PREFIX_reject_type``, else the
        plugin's own ``self.reject`` / ``self.reject_type`` (call it at the end of ``init``).
        :meth:`get_reject` then decides once per group of recipients with the same values."""
        settings = policy.reject_settings(prefix, self.reject, self.reject_type)
        self.recipient_settings = tuple(self.recipient_settings) + settings
        self.reject_notes = tuple(s.note for s in settings)

    def get_reject(self, transaction, smtp_message="unspecified error", log_message="",
                   default_type=codes.DENY, temporary=False):
        """What a failed check returns, honouring ``reject`` and ``reject_type`` as qpsmtpd does.

        ``reject 0``: log "fail, tolerated" and DECLINE. ``reject naughty``: store the message
        for the ``naughty`` plugin (connection note ``naughty``) and DECLINE. Otherwise
        ``(reject type, smtp_message)``. After :meth:`read_reject_per_recipient`, once per
        group of recipients (:meth:`per_recipient_result`).

        ``temporary``: the failure may not be final (a check that could have cleared the
        message could not run now), so a permanent refusal becomes the temporary one of the
        same kind (``perm`` → ``temp``, ``disconnect`` → ``temp_disconnect``).
        """
        if self.reject_notes is None or transaction is None:
            return self._reject_as(transaction, self.reject, self.reject_type, smtp_message,
                                   log_message, default_type, temporary=temporary)
        level, kind = self.reject_notes
        return self.per_recipient_result(transaction, [
            (recipients, self._reject_as(transaction, values[level], values[kind],
                                         smtp_message, log_message, default_type, recipients,
                                         temporary))
            for values, recipients in self.recipient_groups(transaction)])

    def _reject_as(self, transaction, reject, reject_type, smtp_message, log_message,
                   default_type, recipients=None, temporary=False):
        suffix = ", " + log_message if log_message else ""
        reject = None if reject is None else str(reject)
        if reject is not None and reject in ("0", ""):
            self.log(codes.LOGINFO, "fail, tolerated" + suffix, transaction)
            return codes.DECLINED
        softer = (_SOFTER.get(self.get_reject_type(default_type, reject_type)) if temporary
                  else None)
        if reject == "naughty":
            self.log(codes.LOGINFO, "fail, NAUGHTY" + suffix, transaction)
            if softer is not None:
                reject_type = _TYPE_OF[softer]
            return self.store_deferred_reject(transaction, smtp_message, reject_type,
                                              recipients)
        self.log(codes.LOGINFO, "fail" + suffix, transaction)
        return softer or self.get_reject_type(default_type, reject_type), smtp_message

    def store_deferred_reject(self, transaction, smtp_message, reject_type=None,
                              recipients=None):
        """Keep a rejection for the ``naughty`` plugin; returns DECLINED.

        It is kept in the connection notes ``naughty`` and ``naughty_reject_type``, unless
        ``recipients`` are some of the recipients still accepted only (a level read per
        recipient, ``recipient_policy split``): then in those recipients' notes of the same
        names, and the ``naughty`` plugin refuses the message for them only.
        """
        everyone = outcomes.accepted(transaction) if transaction is not None else []
        if recipients is None or set(recipients) >= set(everyone):
            targets = [transaction.connection.notes]
        else:
            targets = [recipient.notes for recipient in recipients]
        for notes in targets:
            previous = notes.get("naughty")
            notes["naughty"] = ("%s\r\n%s" % (previous, smtp_message) if previous
                                else smtp_message)
            if not notes.get("naughty_reject_type"):
                notes["naughty_reject_type"] = reject_type or self.reject_type
        return codes.DECLINED

    def is_naughty(self, transaction):
        """The deferred rejection stored for this connection, if any."""
        return transaction.connection.notes.get("naughty")

    def adjust_karma(self, transaction, value):
        """Add ``value`` to the connection's karma (connection note ``karma``); returns it."""
        notes = transaction.connection.notes
        notes["karma"] = notes.get("karma", 0) + value
        if self.log_enabled(codes.LOGINFO):
            self.log(codes.LOGINFO, "karma %d (%d)" % (value, notes["karma"]), transaction)
        return value

    def store_auth_results(self, transaction, result):
        """Add ``result`` (``spf=pass smtp.mailfrom=…``) to this message's one
        Authentication-Results field (see :mod:`qpsmtpd_tx.authresults`): kept in the
        transaction note ``authentication_results`` (a list), or at connect and HELO in the
        connection note (text, as qpsmtpd); once the field is on the message
        (``data_post``), it is rewritten at once."""
        authresults.store(transaction, result, self.server.me if self.server else None,
                          current_hook.get())

    def refuse_routing_recipient(self, transaction, recipient):
        """``(DENY, "Relaying denied (#5.7.1)")`` for a routing local part from a non-relay client.

        For RCPT plugins about to answer OK: ``<victim%elsewhere@local>``,
        ``<elsewhere!victim@local>`` and ``<"victim@elsewhere"@local>`` would be relayed by a
        back end such as Postfix, so only relay clients (and whitelisted ones) may use them.
        None when the recipient may be accepted.
        """
        char = recipient.routing_character()
        if char is None or self.is_immune(transaction):
            return None
        self.log(codes.LOGINFO, "fail: %s: routing character %r in the local part"
                 % (recipient.format(), char), transaction)
        return codes.DENY, RELAYING_DENIED

    def is_immune(self, transaction):
        """True if the connection or sender is exempt from checks (relay client, whitelisted)."""
        conn = transaction.connection
        return bool(
            conn.relay_client
            or conn.notes.get("whitelisthost")
            or transaction.notes.get("whitelistsender")
        )
