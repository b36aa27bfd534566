"""The core's own config items, in one table: name, type, default, minimum, documentation.

Plugins read their own config files; the items below are the server's. Each is a file of
the config directory read the qpsmtpd way (:mod:`qpsmtpd_tx.config`); its first line is the
value (``plugin_dirs``: every line). :func:`read_items` reads a set of them at once and turns
every bad value into a problem naming the file and line (the item then has its default), so
that start-up lists them all. ``qpsmtpd-tx config-items`` prints this table
(:func:`describe`), and with ``--config DIR`` the value in effect and where it comes from.

All items are read once at start-up (a SIGHUP does not change them), but for those marked
``live``, which are read again whenever they are used (the config cache is cleared on SIGHUP).
"""

import attr

from qpsmtpd_tx import codes, outcomes, policy
from qpsmtpd_tx.config import DEFAULT_ORIGIN, HOOK_ORIGIN, ConfigError
from qpsmtpd_tx.hooks import DEFAULT_HOOK_TIMEOUT
from qpsmtpd_tx.kvstore.redis import parse_url
from qpsmtpd_tx.proxy_reader import parse_networks

INTEGER = "integer"
TEXT = "text"
FLAG = "flag"
OCTAL = "octal mode"
CHOICE = "one of"
LOG_LEVEL = "log level"
LINES = "lines"
NETWORKS = "networks"
REDIS_URL = "redis URL"


@attr.s(frozen=True)
class ConfigItem:
    """One core config item.

    ``kind``: how its text is read (:data:`INTEGER`, :data:`TEXT`, :data:`FLAG` — anything
    but ``0`` is true —, :data:`OCTAL`, :data:`CHOICE` of ``choices``, :data:`LOG_LEVEL`, or
    :data:`LINES`, or :data:`NETWORKS`: addresses and CIDR networks, several a line, or
    :data:`REDIS_URL`: ``redis://[:PASSWORD@]HOST[:PORT][/DB]``, kept as text);
    ``default``: the value when the file is missing or empty;
    ``default_text``: how the default is shown when it is not a plain value; ``minimum``: the
    lowest integer allowed; ``doc``: one line for operators; ``live``: read each time it is
    used instead of once at start-up.
    """

    name = attr.ib()
    kind = attr.ib()
    default = attr.ib()
    doc = attr.ib()
    minimum = attr.ib(default=None)
    choices = attr.ib(default=())
    default_text = attr.ib(default=None)
    live = attr.ib(default=False)

    def shown_default(self):
        """The default as ``config-items`` prints it."""
        if self.default_text is not None:
            return self.default_text
        return show_value(self, self.default)


def _item(name, kind, default, doc, **kwargs):
    return name, ConfigItem(name, kind, default, doc, **kwargs)


#: every core config item, by name (in the order ``config-items`` prints them)
ITEMS = dict([
    _item("me", TEXT, None, "this server's name: greeting, HELO reply, Received and "
          "Authentication-Results fields, 421 replies", default_text="the host name"),
    _item("smtpgreeting", TEXT, None, "the 220 greeting text (\" ESMTP\" is added unless "
          "present)", default_text="built from me", live=True),
    _item("databytes", INTEGER, 0, "largest message in bytes, advertised as SIZE; larger is "
          "refused with 552; 0 = no limit"),
    _item("timeout", INTEGER, 1200, "seconds a client may stay silent before it is "
          "disconnected"),
    _item("timeoutsmtpd", INTEGER, 0, "replaces timeout when set (qpsmtpd's name); 0 = unset"),
    _item("command_deadline", INTEGER, 300, "seconds a command line may take from its first "
          "byte, and a TLS handshake or a close after the last reply (300 for those when "
          "0); 0 = no limit for command lines", minimum=0),
    _item("data_deadline", INTEGER, 3600, "seconds a message may take from the 354; "
          "0 = no limit", minimum=0),
    _item("plugin_timeout", INTEGER, DEFAULT_HOOK_TIMEOUT, "seconds a waiting hook may take "
          "(a plugins line's timeout=N overrides it); 0 = no limit", minimum=0),
    _item("plugin_errors", CHOICE, "decline", "a plugin that fails (raises) in a hook that "
          "decides on a message (mail, rcpt, data, data_headers_end, data_post): decline (as "
          "qpsmtpd: the next plugin decides) or defer (a temporary refusal: nothing is accepted "
          "unchecked)",
          choices=("decline", "defer")),
    _item("shutdown_timeout", INTEGER, 30, "seconds SIGTERM waits for transactions in "
          "progress", minimum=0),
    _item("max_recipients", INTEGER, 1000, "recipients per transaction, beyond it 452 4.5.3; "
          "0 = no limit", minimum=0),
    _item("recipient_policy", CHOICE, policy.SPLIT, "recipients whose filter settings differ: "
          "split (one transaction, an outcome per recipient), group (452 4.5.3, another "
          "transaction) or strictest (merge)", choices=policy.POLICIES),
    _item("rejected_recipients", CHOICE, outcomes.QUARANTINE, "with recipient_policy split, "
          "the copy of a recipient a filter refused while others are accepted: quarantine "
          "(into quarantine_dir), discard, or tag (delivered with X-Recipient-Rejected)",
          choices=outcomes.DISPOSITIONS),
    _item("quarantine_dir", TEXT, None, "the Maildir that rejected_recipients quarantine "
          "writes to", default_text="var/quarantine in the working directory"),
    _item("auth_max_failures", INTEGER, 3, "failed AUTH exchanges per connection before 421; "
          "0 = no limit", minimum=0),
    _item("auth_failure_delay", INTEGER, 1, "seconds each failed AUTH is answered late; "
          "0 = none", minimum=0),
    _item("tls_before_auth", FLAG, False, "1: offer and accept AUTH only on TLS connections",
          default_text="1 with the tls plugin, else 0"),
    _item("size_threshold", INTEGER, 128 * 1024, "message bytes kept in memory before the "
          "body is spooled to spool_dir"),
    _item("spool_dir", TEXT, None, "directory for spooled message bodies",
          default_text="~/tmp of the service user"),
    _item("spool_perms", OCTAL, 0o700, "mode spool_dir is created with", default_text="0700"),
    _item("blocking_threads", INTEGER, 32, "threads for blocking work of plugins (fsync of "
          "deliveries)", minimum=1),
    _item("dns_servers", LINES, [], "name servers to ask instead of /etc/resolv.conf's, one "
          "per line (IP, IP:port, [IPv6]:port)", default_text="those of /etc/resolv.conf"),
    _item("dns_timeout", INTEGER, 0, "seconds c-ares waits for one try of a DNS query; "
          "0 = resolv.conf's options timeout: (else 2)", minimum=0),
    _item("dns_attempts", INTEGER, 0, "tries of a DNS query per name server; 0 = "
          "resolv.conf's options attempts: (else 3)", minimum=0),
    _item("dns_budget", INTEGER, 30, "seconds one connection may spend waiting for DNS in "
          "all; later lookups time out at once (a skip, never a reject); 0 = no limit",
          minimum=0),
    _item("dns_cache_size", INTEGER, 10000, "DNS answers kept (by TTL, least recently used "
          "dropped first); 0 = none", minimum=0),
    _item("proxy_trusted", NETWORKS, parse_networks(["127.0.0.1", "::1"]), "the proxies "
          "that may connect to a --listen-proxy endpoint (addresses or CIDR networks, "
          "separated by spaces, commas or lines); others are refused",
          default_text="127.0.0.1 ::1"),
    _item("proxy_timeout", INTEGER, 5, "seconds a --listen-proxy endpoint waits for the "
          "PROXY header before it closes the connection", minimum=1),
    _item("max_from_ip_redis", REDIS_URL, None, "redis://HOST[:PORT][/DB]: count "
          "--max-from-ip across every server and worker using this Redis", default_text="none: "
          "each process counts its own connections"),
    _item("max_from_ip_redis_timeout", INTEGER, 1, "seconds a new connection waits for "
          "max_from_ip_redis; then it is let through (the process's own count applies)",
          minimum=1),
    _item("max_from_ip_redis_ttl", INTEGER, 60, "seconds after which the connections of a "
          "server that stopped confirming them (every third of this) no longer count in "
          "max_from_ip_redis", minimum=3),
    _item("loglevel", LOG_LEVEL, codes.LOGWARN, "lines up to this level are logged when no "
          "logging plugin is loaded (0-7 or LOGWARN...)", default_text="4 (LOGWARN)"),
    _item("plugin_dirs", LINES, [], "directories searched for plugins after the bundled ones, "
          "one per line", default_text="none"),
])


def _convert(item, text):
    """The value of ``text`` for ``item``; ValueError (with the reason) if it is not one."""
    if item.kind == TEXT:
        return text
    if item.kind == FLAG:
        return text != "0"
    if item.kind == OCTAL:
        try:
            return int(text, 8)
        except ValueError:
            raise ValueError("%s must be an octal mode, got %r" % (item.name, text))
    if item.kind == CHOICE:
        if text.lower() not in item.choices:
            raise ValueError("%s must be one of %s, not %r"
                             % (item.name, ", ".join(item.choices), text.lower()))
        return text.lower()
    if item.kind == REDIS_URL:
        try:
            parse_url(text)
        except ValueError as e:
            raise ValueError("%s: %s" % (item.name, e))
        return text
    if item.kind == LOG_LEVEL:
        try:
            return codes.parse_log_level(text)
        except ValueError as e:
            raise ValueError("%s: %s (0-7 or a name such as LOGWARN)" % (item.name, e))
    raise AssertionError("no conversion for %s" % item.kind)


def read_item(config, name):
    """``(value, line)`` of config item ``name``; ``line`` is the ConfigLine read, or None.

    Raises :class:`~qpsmtpd_tx.config.ConfigError` naming the file and line for a bad value.
    """
    item = ITEMS[name]
    lines = config.get_lines(name)
    first = lines[0] if lines else None
    if item.kind == LINES:
        return [line.text for line in lines], first
    if item.kind == NETWORKS:
        return _networks(item, lines), first
    if item.kind == INTEGER:
        # Config.get_int words its errors as the plugins' integer items are worded
        return config.get_int(name, item.default, minimum=item.minimum), first
    if first is None:
        return item.default, None
    try:
        return _convert(item, first.text), first
    except ValueError as e:
        raise ConfigError(str(e), first.path, first.lineno)


def _networks(item, lines):
    """The networks of every line (the default if there is none); ConfigError names a bad one."""
    if not lines:
        return item.default
    networks = []
    for line in lines:
        try:
            networks += parse_networks(line.text.replace(",", " ").split())
        except ValueError as e:
            raise ConfigError("%s: %s" % (item.name, e), line.path, line.lineno)
    return networks


def value(config, name):
    """The value of config item ``name`` (for ``live`` items, read where they are used).

    A bad value gives the default (start-up has reported it already).
    """
    return value_or_default(config, name)[0]


def value_or_default(config, name):
    """``(value, None)`` of config item ``name``, or for a bad value ``(the item's default,
    the ConfigError)``, for a caller that reports the error."""
    try:
        return read_item(config, name)[0], None
    except ConfigError as e:
        return ITEMS[name].default, e


def read_items(config, names=None):
    """``(values, problems)``: ``{name: value}`` of the items ``names`` (default: all, the
    ``live`` ones read too so that a bad one is reported at start-up), and one
    ``file:line: …`` string per bad value (which gets its default)."""
    if names is None:
        names = list(ITEMS)
    values, problems = {}, []
    for name in names:
        values[name], error = value_or_default(config, name)
        if error is not None:
            problems.append(str(error))
        if ITEMS[name].live:
            # read here only to report a bad file: the first real use asks the config
            # hooks of the plugins then loaded (http_config), not this reading's cache
            config.forget(name)
    return values, problems


def show_value(item, value):
    """``value`` of ``item`` as an operator would write it in the file."""
    if value is None:
        return "-"
    if item.kind == FLAG:
        return "1" if value else "0"
    if item.kind == OCTAL:
        return "%04o" % value
    if item.kind in (LINES, NETWORKS):
        return " ".join(str(v) for v in value) or "-"
    return str(value)


def _source(line):
    if line is None or line.path == DEFAULT_ORIGIN:
        return "default"
    if line.path == HOOK_ORIGIN:
        return line.path
    return "%s:%d" % (line.path, line.lineno)


def describe(config=None):
    """``(rows, problems)`` for ``qpsmtpd-tx config-items``.

    Without ``config`` each row is ``(name, default, doc)``; with it, ``(name, value in
    effect, where it comes from, doc)``, and ``problems`` lists the bad values (shown as
    their defaults).
    """
    rows, problems = [], []
    for name, item in ITEMS.items():
        if config is None:
            rows.append((name, item.shown_default(), item.doc))
            continue
        try:
            current, line = read_item(config, name)
            shown = show_value(item, current) if line is not None else item.shown_default()
            rows.append((name, shown, _source(line), item.doc))
        except ConfigError as e:
            problems.append(str(e))
            rows.append((name, item.shown_default(), "default (bad value)", item.doc))
    return rows, problems
