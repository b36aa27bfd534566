"""dns_whitelist_soft — mark clients listed in DNS whitelists as whitelisted hosts.

At connect the client's address is looked up (TXT records) in every zone of
``whitelist_zones`` at once, as ``dnsbl`` does (``4.3.2.1.<zone>``; IPv6 clients by
nibbles), and the session goes on without waiting. At the first RCPT the answers are waited
for (at most 4 seconds at each RCPT, as 0.94; the lookups go on meanwhile): if a zone lists the
client, the connection note ``whitelisthost`` is set to the first zone's TXT text (in file
order), so that plugins checking immunity (``is_immune``: ``rhsbl`` at a later MAIL,
``badrcptto``, ``rcpt_ok``…) let it through from then on. It never rejects.

Loaded as ``async/dns_whitelist_soft`` (0.94's variant for qpsmtpd-async), it waits for the
answers at connect instead, before the greeting, so that the connect hooks of the plugins
after it (``dnsbl``, ``earlytalker``) already see the note.

Arguments: ``loglevel L`` only; anything else stops start-up.

Config files:
  ``whitelist_zones``   one zone per line (anything after the zone on a line is ignored, as
                        in 0.94). A line whose zone is not a DNS name stops start-up. No
                        zones: nothing is looked up.

Replies: none. A listed client is logged at LOGNOTICE (``Host <ip> is whitelisted: <text>``);
a zone that fails to answer (SERVFAIL, timeout, the DNS budget spent) is logged at LOGERROR
and skipped.

Notes: sets the connection note ``whitelisthost``.

Differences from qpsmtpd 0.94, on purpose:
  - IPv6 clients are looked up by nibbles (0.94 asked ``<address>.<zone>``);
  - when several zones list the client, the first in the file gives the text (0.94: the first
    to answer);
  - bad arguments and zone names stop start-up (0.94 logged "Bad arguments" for an odd
    number of words and went on).
"""

from twisted.internet import defer

from qpsmtpd_tx import dnslists
from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGERROR, LOGNOTICE
from qpsmtpd_tx.dns import DNSError
from qpsmtpd_tx.plugin import Plugin

#: seconds each RCPT waits for the answers not yet in (0.94: ``can_read(4)``)
RCPT_WAIT = 4.0
#: the connection note holding the lookups between connect and RCPT
PENDING_NOTE = "whitelist_lookups"


class PendingLookups:
    """The lookups started at connect: their outcomes as they come, in zone order."""

    def __init__(self, pending):
        self.zones = [zone for zone, _ in pending]
        self.outcomes = {}
        for zone, d in pending:
            d.addCallback(self._store, zone)
        self.done = defer.DeferredList([d for _, d in pending])

    def _store(self, outcome, zone):
        self.outcomes[zone] = outcome
        return outcome

    def listing(self):
        """The first zone's TXT text among the answers in so far, or None."""
        for zone in self.zones:
            outcome = self.outcomes.get(zone)
            if isinstance(outcome, str):
                return outcome
        return None


class DNSWhitelistSoft(Plugin):
    """Set connection note ``whitelisthost`` for clients listed in DNS whitelists."""

    def init(self, args):
        self.parse_kv_args(args, set())
        self.wait_at_connect = (self.path or "").startswith("async/")
        self.zones()

    def zones(self):
        """The zones of ``whitelist_zones``, in file order."""
        return self.parsed_config("whitelist_zones", dnslists.zones_parser(None))

    async def hook_connect(self, transaction):
        """Start the lookups (and, as ``async/dns_whitelist_soft``, wait for them)."""
        conn = transaction.connection
        zones = [dnslists.Zone(zone.name) for zone in self.zones()]
        if not zones:
            return DECLINED
        pending = dnslists.ask_about_client(self, transaction, zones)
        if pending is None:
            return DECLINED
        lookups = PendingLookups(pending)
        conn.notes[PENDING_NOTE] = lookups
        if self.wait_at_connect:
            await lookups.done
            self._settle(transaction, lookups)
        return DECLINED

    async def hook_rcpt(self, transaction, recipient, params):
        """Wait for the answers (at most :data:`RCPT_WAIT` s) and set ``whitelisthost``."""
        conn = transaction.connection
        lookups = conn.notes.get(PENDING_NOTE)
        if not conn.notes.get("whitelisthost") and lookups is not None:
            self.log(LOGDEBUG, "waiting for whitelist dns", transaction)
            await dnslists.within(lookups.done, RCPT_WAIT, conn.dns.clock)
            self._settle(transaction, lookups)
        note = conn.notes.get("whitelisthost")
        if note:
            self.log(LOGNOTICE, "Host %s is whitelisted: %s" % (conn.remote_ip, note), transaction)
        return DECLINED

    def _settle(self, transaction, lookups):
        """Set the note from the answers in; log the zones that could not say, once."""
        conn = transaction.connection
        text = lookups.listing()
        if text:
            conn.notes["whitelisthost"] = text
        if text or len(lookups.outcomes) == len(lookups.zones):
            conn.notes.pop(PENDING_NOTE, None)
            for zone, outcome in lookups.outcomes.items():
                if isinstance(outcome, DNSError):
                    self.log(LOGERROR, "skip %s: %s" % (zone.name, outcome), transaction)
