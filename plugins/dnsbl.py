"""dnsbl — refuse clients whose IP address is on a DNS blacklist, at connect.

At connect the client's address is looked up in every zone of ``dnsbl_zones`` at once
(``4.3.2.1.<zone>`` for 1.2.3.4; for an IPv6 client, its 32 nibbles in reverse order, as in
``ip6.arpa``) — the queries go out at pre-connection, while the core looks up the client's
host name, and the connect hook takes their answers —; the first zone of the file that lists it decides the reply, which is sent
instead of the greeting (then the connection is closed). Relay clients and whitelisted hosts
(connection note ``whitelisthost``, e.g. from ``whitelist``) are not checked.

Arguments: ``key value`` pairs, all optional:
  ``reject 0|1|naughty|connect`` ``1`` (default) refuse a listed client; ``0`` only log it
                        ("fail, tolerated"); ``naughty`` leave the rejection to the
                        ``naughty`` plugin (see below); ``connect`` as ``1``.
  ``reject_type T``     ``perm``/``hard`` (default: 550), ``temp``/``soft`` (450),
                        ``disconnect`` (550), ``temp_disconnect`` (450); at connect the
                        connection is closed after any of them.
  ``timeout N``         seconds to wait for one zone's answer (default 30); the connection's
                        DNS budget (config item ``dns_budget``) bounds all its lookups.
  ``loglevel L``        per-plugin log level.
A single word (``dnsbl disconnect``) is the old way to give ``reject_type``. Anything else (an
unknown key, a bad value) stops start-up.

Config files:
  ``dnsbl_zones``       one zone per line. A zone alone (``bl.example.org``) is asked for TXT
                        records, and the first TXT text is the reply. A zone with a message
                        after a colon (``bl.example.org:Listed, see https://x/?ip=%IP%``) is
                        asked for an A record, and the message is the reply, ``%IP%`` replaced
                        by the client's address (an empty message: ``Blocked by <zone>``). A
                        line whose zone is not a DNS name stops start-up. No zones: no checks.
  ``dnsbl_allow``       addresses never checked: a full address, or the start of one ending
                        in a dot (``172.16.33.``), compared as text.
  ``dnsbl_rejectmsg``   its first line goes before the ``RBLSMTPD`` text (below).

Environment: ``RBLSMTPD`` (as DJB's rblsmtpd): unset, every client is checked; set but empty,
no client is checked; non-empty, every client is refused with ``<dnsbl_rejectmsg>
<RBLSMTPD>`` (``%IP%`` replaced), as ``reject`` says. qpsmtpd-tx serves every client from
one process, so the variable applies to all of them.

Replies: the listing's text (above) with the ``reject_type`` code. A zone that fails to answer
(SERVFAIL, timeout, the DNS budget spent) is logged at LOGERROR and skipped: never a
rejection.

Recipients ``postmaster``, ``abuse``, ``mailer-daemon`` and ``root`` (any case, any domain)
clear the connection notes ``naughty`` and ``rejected`` (logged at LOGWARN), so that with
``reject naughty`` a listed client may still write to them: list ``naughty`` after this plugin.

Notes: sets ``naughty`` / ``naughty_reject_type`` (``reject naughty``), lowers ``karma`` by 1
for a listed client; reads ``whitelisthost`` and the relay_client flag; keeps the lookups sent
at pre-connection in ``dnsbl_pending`` until the connect hook takes them.

Differences from qpsmtpd 0.94, on purpose:
  - an A-record zone's own message is the reply (0.94 documents it, but sent the looked-up
    name, e.g. ``2.0.0.127.bl.example.org``, instead);
  - a non-empty ``RBLSMTPD`` refuses clients under every ``reject`` value, as documented
    (0.94 did so only with ``reject connect`` and otherwise skipped the checks);
  - IPv6 clients are looked up by nibbles (0.94 asked ``<address>.<zone>``, which no list
    serves);
  - all zones are asked at once and the file's order decides which listing is reported (0.94
    asked them one after another, in no fixed order);
  - bad arguments and zone names stop start-up (0.94 ignored them).
"""

import os

from qpsmtpd_tx import dnslists, plugin_args
from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGINFO, LOGWARN
from qpsmtpd_tx.plugin import Plugin

#: recipients a listed client may still write to (with ``reject naughty``)
SPECIAL_USERS = ("postmaster", "abuse", "mailer-daemon", "root")
#: connection note holding the lookups sent at pre-connection until the connect hook
PENDING_NOTE = "dnsbl_pending"
#: seconds one zone's answer is waited for unless ``timeout`` says
DEFAULT_TIMEOUT = 30.0


class DNSBL(Plugin):
    """Look the client's address up in DNS blacklists at connect and refuse listed clients."""

    environ = None  # tests may set a dict; None means os.environ

    def init(self, args):
        args = list(args)
        legacy = {}
        if len(args) % 2:
            legacy["reject_type"] = args.pop(0)
        options = self.parse_kv_args(args, {"reject", "reject_type", "timeout"})
        options.update(legacy)
        dnslists.check_reject_args(options, dnslists.REJECT_VALUES + ("connect",))
        self.reject = options.get("reject", "1")
        self.reject_type = options.get("reject_type", "perm")
        self.timeout = (plugin_args.positive("timeout", options["timeout"])
                        if "timeout" in options else DEFAULT_TIMEOUT)
        self.zones()
        # files that cannot be read stop start-up (read again at SIGHUP)
        self.config("dnsbl_allow")
        self.config("dnsbl_rejectmsg")

    def zones(self):
        """The zones of ``dnsbl_zones``, in file order."""
        return self.parsed_config("dnsbl_zones", dnslists.zones_parser(":"))

    def hook_pre_connection(self, transaction, *connection_details):
        """Send the queries now, while the core looks up the client's host name (one DNS
        round trip less before the greeting); :meth:`hook_connect` takes their answers.
        Decides nothing."""
        conn = transaction.connection
        zones = self.zones()
        if self._rblsmtpd() is None and zones and not self._allowed(conn.remote_ip):
            conn.notes[PENDING_NOTE] = dnslists.ask_about_client(self, transaction, zones,
                                                                 self.timeout)
        return DECLINED

    async def hook_connect(self, transaction):
        """Refuse the client if ``RBLSMTPD`` says so or the first listing zone lists it."""
        conn = transaction.connection
        sent = conn.notes.pop(PENDING_NOTE, None)
        rblsmtpd = self._rblsmtpd()
        if rblsmtpd:
            return self._refuse_by_environment(transaction, rblsmtpd)
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, relay client or whitelisted", transaction)
            return DECLINED
        if rblsmtpd is not None:
            self.log(LOGINFO, "skip, RBLSMTPD set, but empty for %s" % conn.remote_ip,
                     transaction)
            return DECLINED
        if self._allowed(conn.remote_ip):
            self.log(LOGINFO, "skip, %s is in dnsbl_allow" % conn.remote_ip, transaction)
            return DECLINED
        zones = self.zones()
        if not zones:
            self.log(LOGDEBUG, "skip, no zones", transaction)
            return DECLINED
        pending = sent or dnslists.ask_about_client(self, transaction, zones, self.timeout)
        if pending is None:
            return DECLINED
        listing = await dnslists.first_listing(self, transaction, pending)
        if listing is None:
            self.log(LOGINFO, "pass", transaction)
            return DECLINED
        zone, text = listing
        self.adjust_karma(transaction, -1)
        if zone.message is not None:
            text = text.replace("%IP%", conn.remote_ip) or "Blocked by %s" % zone.name
        return self.get_reject(transaction, text, zone.name)

    def _rblsmtpd(self):
        """The ``RBLSMTPD`` variable (None if unset)."""
        return (os.environ if self.environ is None else self.environ).get("RBLSMTPD")

    def _refuse_by_environment(self, transaction, rblsmtpd):
        """The rejection a non-empty ``RBLSMTPD`` asks for."""
        text = rblsmtpd.replace("%IP%", transaction.connection.remote_ip)
        first = self.config_scalar("dnsbl_rejectmsg")
        if first:
            text = "%s %s" % (first, text)
        return self.get_reject(transaction, text, "RBLSMTPD")

    def _allowed(self, ip):
        """Whether ``dnsbl_allow`` names ``ip`` or a start of it (as text, as 0.94 does)."""
        text = ip + "."
        for entry in self.config("dnsbl_allow"):
            entry = entry if entry.endswith(".") else entry + "."
            if text.startswith(entry):
                return True
        return False

    def hook_rcpt(self, transaction, recipient, params):
        """Let a listed client (``reject naughty``) write to the postmaster and abuse."""
        user = recipient.user or ""
        if user.lower() in SPECIAL_USERS:
            self.log(LOGWARN, "skip, don't blacklist special account: %s" % user, transaction)
            notes = transaction.connection.notes
            notes["naughty"] = 0
            notes["rejected"] = 0
        return DECLINED

