"""whitelist — exempt listed hosts, HELO names, senders and recipients from later checks.

List it in ``plugins`` before the plugins it should exempt. Each match answers ``OK`` for its
hook, so the plugins after this one are skipped for that hook only, and leaves a note that
later plugins can test (``is_immune`` honours ``whitelisthost`` and ``whitelistsender``).
Beware: ``rcpt_ok`` accepts every recipient of an immune connection or sender, as in
qpsmtpd, so a whitelisted host or sender may relay through this server when ``rcpt_ok``
decides about recipients.

  - connect: the client's IP is in ``whitelisthosts`` (or the environment variable
    ``WHITELISTCLIENT`` is set) → connection note ``whitelisthost`` = 1 (for the
    environment variable: ``whitelistclient`` = 1), karma +5, ``OK``.
  - helo / ehlo: the name is in ``whitelisthelo`` (any case) → connection note
    ``whitelisthelo`` = 1, ``OK``.
  - mail: the sender address, or its domain, is in ``whitelistsenders`` (any case; never for
    the null sender ``<>``) → transaction note ``whitelistsender`` = 1, ``OK``.
  - rcpt: the recipient address, or its domain, is in ``whitelistrcpt`` (any case) →
    transaction note ``whitelistrcpt`` counts the whitelisted recipients, and ``OK``, which
    **accepts the recipient**: list only addresses and domains you receive mail for.

Arguments: ``key value`` pairs, all optional:
  ``per_recipient 0|1``  a true value (anything but ``0`` or empty) defers every check to the
                         ``rcpt`` hook: for each recipient the host, the HELO name (the one
                         the client's accepted HELO/EHLO gave), the sender and the recipient
                         are checked in that order, and the first match sets its note and
                         accepts the recipient.
  ``merge 0|1``          accepted for compatibility and without effect: qpsmtpd merged
                         per-recipient whitelist files into the global ones, and neither
                         qpsmtpd 0.94 nor qpsmtpd-tx reads per-recipient config files.
  ``loglevel L``         per-plugin log level.
Anything else stops start-up.

Config files, one entry per line (a line with more than one word, or a bad
``whitelisthosts`` entry, stops start-up naming the file and line):
  ``whitelisthosts``    a full address (``192.0.2.7``, ``2001:db8::7``: that address only),
                        a CIDR block (``192.0.2.0/24``), or the start of an address written
                        as text (``192.0.2.`` matches ``192.0.2.*``; ``10.1`` matches
                        ``10.1.*`` and also ``10.10.*``–``10.19.*``, as in qpsmtpd).
  ``whitelisthelo``     HELO/EHLO names.
  ``whitelistsenders``  addresses (``user@example.com``) or domains (``example.com``).
  ``whitelistrcpt``     addresses or domains.
The files are read when the plugin starts and again after the config cache is cleared;
a file broken by an edit then fails a SIGHUP's reload, and its list in use stays (logged once
at LOGERROR, not at each connection, until the file changes).

Environment: ``WHITELISTCLIENT`` set (to anything) whitelists the client. qpsmtpd-tx serves
every client from one process, so this whitelists *every* client; it is only meant for a
server started per connection.

Notes: sets connection notes ``whitelisthost``, ``whitelistclient``, ``whitelisthelo``,
transaction notes ``whitelistsender``, ``whitelistrcpt``; raises connection note ``karma``.

Replies: none of its own; a whitelisted recipient gets the core's ``250 <addr>, recipient ok``.

Differences from qpsmtpd 0.94, on purpose:
  - a complete address in ``whitelisthosts`` matches that address only (0.94 matched it as
    text, so ``10.0.0.1`` also whitelisted ``10.0.0.10``–``10.0.0.19``); CIDR blocks work;
  - IPv6 addresses are compared as addresses (any notation);
  - malformed lines and unknown arguments stop start-up (0.94 never matched such lines and
    ignored unknown arguments);
  - matches are logged at LOGINFO (0.94: LOGCRIT).
"""

import ipaddress
import os
import string

from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGINFO, OK
from qpsmtpd_tx.plugin import Plugin, PluginError

LIST_FILES = ("whitelisthosts", "whitelisthelo", "whitelistsenders", "whitelistrcpt")
_ADDRESS_CHARS = frozenset(string.hexdigits + ".:")


def _true(value):
    """Perl's truth for an argument value: anything but empty and ``0``."""
    return value not in (None, "", "0")


class HostList:
    """Parsed ``whitelisthosts``: exact addresses, networks and text prefixes."""

    def __init__(self, entries):
        """``entries`` are (word, ConfigLine) pairs; raise PluginError naming a bad line."""
        self.addresses = set()
        self.networks = []
        self.prefixes = []
        for word, line in entries:
            if "/" in word:
                try:
                    self.networks.append(ipaddress.ip_network(word, strict=True))
                except ValueError as e:
                    raise PluginError("%s:%s: bad network %r: %s" % (line.path, line.lineno, word, e))
                continue
            try:
                self.addresses.add(ipaddress.ip_address(word))
                continue
            except ValueError:
                pass
            if not set(word) <= _ADDRESS_CHARS:
                raise PluginError("%s:%s: not an IP address, network or address prefix: %r"
                                  % (line.path, line.lineno, word))
            self.prefixes.append(word.lower())

    def match(self, ip):
        """The entry that matches address text ``ip``, or None."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            addr = None
        if addr is not None:
            if addr in self.addresses:
                return str(addr)
            for network in self.networks:
                if addr.version == network.version and addr in network:
                    return str(network)
        text = ip.lower()
        for prefix in self.prefixes:
            if text.startswith(prefix):
                return prefix
        return None


class Whitelist(Plugin):
    """Set whitelist notes and answer OK for listed hosts, HELO names, senders, recipients."""

    environ = None  # tests may set a dict; None means os.environ

    def init(self, args):
        options = self.parse_kv_args(args, {"per_recipient", "merge"})
        self.per_recipient = _true(options.get("per_recipient"))
        self.merge = _true(options.get("merge", "1"))
        for name in LIST_FILES:
            self._list(name)  # a bad line stops start-up

    def register(self, registry):
        if not self.per_recipient:
            registry.register("connect", self, self.check_host)
            registry.register("helo", self, self.check_helo)
            registry.register("ehlo", self, self.check_helo)
            registry.register("mail", self, self.check_sender)
            registry.register("rcpt", self, self.check_rcpt)
        else:
            registry.register("rcpt", self, self.check_all_for_recipient)

    # -- config -----------------------------------------------------------------------------

    def _list(self, name, transaction=None):
        """File ``name`` parsed (again if it changed); after a bad edit, the list before it."""
        return self.parsed_config(name, _PARSERS[name], transaction, lines_only=True)

    # -- checks -----------------------------------------------------------------------------

    def check_host(self, transaction, *args):
        conn = transaction.connection
        if not conn.remote_ip:
            return DECLINED
        environ = os.environ if self.environ is None else self.environ
        if "WHITELISTCLIENT" in environ:
            conn.notes["whitelistclient"] = 1
            self.log(LOGINFO, "pass, is whitelisted client", transaction)
            self.adjust_karma(transaction, 5)
            return OK
        hit = self._list("whitelisthosts", transaction).match(conn.remote_ip)
        if hit is not None:
            conn.notes["whitelisthost"] = 1
            self.log(LOGINFO, "pass, is a whitelisted host (%s)" % hit, transaction)
            self.adjust_karma(transaction, 5)
            return OK
        self.log(LOGDEBUG, "skip: %s is not whitelisted" % conn.remote_ip, transaction)
        return DECLINED

    def check_helo(self, transaction, host=None, *extra):
        if host is None:
            return DECLINED
        if host.lower() in self._list("whitelisthelo", transaction):
            transaction.connection.notes["whitelisthelo"] = 1
            self.log(LOGINFO, "helo host %s in whitelisthelo" % host, transaction)
            return OK
        return DECLINED

    def check_sender(self, transaction, sender, *args):
        if sender is None or sender.is_null:
            return DECLINED
        address = sender.unquoted_address.lower()
        host = (sender.host or "").lower()
        if not address or not host:
            return DECLINED
        senders = self._list("whitelistsenders", transaction)
        if address in senders or host in senders:
            transaction.notes["whitelistsender"] = 1
            self.log(LOGINFO, "envelope sender %s in whitelistsenders" % address, transaction)
            return OK
        return DECLINED

    def check_rcpt(self, transaction, recipient, *args):
        address = recipient.unquoted_address.lower()
        host = (recipient.host or "").lower()
        if not address or not host:
            return DECLINED
        recipients = self._list("whitelistrcpt", transaction)
        if address in recipients or host in recipients:
            transaction.notes["whitelistrcpt"] = transaction.notes.get("whitelistrcpt", 0) + 1
            self.log(LOGINFO, "recipient %s in whitelistrcpt" % address, transaction)
            return OK
        return DECLINED

    def check_all_for_recipient(self, transaction, recipient, params):
        """per_recipient: the four checks in the rcpt hook, first match wins."""
        checks = (
            lambda: self.check_host(transaction),
            lambda: self.check_helo(transaction, transaction.connection.hello_host),
            lambda: self.check_sender(transaction, transaction.sender),
            lambda: self.check_rcpt(transaction, recipient),
        )
        for check in checks:
            result = check()
            if result != DECLINED:
                return result
        return DECLINED


def _one_word(line):
    words = line.text.split()
    if len(words) != 1:
        raise PluginError("%s:%s: one entry per line, got %r" % (line.path, line.lineno, line.text))
    return words[0]


def _parse_hosts(lines):
    return HostList([(_one_word(line), line) for line in lines])


def _parse_words(lines):
    return {_one_word(line).lower() for line in lines}


#: how each of LIST_FILES is parsed
_PARSERS = {"whitelisthosts": _parse_hosts, "whitelisthelo": _parse_words,
            "whitelistsenders": _parse_words, "whitelistrcpt": _parse_words}
