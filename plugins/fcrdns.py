"""fcrdns — forward-confirmed reverse DNS of the client (RFC 8601 ``iprev``).

At connect: the client's host name (the PTR name the core looked up) must not claim
``localhost`` from elsewhere and must look like a host name; then the PTR records of the
client's address are asked (the core's lookup, answered from the resolver's cache), then the
A and AAAA records of every PTR name at once (at most :data:`MAX_NAMES` names). The check
passes when one of those addresses is the client's, or in the client's /24 (IPv4): pools of
servers often answer with a sibling's name. Relay clients and whitelisted hosts are not
checked.

Arguments: ``[timeout SECONDS] [reject 0|1|naughty] [reject_type TYPE] [loglevel N]``
  ``timeout``      seconds to wait for each DNS lookup (default 5; the connection's
                   ``dns_budget`` bounds them all).
  ``reject``       ``0`` (default) only log and record the result; ``1`` reject a client that
                   fails; ``naughty`` leave the rejection to the ``naughty`` plugin.
  ``reject_type``  ``temp``/``soft`` (default: 450 and close, as any refusal at connect),
                   ``perm``/``hard`` (550), ``disconnect``, ``temp_disconnect``.

The tests, in order, and their replies when ``reject 1``:
  invalid_localhost  the host name is ``localhost`` but the address is not 127.0.0.1 or ::1:
                     ``You are not localhost``
  is_not_fqdn        the host name has no dot, or other characters than letters, digits,
                     ``-`` and ``.`` (no host name: not checked):
                     ``Your host name <name> is not fully qualified``
  has_reverse_dns    the address has no PTR record (NXDOMAIN or NODATA):
                     ``Your IP address <ip> has no reverse DNS``
  has_forward_dns    no PTR name has an address that matches the client (NXDOMAIN or NODATA
                     for all, or only other addresses):
                     ``Your reverse DNS does not resolve to your IP address <ip>``
A SERVFAIL or a timeout ends the check with a logged skip (``iprev=temperror``), never a
rejection.

Notes: connection note ``authentication_results`` gets one ``iprev=`` result: ``pass`` (a
match), ``fail`` (the PTR names have no address, or none that matches), ``permerror`` (no
PTR records), ``temperror`` (the DNS failed). Connection note ``karma``: +1 for an
exact match, −1 for a false localhost, a bad host name, no PTR (NXDOMAIN), and no forward
DNS, as in 0.94.

Differences from qpsmtpd 0.94, on purpose:
  - ``reject`` and ``reject_type`` work as documented (0.94 never rejected: it only logged,
    and forced ``reject_type`` to ``temp``); the replies above are ours, 0.94 had none;
  - PTR names whose addresses do not match are a failure (0.94 logged "pass" after storing
    ``iprev=fail``);
  - AAAA records are asked too, so IPv6 clients can pass (0.94 asked A only);
  - one ``iprev=`` result is stored (0.94 appended one per failed PTR name, then the final
    one); a timeout stores ``temperror`` (0.94: ``fail``) and, like a SERVFAIL, ends the
    check without failing it;
  - at most :data:`MAX_NAMES` PTR names are looked up forward.
"""

from qpsmtpd_tx import hostnames
from qpsmtpd_tx.codes import DECLINED, DENYSOFT, LOGDEBUG, LOGINFO, LOGNOTICE, LOGWARN
from qpsmtpd_tx.dns import DNSError, NXDomain, parse_ip
from qpsmtpd_tx.dns.outcomes import host_addresses, settled
from qpsmtpd_tx.plugin import Plugin, PluginError

from twisted.internet import defer

REJECT_VALUES = ("0", "1", "naughty")
REJECT_TYPES = ("perm", "hard", "temp", "soft", "disconnect", "temp_disconnect")
#: PTR names looked up forward (an address may have very many)
MAX_NAMES = 10


class Verdict:
    """The end of the check: ``status`` ``pass``, ``fail`` or ``skip``; ``iprev`` the
    Authentication-Results value to store (or None); ``log``; for a failure the SMTP
    ``message`` and the ``karma`` it costs."""

    def __init__(self, status, log, iprev=None, message=None, karma=0):
        self.status = status
        self.log = log
        self.iprev = iprev
        self.message = message
        self.karma = karma


class Fcrdns(Plugin):
    """Forward-confirmed reverse DNS of the client at connect."""

    def init(self, args):
        options = self.parse_kv_args(args, {"timeout", "reject", "reject_type"},
                                     {"timeout": "5", "reject": "0", "reject_type": "temp"})
        if options["reject"] not in REJECT_VALUES:
            raise PluginError("reject must be 0, 1 or naughty, not %r" % options["reject"])
        if options["reject_type"].lower() not in REJECT_TYPES:
            raise PluginError("reject_type must be one of %s, not %r"
                              % ("|".join(REJECT_TYPES), options["reject_type"]))
        try:
            self.timeout = float(options["timeout"])
        except ValueError:
            self.timeout = -1
        if not self.timeout > 0:
            raise PluginError("timeout must be a positive number of seconds, not %r"
                              % options["timeout"])
        self.reject = options["reject"]
        self.reject_type = options["reject_type"]

    async def hook_connect(self, transaction):
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, immune (relay client or whitelisted)", transaction)
            return DECLINED
        verdict = self.check_host_name(transaction) or await self.check_dns(transaction)
        if verdict.karma:
            self.adjust_karma(transaction, verdict.karma)
        if verdict.iprev:
            self.store_auth_results(transaction, "iprev=" + verdict.iprev)
        if verdict.status == "fail":
            return self.get_reject(transaction, verdict.message, verdict.log,
                                   default_type=DENYSOFT)
        self.log(LOGWARN if verdict.status == "skip" else LOGINFO,
                 "%s, %s" % (verdict.status, verdict.log), transaction)
        return DECLINED

    def check_host_name(self, transaction):
        """invalid_localhost and is_not_fqdn on the core's host name: a failing
        :class:`Verdict`, or None."""
        conn = transaction.connection
        name = conn.remote_host
        if not name or name == "Unknown":
            return None
        if name.lower() == "localhost":
            client = parse_ip(conn.remote_ip)
            if client is not None and str(client) in ("127.0.0.1", "::1"):
                self.log(LOGDEBUG, "pass, is localhost", transaction)
                return None
            return Verdict("fail", "not localhost", message="You are not localhost", karma=-1)
        problem = hostnames.fqdn_problem(name)
        if problem:
            return Verdict("fail", problem, karma=-1,
                           message="Your host name %s is not fully qualified" % name)
        return None

    async def check_dns(self, transaction):
        """has_reverse_dns then has_forward_dns: the :class:`Verdict`."""
        ip = transaction.connection.remote_ip
        if parse_ip(ip) is None:
            return Verdict("skip", "no IP address to check (%r)" % (ip,))
        dns = transaction.connection.dns
        ptr = await settled(dns.ptr(ip, self.timeout))
        if isinstance(ptr, DNSError):
            return self.no_reverse_dns(ptr, ip)
        names = list(dict.fromkeys(name.lower() for name in ptr.records))
        for name in names:
            self.log(LOGDEBUG, "PTR: " + name, transaction)
        lookups = [defer.Deferred.fromCoroutine(host_addresses(dns, name, self.timeout))
                   for name in names[:MAX_NAMES]]
        return self.forward_verdict(transaction, ip, await defer.gatherResults(lookups))

    def no_reverse_dns(self, error, ip):
        """The :class:`Verdict` for a PTR lookup that failed with ``error``."""
        if not error.definite:
            return Verdict("skip", "error getting rDNS: %s" % error, "temperror")
        message = "Your IP address %s has no reverse DNS" % ip
        if isinstance(error, NXDomain):
            return Verdict("fail", "no rDNS: NXDOMAIN", "permerror", message, karma=-1)
        return Verdict("fail", "no PTR (NOERROR)", "permerror", message)

    def forward_verdict(self, transaction, ip, found):
        """The :class:`Verdict` from the forward lookups (:class:`HostAddresses`) of the PTR
        names."""
        for host in found:
            for address in host.addresses:
                match = hostnames.address_match(address, ip)
                if match == "exact":
                    self.log(LOGDEBUG, "forward ip match", transaction)
                    return Verdict("pass", "%s has address %s" % (host.name, ip), "pass",
                                   karma=1)
                if match == "network":
                    self.log(LOGNOTICE, "forward network match", transaction)
                    return Verdict("pass", "%s has address %s, in the network of %s"
                                   % (host.name, address, ip), "pass")
        message = "Your reverse DNS does not resolve to your IP address %s" % ip
        if any(host.addresses for host in found):
            return Verdict("fail", "no PTR host has an address matching %s" % ip, "fail",
                           message)
        undecided = [host.describe_errors() for host in found if not host.definite]
        if undecided:
            return Verdict("skip", "forward lookups failed: %s" % "; ".join(undecided),
                           "temperror")
        return Verdict("fail", "no PTR hosts have forward DNS", "fail", message, karma=-1)
