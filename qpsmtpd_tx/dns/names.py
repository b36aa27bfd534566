"""DNS names built from addresses: reverse (PTR) names and DNS list queries, IPv4 and IPv6."""

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)
def parse_ip(text):
    """The :mod:`ipaddress` address of ``text``, or None if it is not an IP address.

    An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, as a dual-stack socket reports IPv4
    clients) is its IPv4 address. Remembered for the last few thousand texts: a connection
    parses its addresses several times (the protocol, relay, DNS lists), and ``ipaddress``
    takes ~15 µs for each.
    """
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except (ValueError, AttributeError):
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def reversed_labels(ip):
    """The labels of ``ip`` as DNS lists and reverse zones write them, most specific first.

    ``192.0.2.1`` → ``1.2.0.192``; an IPv6 address → its 32 nibbles reversed, dot-separated.
    Raises ValueError for text that is not an IP address.
    """
    address = parse_ip(ip) if isinstance(ip, str) else ip
    if address is None:
        raise ValueError("not an IP address: %r" % (ip,))
    if address.version == 4:
        return ".".join(reversed(str(address).split(".")))
    return ".".join(reversed(address.exploded.replace(":", "")))


@functools.lru_cache(maxsize=4096)
def reverse_name(ip):
    """The PTR name of ``ip``: ``1.2.0.192.in-addr.arpa`` or ``….ip6.arpa``; remembered for the
    last few thousand addresses (asked at each connection of a client)."""
    address = parse_ip(ip) if isinstance(ip, str) else ip
    if address is None:
        raise ValueError("not an IP address: %r" % (ip,))
    suffix = "in-addr.arpa" if address.version == 4 else "ip6.arpa"
    return "%s.%s" % (reversed_labels(address), suffix)


def list_query_name(ip, zone):
    """The name a DNS list ``zone`` is asked for about ``ip`` (``1.2.0.192.zone``)."""
    return "%s.%s" % (reversed_labels(ip), zone.strip("."))
