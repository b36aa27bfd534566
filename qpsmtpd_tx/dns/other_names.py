"""Lookups of the names c-ares will not put in a query, through Twisted's DNS client.

c-ares (1.34) asks only for names made of letters, digits and a few marks (``-``, ``_``,
``.``, ``/``, ``*``): any other printable character gives ARES_EBADNAME at once, and a
backslash is read as an escape (``a\.b`` is asked as one label ``a.b``). A DNS label may hold
any octet (RFC 2181 section 11), and SPF macros build names from a sender's local part
(RFC 7208 7.3: ``exists:%{l}._spf.example.com`` with ``a+tag@example.com`` asks
``a+tag._spf.example.com``): such a name, if :func:`can_ask` says it is one, is asked here,
of the servers c-ares asks, with the same result types (records, or a DNSError).
"""

import socket

from twisted.internet import defer
from twisted.names import client, dns, error

from qpsmtpd_tx.dns.errors import DNSTimeout, NoData, NXDomain, ServFail

#: c-ares' defaults where resolv.conf gives none: seconds per try, tries
DEFAULT_TIMEOUT = 2.0
DEFAULT_TRIES = 3
_TYPES = {"A": dns.A, "AAAA": dns.AAAA, "MX": dns.MX, "TXT": dns.TXT, "PTR": dns.PTR,
          "CNAME": dns.CNAME, "NS": dns.NS}


#: the characters c-ares puts in a query name as they are (measured on c-ares 1.34.9)
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./*")


def needed(name):
    """Whether ``name`` must be asked here: it holds a character c-ares refuses or reads
    as an escape, and :func:`can_ask` says it is a name."""
    return not _PLAIN.issuperset(name) and can_ask(name)


def can_ask(name):
    """Whether ``name`` (normalised: lower case, no final dot) can go in a query here:
    printable ASCII other than space, labels of 1 to 63 characters, at most 253 in all."""
    return (0 < len(name) <= 253 and all(" " < c <= "~" for c in name)
            and all(0 < len(label) <= 63 for label in name.split(".")))


def _server(text):
    """``(host, port)`` of a c-ares server string (``IP:port``, ``[IPv6]:port``)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class OtherNames:
    """Queries of ``servers`` (c-ares' ``IP:port`` strings) through Twisted's client, each
    try ``timeout`` seconds, ``tries`` times."""

    def __init__(self, reactor, servers, timeout=None, tries=None):
        tries = tries or DEFAULT_TRIES
        self.client = client.Resolver(servers=[_server(s) for s in servers], reactor=reactor,
                                      timeout=(timeout or DEFAULT_TIMEOUT,) * tries)

    def query(self, name, rrtype):
        """A Deferred ``(records, ttl)`` (records as our resolver gives them: see
        :func:`_value`); it fails with NXDomain, NoData, ServFail or DNSTimeout."""
        d = self.client.query(dns.Query(name.encode("ascii"), _TYPES[rrtype], dns.IN))
        d.addCallbacks(self._records, self._failed, callbackArgs=(name, rrtype),
                       errbackArgs=(name, rrtype))
        return d

    @staticmethod
    def _records(sections, name, rrtype):
        wanted = _TYPES[rrtype]
        found = [r for r in sections[0] if r.type == wanted]
        if not found:
            raise NoData(name, rrtype)
        return [_value(rrtype, r.payload) for r in found], min(r.ttl for r in found)

    @staticmethod
    def _failed(failure, name, rrtype):
        if failure.check(error.DNSNameError):
            raise NXDomain(name, rrtype)
        if failure.check(defer.TimeoutError, error.DNSQueryTimeoutError):
            raise DNSTimeout(name, rrtype)
        raise ServFail(name, rrtype, failure.getErrorMessage())

    def close(self):
        """Nothing to release: each query's socket closes with it."""


def _value(rrtype, payload):
    """A record as c-ares' results give it to our resolver."""
    if rrtype == "A":
        return payload.dottedQuad()
    if rrtype == "AAAA":
        return socket.inet_ntop(socket.AF_INET6, payload.address)
    if rrtype == "MX":
        return (payload.preference, str(payload.name).rstrip("."))
    if rrtype == "TXT":
        return b"".join(payload.data).decode("utf-8", "replace")
    return str(payload.name).rstrip(".")
