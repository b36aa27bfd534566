"""resolvable_fromhost — refuse a sender whose domain has no usable MX or address in DNS.

Old names: ``require_resolvable_fromhost`` and ``async/resolvable_fromhost`` (aliases).

At MAIL FROM, the sender's domain is looked up: its MX records first; if it has some, the
domain is resolvable when one MX host (in preference order) has an A or AAAA address outside
``invalid_resolvable_fromhost``; if it has none, the domain's own A and AAAA records are asked
and one address outside those networks makes it resolvable. All MX hosts are asked at once
(A and AAAA together), at most :data:`MAX_EXCHANGES` of them, the most preferred first. The
MX query itself goes out at ``mail_pre``, so that it overlaps the mail hooks of the plugins
listed before this one (e.g. ``rhsbl``'s lookups).
Relay clients and whitelisted hosts or senders are not checked; nor is the null sender.

Arguments: ``[reject 0|1|naughty] [reject_type TYPE] [loglevel N]``
  ``reject``       ``1`` (default) reject; ``0`` only log ("fail, tolerated"); ``naughty``
                   leave the rejection to the ``naughty`` plugin.
  ``reject_type``  ``soft``/``temp`` (default: 450), ``perm``/``hard`` (550),
                   ``disconnect`` (550 and close), ``temp_disconnect`` (450 and close).

Replies (the status digit follows ``reject_type``: ``#4.…`` with 450, ``#5.…`` with 550):
  ``450 FQDN required in the envelope sender (#4.1.8)``
      the sender has no domain (``<postmaster>``), the domain's MX hosts have no address or
      only addresses in ``invalid_resolvable_fromhost``, the domain publishes a null MX
      (RFC 7505: ``MX 0 .``, "this domain sends no mail"), or its only addresses are in
      ``invalid_resolvable_fromhost``;
  ``450 Temporary address resolution failure (#4.4.3)``
      the domain has no MX and no A or AAAA record (NXDOMAIN or no such records).
  When the DNS cannot say (SERVFAIL, a timeout, the connection's ``dns_budget`` spent) and
  no address was found otherwise, the check is skipped and logged at LOGWARN: never a
  rejection.

Config files:
  ``invalid_resolvable_fromhost``  networks (``127.0.0.0/8``, ``10.0.0.0/8``, IPv6 too), one
                  per line (first word); an MX host or domain whose addresses are all in them
                  counts as unresolvable. A line that is not a network stops start-up with the
                  file and line.

Notes: transaction note ``resolvable_fromhost``: ``mx`` (an MX host resolved), ``a`` (the
domain's own address), ``ip`` (an address literal, not checked), ``null`` (null sender), or
the reason of a failure (``unparsable host``, ``invalid MX for DOMAIN``, ``null MX for
DOMAIN``, ``invalid A for DOMAIN``); unset when nothing resolved. Transaction note
``resolvable_fromhost_host``: the domain checked; ``resolvable_fromhost_mx``: the MX query sent at
mail_pre, until the mail hook takes it. Connection note ``karma``: −1 for an address
literal, for a domain without MX (when the DNS says so), and for each failure, as in 0.94.

Differences from qpsmtpd 0.94, on purpose:
  - a SERVFAIL or timeout is a logged skip (0.94 treated it as "no records" and refused);
  - the domain's own addresses are also checked against ``invalid_resolvable_fromhost``
    (0.94 set its ``a`` result before the check and so accepted them), and any valid
    address of a host counts (0.94 looked at the first record only, in DNS order);
  - a null MX is named in the log and note (0.94 looked up the root's address and failed
    the same way, with the same reply);
  - ``[IPv6:…]`` literals are skipped like IPv4 ones, and AAAA is always asked (0.94: only
    with Perl's IPv6 modules installed);
  - ``reject naughty`` defers the rejection to ``naughty`` (0.94 rejected at once), and
    ``invalid_resolvable_fromhost`` takes IPv6 networks and host bits (0.94: IPv4, and a
    network written with host bits never matched);
  - at most :data:`MAX_EXCHANGES` MX hosts are looked at.
"""

import ipaddress

from twisted.internet import defer

from qpsmtpd_tx.codes import DECLINED, DENYSOFT, DENYSOFT_DISCONNECT, LOGINFO, LOGWARN
from qpsmtpd_tx.command import CommandSyntaxError, sender_address
from qpsmtpd_tx.dns import DNSError, parse_ip
from qpsmtpd_tx.dns.outcomes import host_addresses, settled
from qpsmtpd_tx.plugin import Plugin, PluginError

REJECT_VALUES = ("0", "1", "naughty")
REJECT_TYPES = ("perm", "hard", "temp", "soft", "disconnect", "temp_disconnect")
#: MX hosts looked up per sender domain (a domain can publish hundreds)
MAX_EXCHANGES = 10
FQDN_REQUIRED = "FQDN required in the envelope sender (#%d.1.8)"
RESOLVER_FAILED = "Temporary address resolution failure (#%d.4.3)"


def parse_networks(lines):
    """The networks of ``invalid_resolvable_fromhost`` (ConfigLines); PluginError naming a
    bad line's file and line."""
    networks = []
    for line in lines:
        word = line.text.split()[0]
        try:
            networks.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            raise PluginError("%s:%s: not a network (ADDRESS/BITS): %r"
                              % (line.path, line.lineno, word))
    return tuple(networks)


def is_valid_address(address, networks):
    """True unless ``address`` (text) is in one of ``networks`` (or is no address at all)."""
    ip = parse_ip(address)
    return ip is not None and not any(ip in network for network in networks)


#: transaction note holding ``(domain, lookup)`` of the MX query sent at mail_pre
MX_NOTE = "resolvable_fromhost_mx"


class Outcome:
    """What the DNS said of a sender domain: ``status`` (``pass``; ``literal``: an address
    literal, not checked; ``fail``: refuse as not an FQDN; ``unresolved``: no records at all;
    ``skip``: the DNS could not say), a ``detail`` for the log, and a ``note`` to store as
    the ``resolvable_fromhost`` result (None: none)."""

    def __init__(self, status, detail, note=None):
        self.status = status
        self.detail = detail
        self.note = note


class ResolvableFromhost(Plugin):
    """Refuse senders whose domain cannot receive mail (no usable MX, A or AAAA)."""

    def init(self, args):
        options = self.parse_kv_args(args, {"reject", "reject_type"},
                                     {"reject": "1", "reject_type": "soft"})
        if options["reject"] not in REJECT_VALUES:
            raise PluginError("reject must be 0, 1 or naughty, not %r" % options["reject"])
        if options["reject_type"].lower() not in REJECT_TYPES:
            raise PluginError("reject_type must be one of %s, not %r"
                              % ("|".join(REJECT_TYPES), options["reject_type"]))
        self.reject = options["reject"]
        self.reject_type = options["reject_type"]
        self.invalid_networks()  # a bad line stops start-up

    def invalid_networks(self, transaction=None):
        """The parsed ``invalid_resolvable_fromhost`` (re-read after a config change)."""
        return self.parsed_config("invalid_resolvable_fromhost", parse_networks, transaction)

    def hook_mail_pre(self, transaction, path, params):
        """Send the MX query now, before the mail hooks of the plugins listed earlier (e.g.
        ``rhsbl``) run, so that its answer is on its way while they wait for theirs;
        :meth:`check` takes it (transaction note ``resolvable_fromhost_mx``). Decides
        nothing."""
        try:
            sender = sender_address(path)
        except CommandSyntaxError:
            return DECLINED
        host = sender.host
        if not (self.is_immune(transaction) or sender.is_null or not host or host.startswith("[")):
            transaction.notes[MX_NOTE] = (host, settled(transaction.connection.dns.mx(host)))
        return DECLINED

    async def hook_mail(self, transaction, sender, params):
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, immune (relay client or whitelisted)", transaction)
            return DECLINED
        if sender is None or sender.is_null:
            transaction.notes["resolvable_fromhost"] = "null"
            self.log(LOGINFO, "pass, null sender", transaction)
            return DECLINED
        outcome = await self.check(transaction, sender.host)
        if outcome.note is not None:
            transaction.notes["resolvable_fromhost"] = outcome.note
        if outcome.status in ("pass", "literal"):
            self.log(LOGINFO, ("pass, " if outcome.status == "pass" else "skip, ")
                     + outcome.detail, transaction)
            return DECLINED
        if outcome.status == "skip":
            self.log(LOGWARN, "skip, " + outcome.detail, transaction)
            return DECLINED
        digit = 4 if self.get_reject_type(DENYSOFT) in (DENYSOFT, DENYSOFT_DISCONNECT) else 5
        if outcome.status == "unresolved":
            return self.get_reject(transaction, RESOLVER_FAILED % digit, outcome.detail,
                                   default_type=DENYSOFT)
        self.adjust_karma(transaction, -1)
        return self.get_reject(transaction, FQDN_REQUIRED % digit, outcome.detail,
                               default_type=DENYSOFT)

    async def check(self, transaction, host):
        """The :class:`Outcome` for sender domain ``host`` (None when the sender has none)."""
        if not host:
            return Outcome("fail", "unparsable host", "unparsable host")
        transaction.notes["resolvable_fromhost_host"] = host
        if host.startswith("["):
            self.adjust_karma(transaction, -1)
            return Outcome("literal", "%s is an IP" % host, "ip")
        dns = transaction.connection.dns
        networks = self.invalid_networks(transaction)
        sent = transaction.notes.pop(MX_NOTE, None)
        # the query mail_pre sent, unless a mail_pre plugin has rewritten the sender since
        mx = await (sent[1] if sent is not None and sent[0] == host else settled(dns.mx(host)))
        if not isinstance(mx, DNSError):
            return await self.check_exchanges(transaction, host, mx.records, networks)
        if mx.definite:
            self.adjust_karma(transaction, -1)
        self.log(LOGINFO, "%s has no MX (%s)" % (host, mx.reason), transaction)
        found = await host_addresses(dns, host)
        if any(is_valid_address(a, networks) for a in found.addresses):
            return Outcome("pass", "found A for %s" % host, "a")
        if found.addresses:
            return Outcome("fail", "invalid A for %s" % host, "invalid A for %s" % host)
        if not (mx.definite and found.definite):
            return Outcome("skip", "lookups for %s failed: %s; %s"
                           % (host, mx, found.describe_errors()))
        return Outcome("unresolved", "missing result")

    async def check_exchanges(self, transaction, host, records, networks):
        """The :class:`Outcome` for ``host`` given its MX ``records``."""
        ordered = sorted(records)
        if any(not exchange for _, exchange in ordered):
            return Outcome("fail", "null MX for %s (it sends no mail)" % host,
                           "null MX for %s" % host)
        exchanges = []
        for _, exchange in ordered:
            if exchange.lower() not in exchanges:
                exchanges.append(exchange.lower())
        dns = transaction.connection.dns
        lookups = [defer.succeed(None) if parse_ip(e) else
                   defer.Deferred.fromCoroutine(host_addresses(dns, e))
                   for e in exchanges[:MAX_EXCHANGES]]
        results = await defer.gatherResults(lookups)
        undecided = []
        for exchange, found in zip(exchanges, results):
            addresses = [exchange] if found is None else found.addresses
            if any(is_valid_address(a, networks) for a in addresses):
                return Outcome("pass", "%s has MX at %s" % (host, exchange), "mx")
            if found is not None and not found.addresses and not found.definite:
                undecided.append(found.describe_errors())
        if undecided:
            return Outcome("skip", "no valid MX host for %s, and lookups failed: %s"
                           % (host, "; ".join(undecided)))
        return Outcome("fail", "invalid MX for %s" % host, "invalid MX for %s" % host)
