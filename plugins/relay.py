"""relay — decide at connect time whether the client may relay (sets ``connection.relay_client``).

Load it above the ``rcpt`` plugins: ``rcpt_ok`` and others accept any recipient from a relay
client. With ``only 1`` it is also a gate that refuses every recipient from other clients.

Arguments: ``[only 1]``
  ``only``      a true value (anything but ``0``) also registers a ``rcpt`` hook: a relay
                client gets OK (so later ``rcpt`` plugins do not run — put ``badrcptto``
                and the like above it), every other client gets ``550 relaying denied``.
                Use it on a smarthost for your own users, never on an inbound MX.
  ``loglevel``  per-plugin log level (``6``, ``LOGINFO``, ``+1``, ``-2``).

Decision at connect, first match wins:
  1. the client is in ``norelayclients``      → never a relay client;
  2. the environment variable ``RELAYCLIENT`` is set and not empty or ``0`` → relay client
     (qpsmtpd-tx serves every client from one process, so this makes *every* client a relay
     client — only meant for a server started per connection);
  3. the client is ``::1`` (IPv6 localhost; qpsmtpd does the same) → relay client;
  4. the client matches a CIDR block or an address/prefix in ``relayclients``, or a key in
     ``morerelayclients`` → relay client;
  5. otherwise the connection is left as it is (not a relay client, unless AUTH says so later).

Config files:
  ``relayclients``      one entry per line (only the first word of a line counts):
                          ``192.0.2.7``             one address (IPv4 or IPv6, any notation)
                          ``192.168.42.``           an IPv4 prefix: whole octets, ending in ``.``
                          ``2001:db8:e431:ae06:``   an IPv6 prefix: whole groups, ending in ``:``
                                                    (groups may be written without leading zeros)
                          ``2001:0db8:e4``          an IPv6 prefix in full (zero-padded) notation,
                                                    to the nibble, as qpsmtpd matches it
                          ``10.1.0.0/24``, ``2001:db8::/32``   a CIDR block
                        ``2001:db8::`` is one address (``::`` compresses zeros), not a prefix:
                        write ``2001:db8:`` or ``2001:db8::/32``.
  ``morerelayclients``  addresses and prefixes as above, without CIDR blocks; may be a cdb
                        (``morerelayclients.cdb``, keys looked up exactly, as qpsmtpd: an
                        IPv6 key must then be in full zero-padded notation or the address's
                        canonical short form). A ``.cdb`` file that is not a valid cdb
                        lists no client; it is logged at LOGERROR once until it changes.
  ``norelayclients``    addresses, prefixes and CIDR blocks that never relay, even when listed
                        in the other files (e.g. a gateway inside an allowed block).

Differences from qpsmtpd 0.94, on purpose:
  - a CIDR block includes its first and last address (qpsmtpd left them out, so that a
    ``/32`` or ``/128`` entry never matched);
  - CIDR blocks are also honoured in ``norelayclients``;
  - a ``relayclients`` or ``norelayclients`` line that is not an address, a prefix or a
    CIDR block is a start-up error naming the file and line (qpsmtpd ignored it); found
    after a SIGHUP, it fails the reload, and the lists in use stay (logged once at
    LOGERROR, not at each connection, until the file changes);
  - ``RELAYCLIENT`` is read when the plugin starts (and again at SIGHUP), not at each
    connection: qpsmtpd's environment is per connection, ours stays the same.

Notes: sets ``connection.relay_client`` (True/False). Reads no notes.

Replies: with ``only``: ``550 relaying denied`` for a recipient from a non-relay client.
"""

import functools
import ipaddress
import os

from qpsmtpd_tx.codes import DECLINED, DENY, LOGERROR, LOGINFO, OK
from qpsmtpd_tx.dns.names import parse_ip
from qpsmtpd_tx.plugin import Plugin, PluginError

RELAYING_DENIED = "relaying denied"
LOCALHOST6 = ipaddress.IPv6Address("::1")


class BadEntry(ValueError):
    """A relay list line that is neither an address, a prefix nor a CIDR block."""


def normalize_key(entry):
    """The form of a list entry that :func:`ip_candidates` produces, for set lookups.

    IPv4 entries stay as written; an IPv6 address becomes its full zero-padded form; an IPv6
    prefix becomes the zero-padded prefix without its trailing ``:``. Raises BadEntry for
    text that cannot be an address or a prefix.
    """
    key = entry.strip().lower()
    if not key:
        raise BadEntry("empty entry")
    if ":" not in key:
        parts = key.split(".")
        complete, last = parts[:-1], parts[-1]
        if len(parts) > 4 or not all(p.isdigit() and int(p) < 256 for p in complete):
            raise BadEntry("not an IPv4 address or prefix: %r" % entry)
        if last:
            if len(parts) != 4 or not last.isdigit() or int(last) > 255:
                raise BadEntry("not an IPv4 address or prefix (a prefix ends in '.'): %r" % entry)
            return str(ipaddress.IPv4Address(key))
        return key
    try:
        return ipaddress.IPv6Address(key).exploded
    except ValueError:
        pass
    whole_groups = key.endswith(":")
    groups = key.rstrip(":").split(":")
    if len(groups) > 8 or not all(
            g and len(g) <= 4 and all(c in "0123456789abcdef" for c in g) for g in groups):
        raise BadEntry("not an IPv6 address or prefix: %r" % entry)
    padded = [g.zfill(4) for g in groups[:-1]]
    padded.append(groups[-1].zfill(4) if whole_groups else groups[-1])
    return ":".join(padded)


@functools.lru_cache(maxsize=4096)
def ip_candidates(ip):
    """Every key that would match client address ``ip`` (a string), as a frozenset.

    IPv4: the address and its prefixes of whole octets ending in ``.`` (``192.0.2.7``,
    ``192.0.2.``, ``192.0.``, ``192.``). IPv6: the canonical short form and every prefix of
    the full zero-padded form that does not end in ``:`` (qpsmtpd's nibble-wise match).
    Raises ValueError if ``ip`` is not an address.
    """
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        octets = str(addr).split(".")
        found = {str(addr)}
        found.update(".".join(octets[:n]) + "." for n in range(1, 4))
        return frozenset(found)
    exploded = addr.exploded
    found = {str(addr)}
    found.update(exploded[:n] for n in range(1, len(exploded) + 1) if exploded[n - 1] != ":")
    return frozenset(found)


class RelayList:
    """Parsed ``relayclients``-style lines: a set of keys plus a list of networks."""

    def __init__(self, lines):
        """``lines`` are ConfigLine objects; raise PluginError naming the bad line."""
        self.keys = set()
        self.networks = []
        for line in lines:
            entry = line.text.split()[0]
            try:
                if "/" in entry:
                    try:
                        self.networks.append(ipaddress.ip_network(entry, strict=False))
                    except ValueError as e:
                        raise BadEntry("bad CIDR block %r: %s" % (entry, e))
                else:
                    self.keys.add(normalize_key(entry))
            except BadEntry as e:
                raise PluginError("%s:%s: %s" % (line.path, line.lineno, e))

    def match(self, addr, candidates):
        """The entry that matches (an ipaddress object and its candidate keys), or None."""
        found = self.keys & candidates
        if found:
            return sorted(found, key=len)[-1]
        for network in self.networks:
            if addr.version == network.version and addr in network:
                return str(network)
        return None


def env_relayclient(environ=None):
    """True if ``RELAYCLIENT`` is set to a true value (Perl truth: not empty, not ``0``)."""
    value = (os.environ if environ is None else environ).get("RELAYCLIENT")
    return value not in (None, "", "0")


class Relay(Plugin):
    """Set relay_client from RELAYCLIENT and the relay client lists; optionally gate RCPT."""

    environ = None  # tests may set a dict; None means os.environ

    def init(self, args):
        options = self.parse_kv_args(args, {"only"}, {"only": "0"})
        self.only = options["only"] not in ("", "0")
        self._more_keys = None
        # the process's environment is read once (per start and reload), not per connection
        self._env_relayclient = env_relayclient()
        # Parse now so that a bad line stops start-up.
        self._relayclients()
        self._norelayclients()

    def register(self, registry):
        if self.only:
            registry.register("rcpt", self, self.relay_only)

    # -- the lists, parsed once and again whenever the config item changes -----------------

    def _relayclients(self, transaction=None):
        return self.parsed_config("relayclients", RelayList, transaction, lines_only=True)

    def _norelayclients(self, transaction=None):
        return self.parsed_config("norelayclients", RelayList, transaction, lines_only=True)

    def _morerelayclients_match(self, candidates, transaction):
        table = self.config_map("morerelayclients", transaction)
        if table is None:
            return None         # a broken morerelayclients.cdb (logged): no client listed
        if isinstance(table, dict):
            # a plain file: normalise its keys as for relayclients (bad lines never match);
            # the config gives the same mapping until it reads the file again
            if self._more_keys is None or self._more_keys[0] is not table:
                keys = set()
                for key in table:
                    try:
                        keys.add(normalize_key(key.split()[0]))
                    except (BadEntry, IndexError):
                        continue
                self._more_keys = (table, keys)
            found = self._more_keys[1] & candidates
            return sorted(found, key=len)[-1] if found else None
        for key in sorted(candidates, key=len, reverse=True):
            if key in table:
                return key
        return None

    # -- hooks ------------------------------------------------------------------------------

    def hook_connect(self, transaction):
        conn = transaction.connection
        try:
            addr = parse_ip(conn.remote_ip)
            if addr is None:
                raise ValueError(conn.remote_ip)
            candidates = ip_candidates(conn.remote_ip)
        except ValueError:
            self.log(LOGERROR, "skip, remote address %r is not an IP address" % (conn.remote_ip,),
                     transaction)
            return DECLINED
        # (a list broken by an edit after start-up: the previous one, logged once)
        norelay = self._norelayclients(transaction)
        relay = self._relayclients(transaction)

        hit = norelay.match(addr, candidates)
        if hit is not None:
            conn.relay_client = False
            self.log(LOGINFO, "fail, disabled by norelayclients (%s)" % hit, transaction)
            return DECLINED
        from_env = self._env_relayclient if self.environ is None else env_relayclient(self.environ)
        if from_env:
            conn.relay_client = True
            self.log(LOGINFO, "pass, enabled by env", transaction)
            return DECLINED
        if addr == LOCALHOST6:
            conn.relay_client = True
            self.log(LOGINFO, "pass, octet matched localhost (::1)", transaction)
            return DECLINED
        hit = relay.match(addr, candidates)
        if hit is not None:
            conn.relay_client = True
            self.log(LOGINFO, "pass, match in relayclients (%s)" % hit, transaction)
            return DECLINED
        hit = self._morerelayclients_match(candidates, transaction)
        if hit is not None:
            conn.relay_client = True
            self.log(LOGINFO, "pass, match in morerelayclients (%s)" % hit, transaction)
            return DECLINED
        self.log(LOGINFO, "skip, no match", transaction)
        return DECLINED

    def relay_only(self, transaction, recipient, params):
        """The ``rcpt`` gate of ``only 1``: OK for relay clients, DENY for the rest."""
        if transaction.connection.relay_client:
            return OK
        self.log(LOGINFO, "fail, relay only and %s is not a relay client"
                 % transaction.connection.remote_ip, transaction)
        return DENY, RELAYING_DENIED
