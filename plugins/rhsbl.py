"""rhsbl — refuse senders whose domain is on a right-hand-side DNS blacklist, at MAIL.

At MAIL the sender's domain is looked up in every zone of ``rhsbl_zones`` at once
(``<domain>.<zone>``); the first zone of the file that lists it decides the reply. The null
sender ``<>``, a sender without a domain name (``<postmaster>``, ``<a@[192.0.2.1]>``), relay
clients, whitelisted hosts (connection note ``whitelisthost``) and whitelisted senders
(transaction note ``whitelistsender``) are not checked.

Arguments: ``key value`` pairs, all optional:
  ``reject 0|1|naughty`` ``1`` (default) refuse a listed sender; ``0`` only log it;
                        ``naughty`` leave the rejection to the ``naughty`` plugin.
  ``reject_type T``     ``perm``/``hard`` (default: 550), ``temp``/``soft`` (450),
                        ``disconnect`` (550, then close), ``temp_disconnect`` (421, close).
  ``dns_timeout N``     seconds to wait for one zone's answer (default 5, as 0.94's
                        resolver); the connection's DNS budget (``dns_budget``) bounds all.
  ``loglevel L``        per-plugin log level.
A single word is the old way to say ``reject_type``: ``disconnect`` means ``disconnect``,
anything else ``perm``. Anything else (an unknown key, a bad value) stops start-up.

Config files:
  ``rhsbl_zones``       one zone per line. A zone alone (``dsn.example.org``) is asked for TXT
                        records; a zone followed by white space and a message
                        (``abuse.example.org does not support abuse@domain``) is asked for an
                        A record. A line whose zone is not a DNS name stops start-up. No zones:
                        no checks.

Replies: ``Mail from HELO <helo name> rejected because it <text>``, where the text is the
first TXT record, or the zone's message (for a zone with an empty message:
``<domain>.<zone>``), with the ``reject_type`` code. A zone that fails to answer (SERVFAIL,
timeout, the DNS budget spent) is logged at LOGERROR and skipped: never a rejection.

Notes: sets ``naughty`` / ``naughty_reject_type`` (``reject naughty``); reads
``whitelisthost``, ``whitelistsender`` and the relay_client flag.

Differences from qpsmtpd 0.94, on purpose:
  - an A-record zone's message is the text (0.94 documents it, but used the looked-up name,
    ``<domain>.<zone>``, instead);
  - all zones are asked at once and the file's order decides which listing is reported (0.94
    asked them one after another, in no fixed order);
  - bad arguments and zone names stop start-up (0.94 ignored them).
The reply names the HELO host, not the sender's domain, as 0.94's does (its code meant to name
the domain for a listing text starting with it, but tested a sender that is only set after
the MAIL hooks).
"""

from qpsmtpd_tx import dnslists, plugin_args
from qpsmtpd_tx.codes import DECLINED, LOGINFO
from qpsmtpd_tx.plugin import Plugin

#: seconds one zone's answer is waited for unless ``dns_timeout`` says (0.94's init_resolver)
DEFAULT_TIMEOUT = 5.0


class RHSBL(Plugin):
    """Look the sender's domain up in DNS blacklists at MAIL and refuse listed senders."""

    def init(self, args):
        if len(args) == 1:
            options = {"reject_type": "disconnect" if args[0].lower() == "disconnect" else "perm"}
        else:
            options = self.parse_kv_args(args, {"reject", "reject_type", "dns_timeout"})
        dnslists.check_reject_args(options)
        self.reject = options.get("reject", "1")
        self.reject_type = options.get("reject_type") or "perm"
        self.timeout = (plugin_args.positive("dns_timeout", options["dns_timeout"])
                        if "dns_timeout" in options else DEFAULT_TIMEOUT)
        self.zones()

    def zones(self):
        """The zones of ``rhsbl_zones``, in file order."""
        return self.parsed_config("rhsbl_zones", dnslists.zones_parser(None))

    async def hook_mail(self, transaction, sender, params):
        """Refuse the sender if the first listing zone lists its domain."""
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, relay client or whitelisted", transaction)
            return DECLINED
        if sender.is_null:
            self.log(LOGINFO, "pass, null sender", transaction)
            return DECLINED
        zones = self.zones()
        if not zones:
            self.log(LOGINFO, "pass, no zones", transaction)
            return DECLINED
        host = (sender.host or "").rstrip(".")
        if not host or host.startswith("["):
            self.log(LOGINFO, "pass, the sender has no domain name", transaction)
            return DECLINED
        pending = dnslists.ask(transaction.connection.dns, host, zones, self.timeout)
        listing = await dnslists.first_listing(self, transaction, pending)
        if listing is None:
            self.log(LOGINFO, "pass", transaction)
            return DECLINED
        zone, text = listing
        text = text or "%s.%s" % (host, zone.name)
        self.log(LOGINFO, "fail, %s" % text, transaction)
        hello = transaction.connection.hello_host or ""
        return self.get_reject(transaction, "Mail from HELO %s rejected because it %s"
                               % (hello, text))
