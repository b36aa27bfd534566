"""Reverse DNS of the client, as qpsmtpd's forkserver does before the connect hooks."""

import re

from twisted.internet import defer

from qpsmtpd_tx.dns import DNSError

#: qpsmtpd waits this long for the PTR answer
PTR_TIMEOUT = 3.0
_NOT_HOSTNAME = re.compile(r"[^A-Za-z0-9.\-\[\]]")


def lookup_ptr(dns, ip, timeout=PTR_TIMEOUT):
    """A Deferred firing with the host name of ``ip`` (sanitised), or None if there is none in
    time.

    ``dns`` is the connection's :class:`~qpsmtpd_tx.dns.DNSBudget`. Like qpsmtpd, this asks
    DNS for the PTR record only (``/etc/hosts`` is not read) and does not confirm the name
    forwards (the ``fcrdns`` plugin does). Of several PTR records the first is taken.
    """
    try:
        d = dns.ptr(ip, timeout=timeout)
    except ValueError:          # not an IP address (a UNIX socket, a test transport)
        return defer.succeed(None)
    d.addCallbacks(_host_name, _no_name)
    return d


def ptr_name(dns, ip, timeout=PTR_TIMEOUT):
    """The host name of ``ip`` as :func:`lookup_ptr` gives it, at once (a str, or None) when
    the resolver's cache holds the answer, else a Deferred of it.

    Most clients come back within the answer's TTL (a client without a PTR record within the
    60 s a "no such name" is kept): their connection then builds no Deferred and, without a
    PTR record, no Failure.
    """
    try:
        outcome = dns.ptr_cached(ip)
    except ValueError:          # not an IP address
        return None
    if outcome is None:
        return lookup_ptr(dns, ip, timeout)
    if isinstance(outcome, DNSError):
        return None
    return _host_name(outcome)


def _host_name(answer):
    return _NOT_HOSTNAME.sub("", answer.records[0]) or None


def _no_name(failure):
    failure.trap(DNSError)
    return None
