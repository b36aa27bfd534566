"""Zone files for the suite's private DNS server (:mod:`tests.support.dns`): records written
by tests turned into the text of a standard (RFC 1035) zone file.

A record is either a zone-file line, written as it is (``"www 300 IN A 192.0.2.1"``), or a
tuple ``(name, type, data[, ttl])``:

- ``name``: ``"@"`` (or ``""``) for the origin; a full name inside the zone, with or without
  the final dot (``"www.z1.qptx.test"``); anything else is relative to the origin (``"www"``).
- ``data``: for TXT (and SPF), a string of any length, cut into character-strings of at most
  255 bytes (so a TXT record longer than 512 bytes is just a long string), or a list of
  strings, one character-string each; quoting and escaping are done here. For the types
  whose last field is a host name (MX, PTR, CNAME, NS, DNAME, SRV), a target containing a
  dot is taken as a full name (``"mx.example.com"`` needs no final dot); a target without a
  dot is relative to the origin. A tuple is joined with spaces (``(10, "mx.example.com")``).
  Anything else is written as it is.

The zone gets a SOA (serial as given, negative-caching TTL :data:`NEGATIVE_TTL`) and one NS
(``ns.invalid.``, outside the zone so that it adds no name to it) before the records.
"""

#: the TTL of records that give none
DEFAULT_TTL = 60
#: the SOA minimum: how long a resolver may cache "no such name"
NEGATIVE_TTL = 5
#: the types whose last field is a domain name
HOST_TARGET_TYPES = frozenset({"MX", "PTR", "CNAME", "NS", "DNAME", "SRV"})


def normalise(name):
    """``name`` as the helpers compare names: lower case, no final dot."""
    return name.rstrip(".").lower()


def zone_text(origin, records, serial, ttl=DEFAULT_TTL):
    """The zone file of ``origin`` holding ``records`` (see the module docstring)."""
    origin = normalise(origin)
    lines = [
        "$ORIGIN %s." % origin,
        "$TTL %d" % ttl,
        "@ IN SOA ns.invalid. hostmaster.invalid. %d 3600 600 86400 %d" % (serial, NEGATIVE_TTL),
        "@ IN NS ns.invalid.",
    ]
    lines.extend(record_line(origin, record) for record in records)
    return "\n".join(lines) + "\n"


def record_line(origin, record):
    """One zone-file line for ``record`` (a line, or a ``(name, type, data[, ttl])`` tuple)."""
    if isinstance(record, str):
        return record
    if not 3 <= len(record) <= 4:
        raise ValueError("a record is (name, type, data[, ttl]), not %r" % (record,))
    name, rtype, data = record[:3]
    rtype = rtype.upper()
    ttl = " %d" % record[3] if len(record) == 4 else ""
    return "%s%s IN %s %s" % (_owner(origin, name), ttl, rtype, _rdata(rtype, data))


def _owner(origin, name):
    if name in ("", "@"):
        return "@"
    if name.endswith("."):
        return name
    lowered = name.lower()
    if lowered == origin or lowered.endswith("." + origin):
        return name + "."
    return name


def _rdata(rtype, data):
    if rtype in ("TXT", "SPF"):
        strings = [data] if isinstance(data, (str, bytes)) else list(data)
        return " ".join(_quoted(chunk) for text in strings for chunk in _chunks(text, len(strings) > 1))
    if isinstance(data, (tuple, list)):
        data = " ".join(str(part) for part in data)
    data = str(data)
    if rtype in HOST_TARGET_TYPES:
        fields = data.split()
        if fields and "." in fields[-1].rstrip(".") and not fields[-1].endswith("."):
            fields[-1] += "."
        data = " ".join(fields)
    return data


def _chunks(text, exact):
    """The character-strings of one TXT string: 255-byte pieces (one piece, which must fit,
    when the caller gave a list of strings)."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if exact:
        if len(raw) > 255:
            raise ValueError("a TXT character-string holds at most 255 bytes, not %d" % len(raw))
        return [raw]
    return [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]


def _quoted(raw):
    """``raw`` (bytes) as a quoted zone-file string: printable ASCII as it is, ``"`` and
    ``\\`` escaped, every other byte as ``\\DDD``."""
    out = []
    for byte in raw:
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append("\\%03d" % byte)
    return '"%s"' % "".join(out)
