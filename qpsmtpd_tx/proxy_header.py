"""The HAProxy PROXY protocol header, versions 1 and 2, parsed without I/O.

A proxy (HAProxy ``send-proxy`` / ``send-proxy-v2``, stunnel ``protocol = proxy``, an AWS
Network Load Balancer) sends this header first on each connection, naming the client it
relays. :func:`parse` looks at the bytes received so far, however they were split into
reads, and says whether they begin with a complete header, need more bytes, are not a header
at all, or are a malformed one (:class:`BadHeader`).

- Version 1: one text line ``PROXY TCP4|TCP6 SRC DST SPORT DPORT`` or ``PROXY UNKNOWN …``,
  ending in CRLF, at most 107 bytes.
- Version 2: a 16-byte binary head (signature, version and command, family, length), then
  the addresses and TLVs. Commands ``PROXY`` and ``LOCAL`` (a proxy's own health check: the
  proxy is the client); families TCP over IPv4 and IPv6, and ``UNSPEC`` (as ``UNKNOWN``).
  UDP and UNIX families are refused: an SMTP client is a TCP peer. TLVs are skipped, and the
  whole header may not exceed :data:`MAX_V2_LENGTH` bytes.
"""

import ipaddress
import struct

import attr

V1_PREFIX = b"PROXY "
#: the longest version 1 header, CRLF included (the specification's figure)
MAX_V1_LENGTH = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEAD = 16
#: the longest version 2 header we take, head included: the addresses and a few TLVs (AWS's
#: VPC endpoint id, HAProxy's unique id and SSL details) fit with room to spare
MAX_V2_LENGTH = 2048

#: returned by :func:`parse` while the bytes so far could still begin a header
NEED_MORE = "need more"
#: returned by :func:`parse` when the bytes cannot begin a header (a client talking directly)
NOT_PROXY = "not proxy"

# version 2 families: (protocol name, address bytes, address size) by the family byte
_V2_FAMILIES = {0x11: ("TCP4", 4), 0x21: ("TCP6", 16)}
_V2_REFUSED = {0x12: "UDP over IPv4", 0x22: "UDP over IPv6", 0x31: "UNIX stream",
               0x32: "UNIX datagram"}


class BadHeader(ValueError):
    """Bytes that begin as a PROXY header but do not follow the protocol."""


@attr.s(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header. ``protocol`` is ``TCP4``, ``TCP6``, ``UNKNOWN`` (v1, or v2 UNSPEC) or
    ``LOCAL`` (v2); the addresses and ports are None unless TCP4/TCP6; ``length``: the
    header's bytes, to be removed from the input."""

    version = attr.ib()
    protocol = attr.ib()
    remote_ip = attr.ib()
    local_ip = attr.ib()
    remote_port = attr.ib()
    local_port = attr.ib()
    length = attr.ib()

    @property
    def has_addresses(self):
        """True if the header names the client (TCP4/TCP6); else the proxy's peer is kept."""
        return self.remote_ip is not None


def parse(data):
    """The :class:`ProxyHeader` that ``data`` (bytes) begins with, :data:`NEED_MORE` or
    :data:`NOT_PROXY`; raises :class:`BadHeader` for a malformed header.

    Bytes after the header (the client's first command) are left alone.
    """
    data = bytes(data)
    if data[:len(V1_PREFIX)] == V1_PREFIX[:len(data)]:
        return NEED_MORE if len(data) < len(V1_PREFIX) else _parse_v1(data)
    if data[:len(V2_SIGNATURE)] == V2_SIGNATURE[:len(data)]:
        return NEED_MORE if len(data) < V2_HEAD else _parse_v2(data)
    return NOT_PROXY


def _parse_v1(data):
    end = data.find(b"\n", 0, MAX_V1_LENGTH)
    if end < 0:
        if len(data) >= MAX_V1_LENGTH:
            raise BadHeader("no CRLF within %d bytes" % MAX_V1_LENGTH)
        return NEED_MORE
    if data[end - 1] != 13:
        raise BadHeader("a line end without CR")
    line = data[:end - 1].decode("ascii", "replace")
    protocol, remote_ip, local_ip, remote_port, local_port = parse_v1_line(line)
    return ProxyHeader(1, protocol, remote_ip, local_ip, remote_port, local_port, end + 1)


def parse_v1_line(line):
    """``(protocol, source ip, destination ip, source port, destination port)`` of a version 1
    line without its CRLF (addresses and ports None for ``UNKNOWN``); raises BadHeader."""
    words = line.split(" ")
    if len(words) < 2 or words[0] != "PROXY":
        raise BadHeader("not a PROXY header")
    protocol = words[1]
    if protocol == "UNKNOWN":
        return protocol, None, None, None, None
    if protocol not in ("TCP4", "TCP6") or len(words) != 6:
        raise BadHeader("expected PROXY TCP4|TCP6 SRC DST SPORT DPORT")
    version = 4 if protocol == "TCP4" else 6
    addresses = []
    for text in words[2:4]:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise BadHeader("bad address %r" % (text,))
        if ip.version != version:
            raise BadHeader("%s is not an IPv%d address" % (text, version))
        if getattr(ip, "scope_id", None) is not None:
            # ipaddress takes "fe80::1%anything" (any bytes but space and LF, CR included),
            # which would then stand for the client in the Received field and the logs
            raise BadHeader("address %r with a zone index" % (text,))
        addresses.append(_plain(ip))
    ports = []
    for text in words[4:6]:
        if not text.isdigit() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
            raise BadHeader("bad port %r" % (text,))
        ports.append(int(text))
    return protocol, addresses[0], addresses[1], ports[0], ports[1]


def _parse_v2(data):
    version_command, family, length = struct.unpack("!BBH", data[12:V2_HEAD])
    if version_command >> 4 != 2:
        raise BadHeader("version %d, not 2" % (version_command >> 4))
    command = version_command & 0x0F
    if command not in (0, 1):
        raise BadHeader("unknown command %d" % command)
    total = V2_HEAD + length
    if total > MAX_V2_LENGTH:
        raise BadHeader("%d bytes, more than the %d allowed" % (total, MAX_V2_LENGTH))
    if command == 1 and family in _V2_REFUSED:
        raise BadHeader("%s is not served" % _V2_REFUSED[family])
    if command == 1 and family not in _V2_FAMILIES and family != 0:
        raise BadHeader("unknown family 0x%02x" % family)
    if len(data) < total:
        return NEED_MORE
    if command == 0:
        return ProxyHeader(2, "LOCAL", None, None, None, None, total)
    if family == 0:
        return ProxyHeader(2, "UNKNOWN", None, None, None, None, total)
    protocol, size = _V2_FAMILIES[family]
    if length < 2 * size + 4:
        raise BadHeader("%d address bytes are too few for %s" % (length, protocol))
    addresses = data[V2_HEAD:V2_HEAD + 2 * size + 4]
    remote = ipaddress.ip_address(addresses[:size])
    local = ipaddress.ip_address(addresses[size:2 * size])
    remote_port, local_port = struct.unpack("!HH", addresses[2 * size:])
    return ProxyHeader(2, protocol, _plain(remote), _plain(local), remote_port, local_port, total)


def _plain(ip):
    """An IPv4-mapped IPv6 address as its IPv4 address (as the listener reports peers)."""
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
