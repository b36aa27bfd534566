"""Lookups whose failures are results: for checks that weigh several answers at once.

A check that asks several questions in parallel (A and AAAA of a name, the addresses of each
MX host) needs every outcome, answers and errors alike, to decide: :func:`settled` turns a
lookup's :class:`~qpsmtpd_tx.dns.errors.DNSError` into its result, and :func:`host_addresses`
asks A and AAAA of a name at once.
"""

import attr
from twisted.internet import defer

from qpsmtpd_tx.dns.errors import DNSError, NXDomain


def _error_as_result(failure):
    failure.trap(DNSError)
    return failure.value


def settled(d):
    """``d`` (a lookup's Deferred) firing with its Answer or with its DNSError, never failing."""
    return d.addErrback(_error_as_result)


@attr.s(frozen=True)
class HostAddresses:
    """The A and AAAA records of ``name``: ``addresses`` (text, A first) and ``errors`` (the
    DNSErrors of the types that gave none)."""

    name = attr.ib()
    addresses = attr.ib(converter=tuple)
    errors = attr.ib(converter=tuple)

    @property
    def definite(self):
        """True when every type that gave no address did so because the DNS said so."""
        return all(e.definite for e in self.errors)

    @property
    def nxdomain(self):
        """True when the DNS said the name does not exist."""
        return any(isinstance(e, NXDomain) for e in self.errors)

    def describe_errors(self):
        """The errors as one line of text, for a log."""
        return "; ".join(str(e) for e in self.errors)


async def host_addresses(dns, name, timeout=None):
    """The :class:`HostAddresses` of ``name``: A and AAAA asked at once through ``dns`` (a
    :class:`~qpsmtpd_tx.dns.DNSBudget` or Resolver), each waited for at most ``timeout``."""
    outcomes = await defer.gatherResults([settled(dns.a(name, timeout)),
                                          settled(dns.aaaa(name, timeout))])
    addresses, errors = [], []
    for outcome in outcomes:
        if isinstance(outcome, DNSError):
            errors.append(outcome)
        else:
            addresses.extend(outcome.records)
    return HostAddresses(name, addresses, errors)
