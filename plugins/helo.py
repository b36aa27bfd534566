"""helo — refuse clients whose HELO/EHLO name is a lie or not a host name; add ``X-HELO:``.

Old name: ``check_spamhelo`` (Debian's shim; an alias of this plugin).

The HELO/EHLO name is checked by the tests of the chosen ``policy``; the first test that fails
rejects the client (see ``reject`` and ``reject_type``) and costs one point of karma. Relay
clients and whitelisted hosts or senders are not checked. Every accepted message gets an
``X-HELO: <name>`` header at the top (a header of that name sent by the client is removed).

Arguments: ``[policy lenient|rfc|strict] [reject 0|1|naughty] [reject_type TYPE]
[timeout SECONDS] [loglevel N]``
  ``policy``       which tests run (default ``lenient``):
                     ``lenient``  is_in_badhelo, invalid_localhost, is_forged_literal, is_plain_ip
                     ``rfc``      the lenient tests, then is_not_fqdn, is_our_name,
                                  no_forward_dns, no_reverse_dns
                     ``strict``   the rfc tests, then is_address_literal, no_matching_dns
  ``reject``       ``1`` (default) reject; ``0`` only log ("fail, tolerated"); ``naughty``
                   leave the rejection to the ``naughty`` plugin (connection note ``naughty``).
  ``reject_type``  ``disconnect`` (default: 550 and close), ``perm``/``hard`` (550),
                   ``temp``/``soft`` (450), ``temp_disconnect`` (450 and close).
  ``timeout``      seconds each DNS lookup may take (default 5; ``dns_timeout`` is a
                   synonym; the connection's ``dns_budget`` bounds them all).
  ``loglevel``     per-plugin log level (``6``, ``LOGINFO``, ``+1``, ``-2``).

Replies, by test (550 and then closing the connection, unless ``reject``/``reject_type``
say otherwise):
  is_in_badhelo       the name is listed in ``badhelo``:
                      ``I do not believe you are <name>.``; or matches a pattern there:
                      ``Your HELO hostname is not allowed``
  invalid_localhost   the name is ``localhost`` (any case) but the client is not on a loopback
                      address (127.0.0.0/8, ::1): ``You are not localhost``
  is_forged_literal   an address literal (``[192.0.2.7]``, ``[IPv6:2001:db8::7]``) that is not
                      the client's address: ``Forged IPs not accepted here``
  is_plain_ip         a bare IP address (``192.0.2.7``, ``2001:db8::7``), neither a name nor a
                      literal: ``Plain IP is invalid HELO hostname (RFC 2821)``
  is_not_fqdn         (rfc) no dot in the name: ``HELO name is not fully qualified. Read RFC
                      2821``; a character other than letters, digits, ``-`` and ``.``:
                      ``HELO name contains invalid FQDN characters. Read RFC 1035``
                      (address literals are not checked here)
  is_our_name         (rfc) the name is ours (config ``me``) but the client is neither on a
                      loopback address nor on our own address: ``I do not believe you are
                      <name>.``
  is_address_literal  (strict) any address literal:
                      ``RFC 2821 allows an address literal, but we do not``
  no_forward_dns      (rfc) the name has no address in DNS (A or AAAA): NXDOMAIN:
                      ``HELO hostname does not exist``; NODATA for both:
                      ``HELO hostname did not resolve`` (address literals are not looked up).
                      An address of the name that is the client's, or in its /24 (IPv4),
                      sets connection note ``helo_forward_match``.
  no_reverse_dns      (rfc) the client's address has no PTR record: NXDOMAIN:
                      ``no rDNS for <ip>``; NODATA: ``error getting reverse DNS for <ip>``.
                      A PTR name equal to the HELO name, or in the same domain (last two
                      labels), sets connection note ``helo_reverse_match``.
  no_matching_dns     (strict) neither match above: ``That HELO hostname fails FCrDNS``
  The DNS tests ask their lookups at once (the name's A and AAAA, the client's PTR: the
  core's answer, from the resolver's cache) when the first of them is reached, each waiting
  at most ``timeout``. When the DNS cannot say (SERVFAIL, a timeout, the connection's
  ``dns_budget`` spent) the test is skipped and logged at LOGWARN, and so is
  no_matching_dns when a lookup it depends on was: never a rejection.

Config files:
  ``badhelo``   one entry per line, first word only:
                  ``aol.com``          a host name, compared case-insensitively;
                  ``[192.0.2.7]``      an address literal, compared exactly;
                  ``^mail\\d+\\.example\\.net$``
                                       a line holding any of ``{ } [ ] ( ) ^ $ | * + ? \\ !``
                                       is a regular expression (Python ``re`` syntax),
                                       searched in the lower-cased name, case-insensitively;
                  ``!\\.``              a pattern after ``!`` rejects names it does NOT match
                                       (here: names without a dot).
                A pattern that does not compile stops start-up with the file and line.
                Patterns run without a time limit: avoid nested repeats such as ``(a+)+``,
                which can backtrack for a very long time (start-up warns about them).

Notes: reads ``connection.relay_client``, connection note ``whitelisthost``, transaction note
``whitelistsender``; writes connection note ``karma`` (−1 on a failed test, +1 when both DNS
matches hold under ``strict``), ``helo_forward_match`` and ``helo_reverse_match`` (see above)
and, with ``reject naughty``, ``naughty`` / ``naughty_reject_type``.

Differences from qpsmtpd 0.94, on purpose:
  - ``reject_type`` is honoured (0.94 always disconnected, whatever it said);
  - every ``badhelo`` line is tried (0.94 stopped at the first pattern line, whether it
    matched or not, so later lines were never used);
  - an address literal line in ``badhelo`` is an exact entry (0.94 read ``[192.0.2.7]`` as a
    pattern — a character class matching nearly every name);
  - patterns match case-insensitively (0.94: case-sensitively, against the lower-cased name);
  - IPv6 plain addresses and ``[IPv6:…]`` literals are recognised, loopback means 127.0.0.0/8
    and ::1 (0.94: IPv4 only, and only 127.0.0.1);
  - is_our_name is new (policies rfc and strict only);
  - a SERVFAIL or timeout skips a DNS test (0.94 refused the client in no_reverse_dns, and
    in no_matching_dns, which had no match to go by); a name with no address record
    (NODATA) fails no_forward_dns (0.94 logged "query failed (NOERROR)" and passed);
    no_forward_dns asks AAAA too (0.94: A only);
  - a bad argument, or a ``badhelo`` pattern that does not compile, stops start-up (found
    after a SIGHUP, the pattern fails the reload: the list in use stays, logged once at
    LOGERROR until the file changes).
"""

import ipaddress
import re

from twisted.internet import defer

from qpsmtpd_tx.codes import (DECLINED, DENY_DISCONNECT, LOGDEBUG, LOGINFO, LOGNOTICE,
                              LOGWARN)
from qpsmtpd_tx.dns import DNSError, NXDomain, parse_ip
from qpsmtpd_tx.dns.outcomes import host_addresses, settled
from qpsmtpd_tx.hostnames import address_match, fqdn_problem, name_match
from qpsmtpd_tx.patterns import compile_config_pattern
from qpsmtpd_tx.plugin import Plugin, PluginError

POLICIES = ("lenient", "rfc", "strict")
REJECT_VALUES = ("0", "1", "naughty")
REJECT_TYPES = ("perm", "hard", "temp", "soft", "disconnect", "temp_disconnect")

LENIENT_TESTS = ("is_in_badhelo", "invalid_localhost", "is_forged_literal", "is_plain_ip")
RFC_TESTS = ("is_not_fqdn", "is_our_name", "no_forward_dns", "no_reverse_dns")
STRICT_TESTS = ("is_address_literal", "no_matching_dns")
DNS_TESTS = frozenset(["no_forward_dns", "no_reverse_dns", "no_matching_dns"])
#: connection notes of the DNS tests, for no_matching_dns and other plugins
MATCH_NOTES = ("helo_forward_match", "helo_reverse_match")

#: a badhelo line holding one of these is a pattern (as in qpsmtpd)
PATTERN_CHARS = re.compile(r"[{}\[\]()^$|*+?\\!]")
PLAIN_IPV4 = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}", re.ASCII)


def literal_address(host):
    """The address of an address literal (``[1.2.3.4]``, ``[IPv6:…]``): an ip_address, the
    inner text if it is a dotted quad that is no valid address, or None if not a literal."""
    if len(host) < 2 or host[0] != "[" or host[-1] != "]":
        return None
    inner = host[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            return ipaddress.IPv6Address(inner[5:])
        except ValueError:
            return None
    if not PLAIN_IPV4.fullmatch(inner):
        return None
    try:
        return ipaddress.IPv4Address(inner)
    except ValueError:
        return inner


def client_address(text):
    """The client's address as an ip_address (IPv4-mapped IPv6 unwrapped), or None."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class BadHelo:
    """The parsed ``badhelo`` lines: exact names and (possibly negated) patterns, in order."""

    def __init__(self, lines, warn):
        self.entries = []
        for line in lines:
            entry = line.text.split()[0]
            if literal_address(entry) is None and PATTERN_CHARS.search(entry):
                negated = entry.startswith("!")
                pattern = entry[1:] if negated else entry
                regex = compile_config_pattern(pattern, line, warn)
                self.entries.append((entry, regex, negated))
            else:
                self.entries.append((entry.lower(), None, False))

    def match(self, host):
        """``(smtp message, log message)`` for the first entry that rejects ``host``, or None."""
        name = host.lower()
        for entry, regex, negated in self.entries:
            if regex is None:
                if name == entry:
                    return "I do not believe you are %s." % host, "in badhelo"
            elif (regex.search(name) is None) == negated:
                return "Your HELO hostname is not allowed", "badhelo pattern match (%s)" % entry
        return None


class HeloLookups:
    """The DNS lookups of the HELO tests, all asked at once when made: the A and AAAA of
    ``host`` (not for an address literal) and the PTR of the client's ``ip``. Each result
    is awaited once and kept; ``undecided`` names the lookups the DNS could not answer."""

    def __init__(self, dns, host, ip, timeout):
        self._forward = self._reverse = None
        if literal_address(host) is None:
            self._forward = defer.Deferred.fromCoroutine(host_addresses(dns, host, timeout))
        if parse_ip(ip) is not None:
            self._reverse = settled(dns.ptr(ip, timeout))
        self._results = {}
        self.undecided = set()

    async def _result(self, kind, deferred):
        if kind not in self._results:
            self._results[kind] = None if deferred is None else await deferred
        return self._results[kind]

    async def forward(self):
        """The :class:`~qpsmtpd_tx.dns.outcomes.HostAddresses` of the name (None: a literal)."""
        return await self._result("forward", self._forward)

    async def reverse(self):
        """The PTR Answer or DNSError of the client's address (None: not an IP address)."""
        return await self._result("reverse", self._reverse)


class Helo(Plugin):
    """Check the HELO/EHLO name by policy; add the X-HELO header."""

    def init(self, args):
        options = self.parse_kv_args(
            args, {"policy", "reject", "reject_type", "timeout", "dns_timeout"},
            {"policy": "lenient", "reject": "1", "reject_type": "disconnect"})
        if options["policy"] not in POLICIES:
            raise PluginError("policy must be one of %s, not %r"
                              % ("|".join(POLICIES), options["policy"]))
        if options["reject"] not in REJECT_VALUES:
            raise PluginError("reject must be 0, 1 or naughty, not %r" % options["reject"])
        if options["reject_type"].lower() not in REJECT_TYPES:
            raise PluginError("reject_type must be one of %s, not %r"
                              % ("|".join(REJECT_TYPES), options["reject_type"]))
        timeout = options.get("dns_timeout") or options.get("timeout") or "5"
        try:
            self.dns_timeout = float(timeout)
        except ValueError:
            self.dns_timeout = -1
        if not self.dns_timeout > 0:
            raise PluginError("timeout must be a positive number of seconds, not %r" % timeout)
        self.policy = options["policy"]
        self.reject = options["reject"]
        self.reject_type = options["reject_type"]
        self.tests = LENIENT_TESTS
        if self.policy in ("rfc", "strict"):
            self.tests += RFC_TESTS
        if self.policy == "strict":
            self.tests += STRICT_TESTS
        self._badhelo()  # a bad line stops start-up

    def _badhelo(self, transaction=None):
        """``badhelo`` (parsed again if it changed); after a bad edit, the list before it."""
        return self.parsed_config("badhelo", self._parse_badhelo, transaction, lines_only=True)

    def _parse_badhelo(self, lines):
        return BadHelo(lines, lambda message: self.log(LOGWARN, message))

    # -- hooks ------------------------------------------------------------------------------

    def hook_helo(self, transaction, host, *extra):
        if not host:
            self.log(LOGINFO, "fail, tolerated, no helo host", transaction)
            self.adjust_karma(transaction, -2)
            return DECLINED
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, immune (relay client or whitelisted)", transaction)
            return DECLINED
        return defer.Deferred.fromCoroutine(self.run_tests(transaction, host))

    async def run_tests(self, transaction, host):
        """The policy's tests in order, the first failure rejecting; the DNS lookups start
        together when the first DNS test is reached."""
        conn = transaction.connection
        lookups = None
        for note in MATCH_NOTES:
            conn.notes.pop(note, None)
        for test in self.tests:
            if test in DNS_TESTS:
                if lookups is None:
                    lookups = HeloLookups(conn.dns, host, conn.remote_ip, self.dns_timeout)
                failed = await getattr(self, test)(transaction, host, lookups)
            else:
                failed = getattr(self, test)(transaction, host)
            if failed:
                self.adjust_karma(transaction, -1)
                smtp_message, log_message = failed
                return self.get_reject(transaction, smtp_message, log_message,
                                       default_type=DENY_DISCONNECT)
        self.log(LOGINFO, "pass", transaction)
        return DECLINED

    hook_ehlo = hook_helo

    def hook_data_post(self, transaction):
        header = transaction.header
        host = transaction.connection.hello_host
        if header is not None and host:
            header.delete("X-HELO")
            header.add("X-HELO", host, prepend=True)
        return DECLINED

    # -- the tests: each returns None (pass) or (smtp message, log message) ------------------

    def is_in_badhelo(self, transaction, host):
        return self._badhelo(transaction).match(host)

    def invalid_localhost(self, transaction, host):
        if host.lower() != "localhost":
            return None
        client = client_address(transaction.connection.remote_ip)
        if client is not None and client.is_loopback:
            self.log(LOGDEBUG, "pass, is localhost", transaction)
            return None
        return "You are not localhost", "invalid localhost"

    def is_forged_literal(self, transaction, host):
        literal = literal_address(host)
        if literal is None:
            return None
        if literal == client_address(transaction.connection.remote_ip):
            return None
        return "Forged IPs not accepted here", "forged IP literal"

    def is_plain_ip(self, transaction, host):
        if PLAIN_IPV4.fullmatch(host) or (":" in host and client_address(host) is not None):
            return "Plain IP is invalid HELO hostname (RFC 2821)", "plain IP"
        return None

    def is_not_fqdn(self, transaction, host):
        if literal_address(host) is not None:
            return None
        problem = fqdn_problem(host)
        if problem == "not FQDN":
            return "HELO name is not fully qualified. Read RFC 2821", problem
        if problem:
            return "HELO name contains invalid FQDN characters. Read RFC 1035", problem
        return None

    def is_our_name(self, transaction, host):
        me = (self.server.me or "").lower().rstrip(".")
        if not me or host.lower().rstrip(".") != me:
            return None
        conn = transaction.connection
        client = client_address(conn.remote_ip)
        if client is not None and (client.is_loopback or client == client_address(conn.local_ip)):
            return None
        return "I do not believe you are %s." % host, "forged our own name"

    def is_address_literal(self, transaction, host):
        if literal_address(host) is None:
            return None
        return "RFC 2821 allows an address literal, but we do not", "bracketed IP"

    async def no_forward_dns(self, transaction, host, lookups):
        found = await lookups.forward()
        if found is None:
            return None
        ip = transaction.connection.remote_ip
        if found.addresses:
            for address in found.addresses:
                if self.note_match(transaction, "forward", address_match(address, ip)):
                    break
            self.log(LOGDEBUG, "pass, forward DNS", transaction)
            return None
        if found.nxdomain:
            return "HELO hostname does not exist", "no such host"
        if not found.definite:
            lookups.undecided.add("forward")
            self.log(LOGWARN, "no_forward_dns: skip, query failed (%s)" % found.describe_errors(),
                     transaction)
            return None
        return "HELO hostname did not resolve", "no forward DNS"

    async def no_reverse_dns(self, transaction, host, lookups):
        reverse = await lookups.reverse()
        ip = transaction.connection.remote_ip
        if reverse is None or (isinstance(reverse, DNSError) and not reverse.definite):
            lookups.undecided.add("reverse")
            self.log(LOGWARN, "no_reverse_dns: skip, %s" % (
                reverse or "no IP address to look up (%r)" % (ip,)), transaction)
            return None
        if isinstance(reverse, NXDomain):
            return "no rDNS for %s" % ip, "no rDNS"
        if isinstance(reverse, DNSError):
            return "error getting reverse DNS for %s" % ip, "rDNS NOERROR"
        for name in reverse.records:
            self.log(LOGDEBUG, "PTR: " + name, transaction)
            self.note_match(transaction, "reverse", name_match(name, host))
        self.log(LOGDEBUG, "has rDNS", transaction)
        return None

    def note_match(self, transaction, direction, match):
        """Record a ``forward`` or ``reverse`` ``match`` (``"exact"``, a looser kind, or None)
        in connection note ``helo_<direction>_match`` and the log; returns ``match``."""
        if match:
            # 0.94 logs an exact match at LOGDEBUG, a network or domain match at LOGNOTICE
            self.log(LOGDEBUG if match == "exact" else LOGNOTICE,
                     "%s %s match" % (direction, match), transaction)
            transaction.connection.notes["helo_%s_match" % direction] = 1
        return match

    async def no_matching_dns(self, transaction, host, lookups):
        notes = transaction.connection.notes
        forward, reverse = (notes.get(note) for note in MATCH_NOTES)
        if forward and reverse:
            self.log(LOGDEBUG, "forward and reverse match", transaction)
            self.adjust_karma(transaction, 1)
            return None
        if forward or reverse:
            self.log(LOGDEBUG, "name matches IP" if forward else "reverse matches name",
                     transaction)
            return None
        if lookups.undecided:
            self.log(LOGWARN, "no_matching_dns: skip, the %s lookup failed"
                     % " and ".join(sorted(lookups.undecided)), transaction)
            return None
        return "That HELO hostname fails FCrDNS", "no matching DNS"
