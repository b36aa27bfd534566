"""ident/p0f — the client's operating system and network distance, from a p0f daemon.

p0f watches the network passively and fingerprints the TCP/IP stack of each host that
connects. At connect, this plugin asks the p0f daemon about the client over p0f's unix
socket API (asynchronously, with a 5 s limit) and stores the answer in the connection note
``p0f`` (a dict), for other plugins (``greylisting``'s ``p0f`` argument, ``karma``…).
It never refuses anything; without an answer (p0f down, not yet seen, no match) it logs
why and sets no note.

Start p0f first, e.g. (p0f 3, Debian's ``p0f`` package)::

    p0f -u p0f -d -s /run/p0f/p0f.sock 'dst port 25'

Arguments: ``SOCKET [version 2|3] [local_ip IP] [smite_os REGEX]``
  ``SOCKET``         p0f's API socket (``-s`` of p0f 3, ``-Q`` of p0f 2). Required.
  ``version 2|3``    the p0f version behind the socket (default 3). Both may run at once:
                     ``ident/p0f:2 /tmp/.p0f_socket2 version 2`` and ``ident/p0f:3 /tmp/.p0f_socket3``.
  ``local_ip IP``    (version 2) our address as p0f saw it, when it differs from the
                     connection's local address (NAT, a firewall's public address).
  ``smite_os REGEX`` karma -1 (the connection note ``karma``) for a client whose OS
                     (``genre``) matches REGEX, case-insensitively (e.g. ``windows``).
A bad version, address or regular expression stops start-up.

Note ``p0f`` with p0f 3 (as 0.94): ``magic``, ``status``, ``first_seen``, ``last_seen``,
``total_conn``, ``uptime_min``, ``up_mod_days``, ``last_nat``, ``last_chg``, ``distance``,
``bad_sw``, ``os_match_q``, ``os_name``, ``os_flavor``, ``http_name``, ``http_flavor``,
``link_type``, ``language``, and for compatibility with p0f 2 notes: ``genre`` (``os_name
os_flavor``), ``link`` (``link_type``, if known) and ``uptime`` (``uptime_min``, if known).
With p0f 2: ``genre``, ``detail``, ``distance``, ``link``, ``uptime``. Logged at LOGINFO:
``<os_name> <os_flavor>`` (p0f 3), ``<genre> (<detail>)`` (p0f 2).

Config files: none. Replies: none.

Intended differences from qpsmtpd 0.94: the query does not block the server; IPv6 clients
are asked correctly (0.94 packed the hex groups of the address as bytes); bad arguments
stop start-up.
"""

import ipaddress
import os
import random
import re
import struct

from twisted.internet import defer, reactor
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd_tx.endpoints import unix_socket
from qpsmtpd_tx.plugin import Plugin, PluginError

QUERY_MAGIC_V2 = 0x0DEFACED
QUERY_MAGIC_V3 = 0x50304601
RESP_MAGIC_V3 = 0x50304602
STATUS_BADQUERY, STATUS_OK, STATUS_NOMATCH = 0x00, 0x10, 0x20
#: p0f 3's response (p0f's api.h, host byte order): 9 u32, s16, 2 u8, 6 strings of 32
V3_RESPONSE = struct.Struct("=IIIIIIIIIhBB32s32s32s32s32s32s")
V3_LABELS = ("magic", "status", "first_seen", "last_seen", "total_conn", "uptime_min",
             "up_mod_days", "last_nat", "last_chg", "distance", "bad_sw", "os_match_q",
             "os_name", "os_flavor", "http_name", "http_flavor", "link_type", "language")
#: p0f 2's response as 0.94 read it (``L L C Z20 Z40 c Z30 Z30 C C C s S N``)
V2_RESPONSE = struct.Struct("=IIB20s40sb30s30sBBBhH")
V2_UPTIME = struct.Struct(">I")
QUERY_TIMEOUT = 5


def v3_query(ip):
    """p0f 3's 21-byte query for address ``ip`` (text)."""
    address = ipaddress.ip_address(ip)
    return struct.pack("=IB16s", QUERY_MAGIC_V3, address.version, address.packed)


def _text(raw):
    """A fixed-size string field: up to its NUL, trailing blanks dropped (Perl's ``A``/``Z``)."""
    return raw.split(b"\0", 1)[0].decode("latin-1").rstrip()


def parse_v3(data):
    """The note dict of a p0f 3 response; ValueError (with 0.94's log text) if unusable."""
    if len(data) < V3_RESPONSE.size:
        raise ValueError("skip, short response (%d bytes)" % (len(data),))
    values = V3_RESPONSE.unpack(data[:V3_RESPONSE.size])
    if values[0] != RESP_MAGIC_V3:
        raise ValueError("skip, Bad response magic.")
    if values[1] == STATUS_BADQUERY:
        raise ValueError("skip, bad query")
    if values[1] == STATUS_NOMATCH:
        raise ValueError("skip, no match")
    if values[1] != STATUS_OK:
        raise ValueError("skip, unknown status 0x%02x" % (values[1],))
    note = {label: (_text(value) if isinstance(value, bytes) else value)
            for label, value in zip(V3_LABELS, values)}
    if note["os_name"]:     # compatibility with p0f 2's note
        note["genre"] = "%s %s" % (note["os_name"], note["os_flavor"])
        if note["link_type"]:
            note["link"] = note["link_type"]
        if note["uptime_min"]:
            note["uptime"] = note["uptime_min"]
    return note


def v2_query(remote_ip, local_ip, remote_port, local_port, query_id):
    """p0f 2's query (0.94's ``pack("L L L N N S S", …)``); IPv4 only."""
    return (struct.pack("=III", QUERY_MAGIC_V2, 1, query_id)
            + ipaddress.IPv4Address(remote_ip).packed + ipaddress.IPv4Address(local_ip).packed
            + struct.pack("=HH", remote_port, local_port))


def parse_v2(data):
    """The note dict of a p0f 2 response; ValueError (with 0.94's log text) if unusable."""
    if len(data) < V2_RESPONSE.size + V2_UPTIME.size:
        raise ValueError("skip, short response (%d bytes)" % (len(data),))
    (magic, _, kind, genre, detail, distance, link, _, _, _, _, _, _) = V2_RESPONSE.unpack(
        data[:V2_RESPONSE.size])
    if magic != QUERY_MAGIC_V2:
        raise ValueError("skip, Bad response magic.")
    if kind == 1:
        raise ValueError("skip, p0f did not honor our query")
    if kind == 2:
        raise ValueError("skip, connection not in the cache")
    uptime = V2_UPTIME.unpack(data[V2_RESPONSE.size:V2_RESPONSE.size + V2_UPTIME.size])[0]
    return {"genre": _text(genre), "detail": _text(detail), "distance": distance,
            "link": _text(link), "uptime": uptime}


class _Exchange(Protocol):
    """Sends one query and collects the answer until ``size`` bytes or the close."""

    def __init__(self, query, size):
        self.query, self.size = query, size
        self.data = bytearray()
        self.done = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.query)

    def dataReceived(self, data):
        self.data += data
        if len(self.data) >= self.size:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(bytes(self.data))


class P0f(Plugin):
    """Asks p0f about each client at connect; the answer goes into the ``p0f`` note."""

    def init(self, args):
        if not args:
            raise PluginError("usage: ident/p0f SOCKET [version 2|3] [local_ip IP] [smite_os REGEX]")
        self.socket = unix_socket("SOCKET", args[0]).path    # too long: a start-up error
        options = self.parse_kv_args(args[1:], ("version", "local_ip", "smite_os"))
        self.version = options.get("version", "3")
        if self.version not in ("2", "3"):
            raise PluginError("version must be 2 or 3, got %r" % (self.version,))
        self.local_ip = options.get("local_ip")
        if self.local_ip is not None:
            try:
                ipaddress.IPv4Address(self.local_ip)
            except ValueError:
                raise PluginError("local_ip must be an IPv4 address, got %r" % (self.local_ip,))
        self.smite_os = None
        if "smite_os" in options:
            try:
                self.smite_os = re.compile(options["smite_os"], re.IGNORECASE)
            except re.error as e:
                raise PluginError("smite_os %r: %s" % (options["smite_os"], e))
        if not self.server.check_only and not os.path.exists(self.socket):
            self.log(LOGWARN, "p0f socket %s does not exist (yet): is p0f running?" % (self.socket,))

    async def ask(self, query, size):
        """Send ``query`` to p0f; its answer (bytes). Raises OSError / TimeoutError."""
        exchange = _Exchange(query, size)
        await connectProtocol(UNIXClientEndpoint(reactor, self.socket, timeout=QUERY_TIMEOUT),
                              exchange)
        exchange.done.addTimeout(QUERY_TIMEOUT, reactor)
        return await exchange.done

    async def hook_connect(self, transaction):
        connection = transaction.connection
        try:
            if self.version == "3":
                data = await self.ask(v3_query(connection.remote_ip), V3_RESPONSE.size)
                note = parse_v3(data)
                summary = "%s %s" % (note["os_name"], note["os_flavor"])
            else:
                query = v2_query(connection.remote_ip, self.local_ip or connection.local_ip,
                                 connection.remote_port, connection.local_port,
                                 random.getrandbits(32))
                note = parse_v2(await self.ask(query, V2_RESPONSE.size + V2_UPTIME.size))
                summary = "%s (%s)" % (note["genre"], note["detail"])
        except ValueError as e:
            self.log(LOGINFO, str(e), transaction)
            return DECLINED
        except Exception as e:   # p0f down, refused, timed out: no fingerprint, nothing more
            self.log(LOGERROR, "skip, could not ask p0f at %s: %s" % (self.socket, e), transaction)
            return DECLINED
        if self.smite_os is not None and note.get("genre") and self.smite_os.search(note["genre"]):
            self.adjust_karma(transaction, -1)
        connection.notes["p0f"] = note
        self.log(LOGINFO, summary, transaction)
        self.log(LOGDEBUG, " ".join(str(note[label]) for label in V3_LABELS if label in note),
                 transaction)
        return DECLINED
