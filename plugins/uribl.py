"""uribl — tag, refuse or log a message whose URIs name a host listed in a URI block list.

The lists are DNS zones such as SURBL's and URIBL's (``multi.surbl.org``).

At data_post the message body is read line by line (streamed from the spool, in the I/O thread
pool: a 50 MB message is never in memory) and its URIs' names are collected as qpsmtpd 0.94
collects them (see :mod:`qpsmtpd_tx.uri_hosts`): addresses written in URIs (``http://1.2.3.4/``,
``http://3232235777/``, octal and hex parts), reversed like DNSBL queries; host names anywhere
in the text and in URIs, each with its parent domains down to the registered domain (the last
two labels, three under the ccTLDs with a fixed second level such as ``co.uk``). Each distinct
name ``N`` is then asked, for every zone ``Z`` at once, as ``N.Z`` type A; an answer whose
address, as a 32-bit number, has a bit of the zone's mask set is a match, and the match's text
is the name's TXT record in that zone (else the address).

Arguments (``key value`` pairs, all optional; qpsmtpd's names):
  ``action add-header|deny|denysoft|log``  what a match does, unless its zone line says
                        otherwise (default ``add-header``).
  ``timeout SECONDS``   the longest wait for each DNS answer (default 30; all lookups run at
                        once, so this bounds the whole wait). The connection's ``dns_budget``
                        also applies.
  ``scan-headers 0|1``  also scan the header block (default 0). ``check-headers`` is the same
                        (0.94 accepts both).
  ``checkip 0|1``       look up addresses written in URIs (default 1, as 0.94 always does).
  ``max_names N``       the most distinct names looked up per message (default 100; each is
                        asked in every zone). Scanning stops there, logged.
  ``mask N``            accepted and ignored, as in 0.94 (masks are per zone).
  ``loglevel LEVEL``    per-plugin log level.

Config files:
  ``uribl_zones``       one zone a line: ``zone [mask[,mask…]] [action]``. The masks are
                        decimal numbers OR-ed together (a negative one or none: every list of a
                        combined zone, ``0x00ffffff``); e.g. ``multi.surbl.org 2,8 deny``. An
                        action here overrides the argument. No zones: the plugin does nothing.
  ``uribl_whitelist_domains``  registered domains (``example.com``, ``example.co.uk``) whose
                        host names are never looked up.

Replies and headers, for each match in turn (zones in file order, names in the order found):
the match is logged at LOGWARN as ``<name> in <zone>: <TXT or address>``; ``add-header`` adds
``X-URIBL-Match: <that text>`` at the top of the header; ``deny`` answers ``552 <that text>``
and ``denysoft`` ``452 <that text>`` (the first such match decides); ``log`` only logs.
Relay clients and whitelisted hosts and senders are not checked. A lookup that fails or times
out (not NXDOMAIN/NODATA) is logged and counts as not listed: never a rejection. Notes: none.

Per-recipient setting (recipient note, README "Per-recipient policy"): ``uribl_action``
(``add-header``, ``deny``, ``denysoft``, ``log``) replaces the action of every match for that
recipient (default: none, each zone's own action). The names are looked up once per message;
with ``recipient_policy split`` each group of recipients gets its own outcome, and its
``X-URIBL-Match`` fields in its copy. Strictest: ``deny``, ``denysoft``, the zones' own,
``add-header``, ``log``.

Differences from qpsmtpd 0.94, intended:
  - ``scan-headers`` scans the header block, as documented; 0.94 starts reading after the
    header, so the option never found anything there.
  - The whitelist applies to every host name by its registered domain; 0.94 compared a
    different part of a URI's host (``example.com`` in ``http://www.example.com``, but
    ``com`` in ``http://example.com``, so ``http://example.com`` was looked up even when
    ``example.com`` was whitelisted). Whitelist lines are compared in lower case.
  - At most ``max_names`` names per message (0.94: no limit); the TXT record is asked only for
    a listed name (0.94 asks A and TXT for every name: twice the queries).
  - Lines longer than 64 KiB are scanned in 64 KiB pieces, a quoted-printable continuation
    is joined up to 64 KiB, and at most 1000 ``proto:/`` starts are tried per line: bounded
    memory and time for any message (0.94's patterns take quadratic time on long lines).
  - Several matches are acted on in a fixed order (0.94: in hash order, at random).
  - The match text is cut at 200 characters, control characters escaped (it comes from the
    DNS and goes into a header and a reply); a TXT record of several strings reads them
    joined without the space 0.94 puts between them.
  - A bad mask or action in ``uribl_zones``, or a bad argument, stops start-up naming the
    file and line (0.94 logs it and runs with the zones read so far and no resolver).
  - ``checkip`` and ``max_names`` are new; ``async/uribl`` loads this same plugin.
"""

import re
import time

from twisted.internet import defer

from qpsmtpd_tx.codes import DECLINED, DENY, DENYSOFT, LOGDEBUG, LOGINFO, LOGWARN
from qpsmtpd_tx.config import split_words
from qpsmtpd_tx.dns import DNSError
from qpsmtpd_tx.message import Header
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.policy import Setting
from qpsmtpd_tx.plugin_args import boolean, positive
from qpsmtpd_tx.printable import printable
from qpsmtpd_tx.uri_hosts import URIScanner, message_lines, scan_lines

ACTIONS = ("add-header", "deny", "denysoft", "log")
#: a zone without a mask (or with a negative one) matches every list of a combined zone
ALL_LISTS = 0x00FFFFFF
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_NAMES = 100
#: the longest match text put in a header or a reply (a TXT record can be long)
MAX_TEXT = 200
_REPLY_CODE = {"deny": DENY, "denysoft": DENYSOFT}
_INTEGER = re.compile(r"-?[0-9]{1,30}")


def parse_mask(text, zone, where):
    """A zone's mask column (``2,8``, ``-1``) as a number; PluginError if malformed."""
    mask = 0
    for part in text.split(","):
        if not _INTEGER.fullmatch(part):
            raise PluginError("%s: malformed mask %r for %s (comma-separated integers)"
                              % (where, part, zone))
        value = int(part)
        mask |= value if value >= 0 else ALL_LISTS
    return mask


def parse_zones(lines, default_action):
    """``uribl_zones`` lines as ``{zone: (mask, action)}`` in file order (a zone given twice:
    the last line wins, as in 0.94)."""
    zones = {}
    for line in lines:
        words = split_words(line.text)
        if not words or words[0] == "0":
            continue
        where = "%s:%d" % (line.path, line.lineno)
        zone = words[0].strip(".")
        mask_text = words[1] if len(words) > 1 and words[1] != "0" else str(ALL_LISTS)
        mask = parse_mask(mask_text, zone, where)
        action = words[2] if len(words) > 2 else default_action
        if action not in ACTIONS:
            raise PluginError("%s: unknown action %r for %s (%s)"
                              % (where, action, zone, "|".join(ACTIONS)))
        zones[zone] = (mask, action)
    return zones


def parse_whitelist(lines):
    """``uribl_whitelist_domains`` lines as a set of lower-case domains."""
    return frozenset(line.text.strip().strip(".").lower() for line in lines)


def listed(address, mask):
    """Whether A record ``address`` has a bit of ``mask`` set (0.94's ``evaluate``)."""
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return False
    value = 0
    for part in parts:
        value = (value << 8) | (int(part) & 0xFF)
    return bool(value & mask)


class Match:
    """A name listed in a zone: ``text`` is ``<name> in <zone>: <TXT or address>``."""

    def __init__(self, name, zone, action, detail):
        self.name = name
        self.zone = zone
        self.action = action
        self.text = printable("%s in %s: %s" % (name, zone, detail), MAX_TEXT)


def uribl_action(text):
    """A ``uribl_action`` note: one of :data:`ACTIONS` (ValueError otherwise)."""
    text = str(text).strip().lower()
    if text not in ACTIONS:
        raise ValueError(text)
    return text


#: least to most strict; None (each zone's own action) sits between tagging and refusing
_STRICTNESS = ("log", "add-header", None, "denysoft", "deny")


class URIBL(Plugin):
    """Looks up the names in a message's URIs in URI block lists at data_post."""

    KNOWN = ("action", "timeout", "scan-headers", "check-headers", "checkip", "max_names",
             "mask")

    recipient_settings = (Setting("uribl_action", None, None, uribl_action,
                                  lambda values: max(values, key=_STRICTNESS.index)),)

    def init(self, args):
        arguments = self.parse_kv_args(list(args), self.KNOWN)
        self.action = arguments.get("action", "add-header")
        if self.action not in ACTIONS:
            raise PluginError("action must be one of %s, got %r"
                              % ("|".join(ACTIONS), self.action))
        self.timeout = positive("timeout", arguments.get("timeout", str(DEFAULT_TIMEOUT)))
        headers = arguments.get("check-headers", arguments.get("scan-headers", "0"))
        self.scan_headers = boolean("scan-headers", headers)
        self.check_ip = boolean("checkip", arguments.get("checkip", "1"))
        self.max_names = positive("max_names", arguments.get("max_names",
                                                             str(DEFAULT_MAX_NAMES)), int)
        self.zones(None)
        self.whitelist(None)

    def zones(self, transaction):
        """The configured zones: ``{zone: (mask, action)}``."""
        return self.parsed_config("uribl_zones", lambda lines: parse_zones(lines, self.action),
                                  transaction)

    def whitelist(self, transaction):
        """The whitelisted registered domains."""
        return self.parsed_config("uribl_whitelist_domains", parse_whitelist, transaction)

    def hook_data_post(self, transaction):
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, relay client or whitelisted", transaction)
            return DECLINED
        zones = self.zones(transaction)
        if not zones:
            self.log(LOGDEBUG, "skip, no uribl_zones", transaction)
            return DECLINED
        scanner = URIScanner(self.whitelist(transaction), self.check_ip, self.max_names)
        # Take the message now, before any wait: our own file object reads the spool.
        head = transaction.header_bytes() if self.scan_headers else b""
        body = transaction.body.open()
        return defer.Deferred.fromCoroutine(self._check(transaction, zones, scanner, head, body))

    async def _check(self, transaction, zones, scanner, head, body):
        try:
            await self.server.run_blocking(
                lambda: scan_lines(message_lines(head, body), scanner))
        finally:
            body.close()
        for host in scanner.whitelisted:
            self.log(LOGDEBUG, "skipping whitelisted URI domain '%s'" % host, transaction)
        if scanner.full:
            self.log(LOGINFO, "stopped after %d names (max_names)" % len(scanner.names),
                     transaction)
        if not scanner.names:
            self.log(LOGINFO, "pass, No URIs found in mail", transaction)
            return DECLINED
        started = time.monotonic()
        dns = transaction.connection.dns
        lookups = [self._lookup(transaction, dns, name, zone, mask, action)
                   for zone, (mask, action) in zones.items() for name in scanner.names]
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(lookup) for lookup in lookups], consumeErrors=True)
        matches = [result for result in results if isinstance(result, Match)]
        self._log_failures(transaction, zones, [r for r in results if isinstance(r, DNSError)])
        self.log(LOGINFO, "%d lookup%s finished in %.2f sec (%d match%s)"
                 % (len(results), "" if len(results) == 1 else "s",
                    time.monotonic() - started, len(matches),
                    "" if len(matches) == 1 else "es"), transaction)
        return self._act(transaction, matches)

    async def _lookup(self, transaction, dns, name, zone, mask, action):
        """The Match for ``name`` in ``zone``; None if not listed; the DNSError if the DNS
        could not say (a server failure, a timeout: counted as not listed, and logged)."""
        query = "%s.%s" % (name, zone)
        try:
            answer = await dns.a(query, timeout=self.timeout)
        except DNSError as e:
            return None if e.definite else e
        if not any(listed(address, mask) for address in answer.records):
            return None
        detail = answer.records[-1]
        try:
            texts = (await dns.txt(query, timeout=self.timeout)).records
        except DNSError as e:
            self.log(LOGDEBUG, "no TXT for %s: %s" % (query, e), transaction)
            texts = ()
        if texts and texts[-1]:
            detail = texts[-1]
        return Match(name, zone, action, detail)

    def _log_failures(self, transaction, zones, failures):
        """One line per zone whose lookups failed: how many, and the first reason."""
        for zone in zones:
            failed = [e for e in failures if e.name.endswith("." + zone)]
            if failed:
                self.log(LOGINFO, "skip, %d lookup%s in %s failed (%s)"
                         % (len(failed), "" if len(failed) == 1 else "s", zone, failed[0]),
                         transaction)

    def _act(self, transaction, matches):
        for match in matches:
            self.log(LOGWARN, match.text, transaction)
        return self.per_recipient_result(transaction, [
            (recipients, self._act_for(transaction, recipients, matches, values["uribl_action"]))
            for values, recipients in self.recipient_groups(transaction)])

    def _act_for(self, transaction, recipients, matches, override):
        """The result for ``recipients`` whose ``uribl_action`` is ``override`` (None: each
        zone's action); X-URIBL-Match fields go into their copy."""
        for match in matches:
            action = override or match.action
            if action == "add-header":
                self.edit_header(transaction, recipients, Header.add, "X-URIBL-Match",
                                 match.text, True)
            elif action in _REPLY_CODE:
                return _REPLY_CODE[action], match.text
        return DECLINED
