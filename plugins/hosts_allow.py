"""hosts_allow — refuse a client before the greeting: too many connections, or listed in ``hosts_allow``.

Runs in the ``pre-connection`` hook, before reverse DNS and before any ``connect`` plugin, so a
refused client costs almost nothing. Two checks, in this order:

1. Concurrent connections per IP. ``twistd qpsmtpd-tx -m N`` (``--max-from-ip``, default 5)
   sets the limit; ``-m 0`` turns the check off. (Without this plugin the core applies the
   same limit with the same reply, before any hook and without the karma adjustment.) A client that already holds N connections
   gets ``451 too many connections from <ip>, try again later`` and is disconnected. If the
   ``karma`` plugin ran before and left the connection note ``karma_history``, the limit
   becomes N + 3 for a history above 5, and 1 for a history of 0 or less.
2. The ``hosts_allow`` file: the first line whose network contains the client decides.

Arguments: none (``loglevel`` is accepted as for every plugin).

Config file ``hosts_allow``, one rule per line, ``NETWORK CONSTANT [MESSAGE]``:
  ``NETWORK``   an address (``192.0.2.7``, ``2001:db8::7``) or a network in CIDR notation
                (``192.0.2.0/24``, ``2001:db8::/32``); an IPv4 rule never matches an IPv6
                client and the other way round.
  ``CONSTANT``  the return code: ``OK`` (accept; later ``pre-connection`` plugins are
                skipped), ``DECLINED`` (no decision here, the rest of the file is skipped:
                use it for exceptions before a broader rule), ``DENY``,
                ``DENY_DISCONNECT`` (or ``DENYHARD``), ``DENYSOFT``, ``DENYSOFT_DISCONNECT``,
                ``DONE``; a number (``901``) also works.
  ``MESSAGE``   the rest of the line, sent to a refused client.
Example::

    192.168.3.4    DECLINED
    192.168.3.0/24 DENY Sorry, known spam only source

refuses 192.168.3.0/24 except 192.168.3.4. A line that is not of this form (one word, a bad
address, a network with host bits set such as ``192.168.3.5/24``, an unknown constant) stops
start-up with an error naming the file and line.

Replies (pre-connection; the connection is closed after each):
  - too many connections: ``451 too many connections from <ip>, try again later``
  - a ``DENY`` / ``DENY_DISCONNECT`` rule: ``550 <MESSAGE>``, without a message
    ``550 Sorry, service not available for you``
  - a ``DENYSOFT`` / ``DENYSOFT_DISCONNECT`` rule: ``451 <MESSAGE>``, without a message
    ``451 Sorry, try again later``

Notes: reads the connection note ``karma_history``.

The pre-connection hook receives ``(remote_ip, remote_port, local_ip, local_port,
max_conn_ip, child_addrs)``; ``child_addrs`` lists the remote IPs of the other live sessions
(as qpsmtpd's forkserver: this connection is not included), so this one counts as 1 plus its
namesakes there.

Differences from qpsmtpd 0.94, on purpose:
  - IPv6 clients and rules work (0.94 compared packed IPv4 addresses only, so with an IPv6
    listener neither check ever matched);
  - a malformed line stops start-up (0.94 skipped one-word lines and never matched the
    others), and an unknown constant is an error (0.94 treated it as ``DECLINED``); found
    after a SIGHUP, it fails the reload and the rules in use stay (logged once at LOGERROR,
    not at each connection, until the file changes).
"""

import ipaddress

from qpsmtpd_tx import codes
from qpsmtpd_tx.codes import DECLINED, DENYSOFT, LOGDEBUG, LOGERROR, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError

#: the constants a rule may use (YIELD is not a decision)
RULE_CODES = frozenset(codes.CODE_NAMES) - {codes.YIELD}


def parse_rule(line):
    """``(network, code, message or None)`` for a ConfigLine; PluginError naming it if bad."""
    words = line.text.split(None, 2)
    if len(words) < 2:
        raise PluginError("%s:%s: expected 'NETWORK CONSTANT [MESSAGE]', got %r"
                          % (line.path, line.lineno, line.text))
    try:
        network = ipaddress.ip_network(words[0], strict=True)
    except ValueError as e:
        raise PluginError("%s:%s: bad network %r: %s" % (line.path, line.lineno, words[0], e))
    try:
        code = codes.parse_return_code(words[1])
    except ValueError:
        code = None
    if code not in RULE_CODES:
        raise PluginError("%s:%s: unknown constant %r (use %s)" % (
            line.path, line.lineno, words[1],
            ", ".join(sorted(codes.CODE_NAMES[c] for c in RULE_CODES))))
    return network, code, (words[2] if len(words) > 2 else None)


def _parse_rules(lines):
    return [parse_rule(line) for line in lines]


class HostsAllow(Plugin):
    """Per-IP connection limit and the hosts_allow rules, at pre-connection."""

    def init(self, args):
        self.parse_kv_args(args, set())
        self._rules()  # a bad line stops start-up

    def _rules(self, transaction=None):
        """``hosts_allow`` parsed (again if it changed); after a bad edit the rules before it."""
        return self.parsed_config("hosts_allow", _parse_rules, transaction, lines_only=True)

    def hook_pre_connection(self, transaction, remote_ip, remote_port, local_ip, local_port,
                            max_conn_ip, child_addrs):
        try:
            remote = ipaddress.ip_address(remote_ip)
        except ValueError:
            self.log(LOGERROR, "skip, remote address %r is not an IP address" % (remote_ip,),
                     transaction)
            return DECLINED

        limit = max_conn_ip or 0
        if limit > 0:
            karma = transaction.connection.notes.get("karma_history")
            if karma is not None:
                limit = self._karma_limit(karma, limit, transaction)
            # The core gives addresses in canonical form (``str(ipaddress.ip_address(...))``).
            canonical = str(remote)
            count = 1 + sum(1 for ip in child_addrs or () if ip == canonical)
            if count > limit:
                message = "too many connections from %s" % remote_ip
                self.log(LOGINFO, "fail: %s (%d > %d)" % (message, count, limit), transaction)
                return DENYSOFT, message + ", try again later"

        for network, code, message in self._rules(transaction):
            if remote.version == network.version and remote in network:
                if code in codes.DENY_CODES:
                    self.log(LOGINFO, "fail, %s" % (message or network,), transaction)
                else:
                    self.log(LOGDEBUG, "pass, %s, %s" % (codes.code_name(code), message or network),
                             transaction)
                return code if message is None else (code, message)
        self.log(LOGDEBUG, "pass", transaction)
        return DECLINED

    def _karma_limit(self, karma, limit, transaction):
        try:
            karma = float(karma)
        except (TypeError, ValueError):
            return limit
        if karma > 5:
            self.log(LOGDEBUG, "connect limit +3 for positive karma", transaction)
            return limit + 3
        if karma <= 0:
            self.log(LOGINFO, "connect limit 1, karma %s" % (karma,), transaction)
            return 1
        return limit
