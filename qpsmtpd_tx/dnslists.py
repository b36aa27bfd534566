"""What the DNS list plugins share (``dnsbl``, ``rhsbl``, ``dns_whitelist_soft``).

A DNS list (a *zone*) is asked about a subject (the client's reversed address, a sender's
domain) by looking up ``<subject>.<zone>``. As in qpsmtpd, a zone written with a message of
its own is asked for an A record (any address means "listed", and the message is the text);
a zone written alone is asked for TXT records (the first non-empty one is the text).

:func:`ask` starts the lookups of every zone at once; :func:`first_listing` then takes their
outcomes in the order of the zone file, so the answer does not depend on which DNS server
answered first. A lookup that fails without a definite answer (SERVFAIL, timeout, a name too
long to ask) is logged and skipped: it never makes a listing.
"""

import re

import attr
from twisted.internet import defer

from qpsmtpd_tx.codes import LOGDEBUG, LOGERROR
from qpsmtpd_tx.dns import DNSError
from qpsmtpd_tx.dns.names import reversed_labels
from qpsmtpd_tx.plugin import PluginError

#: a zone name as a zone file may give it: DNS labels of letters, digits, ``-`` and ``_``
_ZONE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                   r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
#: the ``reject`` values of the DNS list plugins (dnsbl also takes ``connect``)
REJECT_VALUES = ("0", "1", "naughty")
#: the ``reject_type`` values qpsmtpd's Plugin.pm knows
REJECT_TYPES = ("perm", "hard", "temp", "soft", "disconnect", "temp_disconnect")


@attr.s(frozen=True)
class Zone:
    """One DNS list: ``name``, and ``message`` (None: a TXT zone; text: an A zone)."""

    name = attr.ib()
    message = attr.ib(default=None)

    @property
    def rrtype(self):
        """The record type this zone is asked for: ``A`` if it has a message, else ``TXT``."""
        return "TXT" if self.message is None else "A"


def zones_parser(separator):
    """A parser (for :meth:`Plugin.parsed_config`) of a zone file whose lines are ``zone``
    or ``zone<separator>message`` (``separator`` None: a run of white space).

    The zones come in file order; a zone named twice keeps its first place and its last
    line's message (qpsmtpd keeps the zones in a hash, so the last line wins there too). A
    zone name that cannot be asked in DNS stops start-up naming the file and line.
    """
    def parse(lines):
        zones = {}
        for line in lines:
            parts = line.text.split(separator, 1)
            name = parts[0].strip().rstrip(".")
            if not _ZONE.match(name):
                raise PluginError("%s:%s: not a DNS zone name: %r%s"
                                  % (line.path, line.lineno, name,
                                     " (a message goes after a ':')" if separator == ":" and
                                     " " in name else ""))
            message = parts[1].strip() if len(parts) > 1 else None
            zones[name.lower()] = Zone(name.lower(), message)
        return list(zones.values())
    return parse


def check_reject_args(options, reject_values=REJECT_VALUES):
    """Check the ``reject`` and ``reject_type`` arguments in ``options``; PluginError if bad."""
    reject = options.get("reject")
    if reject is not None and reject not in reject_values:
        raise PluginError("reject must be %s, not %r" % (", ".join(reject_values), reject))
    reject_type = options.get("reject_type")
    if reject_type is not None and reject_type.lower() not in REJECT_TYPES:
        raise PluginError("reject_type must be one of %s, not %r"
                          % ("|".join(REJECT_TYPES), reject_type))


def ask(dns, subject, zones, timeout=None):
    """Start the lookup of ``<subject>.<zone>`` for every zone at once (``dns``: the
    connection's :class:`~qpsmtpd_tx.dns.DNSBudget`); a list of ``(zone, Deferred)``.

    Each Deferred fires with the listing's text (a TXT zone's first non-empty record; an A
    zone's message), None when not listed (NXDOMAIN, NODATA, or only empty TXT records), or
    the :class:`~qpsmtpd_tx.dns.DNSError` of a lookup that could not say; it never fails.
    """
    def listed(answer, zone):
        if zone.message is not None:
            return zone.message
        return next((text for text in answer.records if text), None)

    def unlisted(failure):
        failure.trap(DNSError)
        return None if failure.value.definite else failure.value

    pending = []
    for zone in zones:
        d = dns.lookup("%s.%s" % (subject, zone.name), zone.rrtype, timeout)
        d.addCallbacks(listed, unlisted, callbackArgs=(zone,))
        pending.append((zone, d))
    return pending


def ask_about_client(plugin, transaction, zones, timeout=None):
    """:func:`ask` every zone about the client's address (reversed, IPv6 by nibbles); None,
    logged, if the client has no IP address (a UNIX socket)."""
    conn = transaction.connection
    try:
        subject = reversed_labels(conn.remote_ip)
    except ValueError:
        plugin.log(LOGDEBUG, "skip, %r is not an IP address" % conn.remote_ip, transaction)
        return None
    return ask(conn.dns, subject, zones, timeout)


async def first_listing(plugin, transaction, pending):
    """``(zone, text)`` of the first zone (in file order) of ``pending`` (from :func:`ask`)
    that lists the subject, or None; lookups that could not say are logged and skipped."""
    for zone, d in pending:
        outcome = await d
        if isinstance(outcome, DNSError):
            plugin.log(LOGERROR, "skip %s: %s" % (zone.name, outcome), transaction)
        elif outcome is None:
            plugin.log(LOGDEBUG, "%s: not listed" % zone.name, transaction)
        else:
            return zone, outcome
    return None


def within(d, seconds, clock):
    """A Deferred firing with ``d``'s result, or with None after ``seconds`` on ``clock``;
    unlike ``addTimeout`` it leaves ``d`` running, for a later wait to use."""
    result = defer.Deferred()
    timer = clock.callLater(seconds, lambda: result.called or result.callback(None))

    def done(value):
        if not result.called:
            timer.cancel()
            result.callback(value)
        return value
    d.addBoth(done)
    return result
