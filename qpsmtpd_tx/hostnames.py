"""Judging a client's names against its address: the checks ``fcrdns`` and ``helo`` share.

qpsmtpd's rules: a name must hold a dot and only letters, digits, ``-`` and ``.``; an address
"matches" the client when it is the client's or (IPv4) in the client's /24; two names
"match" when equal or when their last two labels are.
"""

import re

from qpsmtpd_tx.dns import parse_ip

_INVALID_FQDN_CHAR = re.compile(r"[^A-Za-z0-9.-]")


def fqdn_problem(name):
    """None if ``name`` looks like a fully qualified host name, else why not: ``"not FQDN"``
    (no dot) or ``"invalid FQDN chars"``."""
    if "." not in name:
        return "not FQDN"
    if _INVALID_FQDN_CHAR.search(name):
        return "invalid FQDN chars"
    return None


def address_match(address, client_ip):
    """How ``address`` (text, from a forward lookup) matches the client's ``client_ip``:
    ``"exact"``, ``"network"`` (both IPv4, same /24), or None."""
    ip, client = parse_ip(address), parse_ip(client_ip)
    if ip is None or client is None:
        return None
    if ip == client:
        return "exact"
    if ip.version == client.version == 4 and ip.packed[:3] == client.packed[:3]:
        return "network"
    return None


def name_match(dns_name, helo_name):
    """How the name ``dns_name`` (from a PTR record) matches ``helo_name``: ``"exact"``,
    ``"domain"`` (same last two labels), or None; case-insensitive, and a name without a
    dot matches nothing."""
    dns_name, helo_name = dns_name.lower().rstrip("."), helo_name.lower().rstrip(".")
    if "." not in dns_name:
        return None
    if dns_name == helo_name:
        return "exact"
    if dns_name.split(".")[-2:] == helo_name.split(".")[-2:]:
        return "domain"
    return None
