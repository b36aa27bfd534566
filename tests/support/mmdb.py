"""A small MaxMind DB (``.mmdb``) writer, for tests of ``ident/geoip`` without downloading a
database. Written from the published MaxMind DB File Format Specification 2.0: a binary
search tree over the address bits (IPv6 tree; IPv4 networks live under ``::/96``), 16 zero
bytes, a data section of typed values, then ``\\xab\\xcd\\xefMaxMind.com`` and the metadata
map. Record size 32 bits. Enough for the readers (libmaxminddb, the maxminddb package)."""

import ipaddress
import struct
import time

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
#: the specification's type numbers
POINTER, UTF8, DOUBLE, BYTES, UINT16, UINT32, MAP, INT32, UINT64, UINT128, ARRAY = range(1, 12)
BOOLEAN = 14


class Uint16(int):
    """An int to store as uint16 (metadata's record_size, ip_version…)."""


class Uint64(int):
    """An int to store as uint64 (metadata's build_epoch)."""


def _control(kind, size):
    """The control byte(s) of a value of type ``kind`` and ``size``."""
    extended = kind > 7
    first = (0 if extended else kind) << 5
    if size < 29:
        head, tail = bytes([first | size]), b""
    elif size < 29 + 256:
        head, tail = bytes([first | 29]), bytes([size - 29])
    elif size < 285 + 65536:
        head, tail = bytes([first | 30]), struct.pack(">H", size - 285)
    else:
        head, tail = bytes([first | 31]), struct.pack(">I", size - 65821)[1:]
    return head + (bytes([kind - 7]) if extended else b"") + tail


def _unsigned(kind, value, width):
    data = value.to_bytes(width, "big").lstrip(b"\0")
    return _control(kind, len(data)) + data


def encode(value):
    """The data-section bytes of ``value``: str, float, bool, int (uint32 when it fits, else
    uint64; Uint16/Uint64 force those), bytes, dict, list."""
    if isinstance(value, bool):
        return _control(BOOLEAN, int(value))
    if isinstance(value, str):
        data = value.encode("utf-8")
        return _control(UTF8, len(data)) + data
    if isinstance(value, float):
        return _control(DOUBLE, 8) + struct.pack(">d", value)
    if isinstance(value, Uint16):
        return _unsigned(UINT16, value, 2)
    if isinstance(value, int):
        if value < 0:
            return _control(INT32, 4) + struct.pack(">i", value)
        if value < 2 ** 32 and not isinstance(value, Uint64):
            return _unsigned(UINT32, value, 4)
        return _unsigned(UINT64, value, 8)
    if isinstance(value, bytes):
        return _control(BYTES, len(value)) + value
    if isinstance(value, dict):
        return _control(MAP, len(value)) + b"".join(
            encode(key) + encode(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return _control(ARRAY, len(value)) + b"".join(encode(item) for item in value)
    raise TypeError("cannot encode %r" % (value,))


def _bits(network):
    """The network's prefix bits in the IPv6 tree (an IPv4 network under ``::/96``: its
    integer is already that address)."""
    net = ipaddress.ip_network(network)
    prefix = net.prefixlen + (96 if net.version == 4 else 0)
    address = int(net.network_address)
    return [(address >> (127 - i)) & 1 for i in range(prefix)]


def write_mmdb(path, records, database_type="GeoLite2-City", description="test database"):
    """Write a database mapping each network of ``records`` ({"192.0.2.0/24": {…}, …}) to
    its data. A more specific network inside another must come after it."""
    tree = [[None, None]]       # node: [left, right]; an entry is a node index or ("data", i)
    blobs = []
    for network, data in records.items():
        bits = _bits(network)
        node = 0
        for depth, bit in enumerate(bits):
            if depth == len(bits) - 1:
                blobs.append(encode(data))
                _fill(tree, node, bit, ("data", len(blobs) - 1))
                break
            child = tree[node][bit]
            if not isinstance(child, int):
                tree.append([child, child])     # split an inherited value (or nothing)
                child = tree[node][bit] = len(tree) - 1
            node = child
    node_count = len(tree)
    offsets, data_section = [], b""
    for blob in blobs:
        offsets.append(len(data_section))
        data_section += blob

    def record(entry):
        if entry is None:
            return node_count
        if isinstance(entry, int):
            return entry
        return node_count + 16 + offsets[entry[1]]

    tree_bytes = b"".join(struct.pack(">II", record(left), record(right)) for left, right in tree)
    metadata = {
        "node_count": node_count, "record_size": Uint16(32), "ip_version": Uint16(6),
        "database_type": database_type, "languages": ["en"],
        "binary_format_major_version": Uint16(2), "binary_format_minor_version": Uint16(0),
        "build_epoch": Uint64(int(time.time())), "description": {"en": description},
    }
    with open(path, "wb") as f:
        f.write(tree_bytes + b"\0" * 16 + data_section + METADATA_MARKER + encode(metadata))
    return path


def _fill(tree, node, bit, value):
    """Set ``value`` on one side of ``node``; a subtree already there keeps its own, more
    specific entries and takes ``value`` where it had none."""
    child = tree[node][bit]
    if isinstance(child, int):
        for side in (0, 1):
            if tree[child][side] is None:
                tree[child][side] = value
            elif isinstance(tree[child][side], int):
                _fill(tree, child, side, value)
    else:
        tree[node][bit] = value


def city(iso_code, country, continent, name=None, latitude=None, longitude=None):
    """A GeoLite2-City record as MaxMind's databases hold it (the fields geoip reads)."""
    record = {
        "continent": {"code": continent, "names": {"en": continent}},
        "country": {"iso_code": iso_code, "names": {"en": country}},
    }
    if name is not None:
        record["city"] = {"names": {"en": name}}
    if latitude is not None:
        record["location"] = {"latitude": float(latitude), "longitude": float(longitude),
                              "accuracy_radius": 50}
    return record
