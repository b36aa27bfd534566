"""The milter wire format, MTA side: packets we send and the milter's replies we read.

A packet is a 32-bit big-endian length, then that many bytes: one command character and its
data. Strings in the data end with a NUL. The constants are those of the milter protocol
(version 6, as libmilter 8.14 and later speak it); the names follow its documentation.
Nothing here does I/O: :class:`PacketReader` takes bytes as they come and gives packets,
the ``*_packet`` functions build bytes, :func:`parse_reply` turns a reply packet into a
:class:`Reply`.
"""

import re
import struct

import attr

from qpsmtpd_tx.message import is_field_name

#: the protocol version we speak
VERSION = 6
#: the oldest milter version whose replies we understand
MIN_VERSION = 2
#: the largest BODY chunk (libmilter's MILTER_CHUNK_SIZE)
CHUNK_SIZE = 65535
#: the largest packet we accept from a milter (a REPLBODY chunk is at most CHUNK_SIZE; a
#: milter that negotiated nothing more has no reason to send more)
MAX_PACKET = 1 << 20

# -- commands (MTA → milter) ------------------------------------------------------------------
ABORT = b"A"
BODY = b"B"
CONNECT = b"C"
MACRO = b"D"
EOB = b"E"
HELO = b"H"
QUIT_NC = b"K"
HEADER = b"L"
MAIL = b"M"
EOH = b"N"
OPTNEG = b"O"
QUIT = b"Q"
RCPT = b"R"
DATA = b"T"
UNKNOWN = b"U"

# -- replies (milter → MTA) -------------------------------------------------------------------
R_ADDRCPT = b"+"
R_DELRCPT = b"-"
R_ADDRCPT_PAR = b"2"
R_SHUTDOWN = b"4"
R_ACCEPT = b"a"
R_REPLBODY = b"b"
R_CONTINUE = b"c"
R_DISCARD = b"d"
R_CHGFROM = b"e"
R_CONN_FAIL = b"f"
R_ADDHEADER = b"h"
R_INSHEADER = b"i"
R_SETSYMLIST = b"l"
R_CHGHEADER = b"m"
R_PROGRESS = b"p"
R_QUARANTINE = b"q"
R_REJECT = b"r"
R_SKIP = b"s"
R_TEMPFAIL = b"t"
R_REPLYCODE = b"y"

# -- actions a milter may take (SMFIF_*), offered in OPTNEG -----------------------------------
F_ADDHDRS = 0x01
F_CHGBODY = 0x02
F_ADDRCPT = 0x04
F_DELRCPT = 0x08
F_CHGHDRS = 0x10
F_QUARANTINE = 0x20
F_CHGFROM = 0x40
F_ADDRCPT_PAR = 0x80
F_SETSYMLIST = 0x100

# -- protocol steps a milter may leave out (SMFIP_*) ------------------------------------------
P_NOCONNECT = 0x01
P_NOHELO = 0x02
P_NOMAIL = 0x04
P_NORCPT = 0x08
P_NOBODY = 0x10
P_NOHDRS = 0x20
P_NOEOH = 0x40
P_NR_HDR = 0x80
P_NOUNKNOWN = 0x100
P_NODATA = 0x200
P_SKIP = 0x400
P_RCPT_REJ = 0x800
P_NR_CONN = 0x1000
P_NR_HELO = 0x2000
P_NR_MAIL = 0x4000
P_NR_RCPT = 0x8000
P_NR_DATA = 0x10000
P_NR_UNKN = 0x20000
P_NR_EOH = 0x40000
P_NR_BODY = 0x80000
P_HDR_LEADSPC = 0x100000

# -- the stages a SETSYMLIST names (SMFIM_*) --------------------------------------------------
M_CONNECT, M_HELO, M_ENVFROM, M_ENVRCPT, M_DATA, M_EOM, M_EOH = range(7)

#: the address families of CONNECT
FAMILY_UNKNOWN, FAMILY_UNIX, FAMILY_INET, FAMILY_INET6 = b"U", b"L", b"4", b"6"


class ProtocolError(Exception):
    """The milter sent something the protocol does not allow; the text says what."""


def packet(command, data=b""):
    """One packet: length, command character, data."""
    return struct.pack("!I", len(data) + 1) + command + data


def _strings(*values):
    return b"".join(_bytes(v) + b"\0" for v in values)


def _bytes(value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def optneg_packet(actions, protocol, version=VERSION):
    """OPTNEG: the version we speak, the actions we allow, the steps the milter may skip."""
    return packet(OPTNEG, struct.pack("!III", version, actions, protocol))


def macro_packet(command, macros):
    """MACRO for the stage ``command``: ``macros`` is a list of ``(name, value)``."""
    return packet(MACRO, command + b"".join(_strings(n, v) for n, v in macros))


def connect_packet(hostname, family, port, address):
    """CONNECT: the client's host name, family (``FAMILY_*``), port and address."""
    data = _strings(hostname) + family
    if family != FAMILY_UNKNOWN:
        data += struct.pack("!H", port) + _strings(address)
    return packet(CONNECT, data)


def helo_packet(name):
    """HELO with the name the client gave."""
    return packet(HELO, _strings(name))


def envelope_packet(command, address, parameters=()):
    """MAIL or RCPT: ``<address>`` and the ESMTP parameters (``KEY=VALUE`` strings)."""
    return packet(command, _strings(address, *parameters))


def header_packet(name, value):
    """HEADER: one field's name and value."""
    return packet(HEADER, _strings(name, value))


class PacketReader:
    """Splits the milter's byte stream into ``(command, data)`` packets."""

    def __init__(self, max_packet=MAX_PACKET):
        self._buffer = b""
        self._max = max_packet

    def feed(self, data):
        """Add bytes; return the complete packets now available. ProtocolError for a packet
        with no command or one longer than the limit."""
        buffer = self._buffer + data
        packets = []
        start = 0       # (the rest is cut off once, not after each packet: many small
        end = len(buffer)   # packets in one read cost time in proportion to their number)
        while end - start >= 4:
            (length,) = struct.unpack_from("!I", buffer, start)
            if length == 0 or length > self._max:
                raise ProtocolError("packet of %d bytes (limit %d)" % (length, self._max))
            if end - start < 4 + length:
                break
            packets.append((buffer[start + 4:start + 5], buffer[start + 5:start + 4 + length]))
            start += 4 + length
        self._buffer = buffer[start:]
        return packets


@attr.s(frozen=True)
class Negotiated:
    """The milter's OPTNEG answer: its ``version``, the ``actions`` and ``protocol`` flags it
    wants, and the macro lists it asked for ({stage: [names]})."""

    version = attr.ib()
    actions = attr.ib()
    protocol = attr.ib()
    macros = attr.ib(factory=dict)


def parse_optneg(data):
    """Decode the milter's OPTNEG answer (a :class:`Negotiated`)."""
    if len(data) < 12:
        raise ProtocolError("OPTNEG answer of %d bytes, not 12" % len(data))
    version, actions, protocol = struct.unpack("!III", data[:12])
    macros = {}
    position = 12
    while position < len(data):
        end = data.find(b"\0", position + 4)
        if len(data) - position < 5 or end < 0:
            raise ProtocolError("malformed macro list in the OPTNEG answer")
        (stage,) = struct.unpack_from("!I", data, position)
        # one list per stage at most, as libmilter's smfi_setsymlist allows: a milter that
        # sent a megabyte of tiny lists is refused, not read list by list
        if stage > M_EOH or stage in macros:
            raise ProtocolError("macro list for stage %d in the OPTNEG answer (stages 0 to %d, "
                                "one list each)" % (stage, M_EOH))
        names = data[position + 4:end].decode("ascii", "replace").split()
        macros[stage] = [normal_macro_name(n) for n in names]
        position = end + 1
    return Negotiated(version, actions, protocol, macros)


def normal_macro_name(name):
    """A macro name as we compare them: one letter bare, longer names in braces."""
    bare = name.strip("{}")
    return bare if len(bare) == 1 else "{%s}" % bare


@attr.s(frozen=True)
class Reply:
    """One reply packet, decoded: ``command`` (an ``R_*``) and its fields. ``code`` and
    ``lines`` for REPLYCODE; ``name``, ``value``, ``index`` for header changes; ``address``
    and ``parameters`` for recipient and sender changes; ``data`` for REPLBODY; ``reason``
    for QUARANTINE."""

    command = attr.ib()
    code = attr.ib(default=None)
    lines = attr.ib(default=())
    name = attr.ib(default=None)
    value = attr.ib(default=None)
    index = attr.ib(default=None)
    address = attr.ib(default=None)
    parameters = attr.ib(default=())
    data = attr.ib(default=None)
    reason = attr.ib(default=None)


#: replies that carry nothing
SIMPLE_REPLIES = (R_ACCEPT, R_CONTINUE, R_DISCARD, R_PROGRESS, R_REJECT, R_SKIP, R_TEMPFAIL,
                  R_SHUTDOWN, R_CONN_FAIL)
_REPLY_LINE = re.compile(r"([45][0-9][0-9])([ -])(.*)\Z", re.S)
#: the most lines, and bytes per line, of a REPLYCODE: libmilter's own limits
#: (smfi_setmlreply takes 32 lines, smfi_setreply 980 bytes): a reply a client can take
MAX_REPLY_LINES = 32
MAX_REPLY_LINE = 980
_ENHANCED = re.compile(r"[45]\.[0-9]{1,3}\.[0-9]{1,3}\Z")


def _split_strings(data, count, what):
    parts = data.split(b"\0")
    if len(parts) != count + 1 or parts[-1] != b"":
        raise ProtocolError("%s: expected %d NUL-terminated strings" % (what, count))
    return [p.decode("utf-8", "surrogateescape") for p in parts[:-1]]


def _field(data, what):
    """The field name and value of a header change; ProtocolError for a bad name (its value
    is made safe where it is applied, :func:`qpsmtpd_tx.message.field_bytes`)."""
    name, value = _split_strings(data, 2, what)
    if not is_field_name(name):
        raise ProtocolError("%s with a bad field name %r" % (what, name[:100]))
    return name, value


def parse_replycode(text):
    """Check a REPLYCODE text (``550 5.7.1 go away``, or lines ``550-…`` CRLF ``550 …``);
    return ``(code, lines)``, each line without the code. ProtocolError if it is not a 4xx
    or 5xx SMTP reply, its lines disagree on the code, or it holds control characters."""
    raw_lines = text.rstrip("\r\n").split("\r\n") if text else []
    if not raw_lines:
        raise ProtocolError("empty REPLYCODE")
    if len(raw_lines) > MAX_REPLY_LINES or max(map(len, raw_lines)) > MAX_REPLY_LINE:
        raise ProtocolError("REPLYCODE of %d lines, the longest of %d characters (at most %d "
                            "of %d)" % (len(raw_lines), max(map(len, raw_lines)),
                                        MAX_REPLY_LINES, MAX_REPLY_LINE))
    code, lines = None, []
    for i, raw in enumerate(raw_lines):
        m = _REPLY_LINE.match(raw if len(raw) > 3 else raw + " ")
        if not m:
            raise ProtocolError("REPLYCODE %r is not a 4xx or 5xx reply" % text[:200])
        if code is not None and m.group(1) != code:
            raise ProtocolError("REPLYCODE lines with different codes: %r" % text[:200])
        last = i == len(raw_lines) - 1
        if (m.group(2) == "-") == last:
            raise ProtocolError("REPLYCODE continuation marks are wrong: %r" % text[:200])
        line = m.group(3)
        if any(ord(c) < 32 or ord(c) == 127 for c in line):
            raise ProtocolError("REPLYCODE with control characters: %r" % text[:200])
        enhanced = line.split(" ", 1)[0]
        if _ENHANCED.match(enhanced) and enhanced[0] != m.group(1)[0]:
            raise ProtocolError("REPLYCODE %s with enhanced status %s" % (m.group(1), enhanced))
        code = m.group(1)
        lines.append(line.replace("%%", "%"))
    return int(code), lines


def parse_reply(command, data):
    """Decode one reply packet into a :class:`Reply`; ProtocolError if malformed or unknown."""
    if command in SIMPLE_REPLIES:
        return Reply(command)
    if command == R_REPLYCODE:
        (text,) = _split_strings(data, 1, "REPLYCODE")
        code, lines = parse_replycode(text)
        return Reply(command, code=code, lines=tuple(lines))
    if command == R_ADDHEADER:
        name, value = _field(data, "ADDHEADER")
        return Reply(command, name=name, value=value)
    if command in (R_INSHEADER, R_CHGHEADER):
        if len(data) < 4:
            raise ProtocolError("header change without an index")
        (index,) = struct.unpack("!I", data[:4])
        name, value = _field(data[4:], "header change")
        return Reply(command, name=name, value=value, index=index)
    if command in (R_ADDRCPT, R_DELRCPT):
        (address,) = _split_strings(data, 1, "recipient change")
        return Reply(command, address=address)
    if command in (R_ADDRCPT_PAR, R_CHGFROM):
        parts = data.split(b"\0")
        if len(parts) < 2 or parts[-1] != b"" or not parts[0]:
            raise ProtocolError("%s without an address" % command.decode())
        strings = [p.decode("utf-8", "surrogateescape") for p in parts[:-1]]
        params = tuple(p for s in strings[1:] for p in s.split())
        return Reply(command, address=strings[0], parameters=params)
    if command == R_REPLBODY:
        return Reply(command, data=data)
    if command == R_QUARANTINE:
        (reason,) = _split_strings(data, 1, "QUARANTINE")
        return Reply(command, reason=reason)
    raise ProtocolError("unknown reply %r" % command)
