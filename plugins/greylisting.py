"""greylisting — delay mail from unknown senders: the first try of a triplet is deferred.

Evan Harris's greylisting, as qpsmtpd's plugin: a client is identified by a *triplet* (by
default its IP address only; optionally with the sender and the recipient). The first try of
an unknown triplet is deferred; a retry after ``black_timeout`` and before ``grey_timeout``
passes and makes the triplet white; a white triplet passes for ``white_timeout`` after its
last delivery. Real mail servers retry; most spamware does not.

Arguments: ``key value`` pairs, all optional (qpsmtpd's, plus ours at the end). The config
file ``denysoft_greylist`` may hold the same pairs, one per line (``black_timeout 600``);
arguments win over it.
  ``remote_ip 0|1``        the client's IP in the triplet (default 1)
  ``sender 0|1``           the envelope sender in the triplet (default 0)
  ``recipient 0|1``        the recipient in the triplet (default 0; checked at RCPT)
  ``black_timeout S``      seconds a new triplet is deferred (default 3000: 50 minutes)
  ``grey_timeout S``       seconds after its first try within which a retry passes
                           (default 12000: 3 h 20 min); later, the triplet starts over
  ``white_timeout S``      seconds a white triplet stays white after its last delivery
                           (default 3110400: 36 days)
  ``reject 0|1``           1 (default): defer; 0: record and log only (to seed the database)
  ``mode denysoft|testonly|off``  qpsmtpd's older name: ``testonly`` and ``off`` = ``reject
                           0``, ``denysoft`` = ``reject 1`` (``reject`` wins if both are given)
  ``deny_late 0|1``        1: defer at DATA instead of at MAIL (``451``), e.g. to see every
                           recipient in the log (default 0)
  ``per_recipient 0|1``    1: check at RCPT, with each recipient's own timeouts (below)
  ``per_recipient_db 0``   accepted; ``1`` (a database per recipient directory) is refused
  ``p0f KEY,VALUE,…``      greylist only clients whose p0f fingerprint matches one pair:
                           ``genre`` and ``link`` (a regex, any case), ``distance`` (more hops
                           than VALUE), ``uptime`` (fewer hours than VALUE), ``detail``;
                           e.g. ``p0f genre,windows,distance,3``
  ``geoip CC,CC…``         never greylist clients from these countries (``geoip US,CA``)
  ``db_dir DIR``           the directory of the file database ``greylist.sqlite`` (default:
                           the first that exists of ``/var/lib/qpsmtpd/greylisting``,
                           ``<program dir>/var/db``, ``<program dir>/config``, ``.``)
  ``nfslock 0|1``          1: the file database is on NFS (SQLite's rollback journal
                           instead of WAL)
  ``upgrade 0|1``          accepted; nothing to convert (see below)
  ``loglevel L``           per-plugin log level
  ``redis_url URL``        ours: keep the database in Redis (``redis://HOST[:PORT][/DB]``)
                           instead of the file, shared by several processes or hosts; the
                           config file ``redis_server`` (a URL or ``HOST[:PORT]``) does the
                           same when this argument is not given
  ``redis_timeout S``      ours: seconds to wait for Redis (default 3)
A bad value, an unknown key, or a ``db_dir`` that is not a directory stops start-up.

Config files: ``denysoft_greylist`` (arguments), ``redis_server``.

The database: one record per triplet, qpsmtpd's key and value: key ``greylist:<ip>[:<sender>]
[:<recipient>]`` (``<ip>`` the address as an integer, as qpsmtpd; the parts that are on),
value ``<first or last seen>:1:<deferrals>:<deliveries>``. Every record has a TTL: a triplet
not yet white expires ``grey_timeout`` after its first try, a white one ``white_timeout``
after its last delivery. The file store is SQLite (``qpsmtpd_tx/kvstore/sqlite.py``), safe
with ``--workers``; Redis is for several servers (``qpsmtpd_tx/kvstore/redis.py``).

Per-recipient settings (recipient notes, read at RCPT when ``per_recipient 1`` or
``recipient 1``; see README "Per-recipient policy"): ``greylisting_black_timeout``,
``greylisting_grey_timeout``, ``greylisting_white_timeout`` (seconds; default: the argument).
Nothing is decided per recipient after RCPT: the deferral of a bounce at DATA (below) is a
temporary failure, which defers the whole message under every ``recipient_policy`` (README
"Per-recipient policy": any temporary failure → its 4xx, the client retries).

Exclusions (never deferred, as qpsmtpd): relay clients, whitelisted hosts (connection note
``whitelisthost``) and senders (transaction note ``whitelistsender``); with ``geoip``, the
listed countries (connection note ``geoip_country``, set by ``ident/geoip``); with ``p0f``,
clients whose fingerprint (connection note ``p0f``, set by ``ident/p0f``) matches no pair.
At DATA, a deferral is dropped if every recipient is whitelisted (transaction note
``whitelistrcpt`` = the number of recipients). TLS connections are greylisted like others (0.94's
documentation says they are exempt; its code does not exempt them).

Replies: ``450 This mail is temporarily denied`` at MAIL (or at RCPT with ``per_recipient``
or ``recipient``); ``451 This mail is temporarily denied`` at DATA with ``deny_late 1``, and
for the null sender with ``per_recipient`` (bounces are deferred at DATA so that SMTP probes
of one recipient are not). Notes: sets the transaction note ``greylist`` (the deferral text)
when the deferral waits for DATA.

When the database cannot be used (Redis down or too slow, a file that cannot be written),
the message passes and the reason is logged at LOGERROR, as qpsmtpd does when its DB fails
(once: while the same error goes on, at LOGINFO for each message).

Differences from qpsmtpd 0.94, on purpose:
- 0.94 never greylists: its check calls ``is_p0f_match``, a method that does not exist, so
  it dies (``FATAL PLUGIN ERROR``, taken as DECLINED) for every message; and the method
  meant (``p0f_match``) answers false without a ``p0f`` argument, which would exempt every
  client. Here ``p0f`` restricts greylisting only when it is given. (``geoip_match`` and
  ``p0f_match`` also call a missing ``LOGINFO`` method.)
- A triplet whose first try is older than ``grey_timeout``, or white and unused for
  ``white_timeout``, starts over (it is deferred again); 0.94 let it pass for ever.
- The database is SQLite or Redis, not a Berkeley DB file (Python cannot read one), so
  ``upgrade`` (0.94's conversion of dotted-IP keys) has nothing to convert. ``per_recipient``
  reads per-recipient timeouts from recipient notes; 0.94 read the global config again.
- ``db_dir`` that does not exist stops start-up (0.94 silently used the next candidate);
  unknown arguments stop start-up (0.94 logged them); ``per_recipient_db 1`` is refused.
"""

import re

from twisted.internet import reactor

from qpsmtpd_tx.codes import DECLINED, DENYSOFT, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd_tx.kvstore import StoreError, ip_key, qpsmtpd_db_dirs
from qpsmtpd_tx.kvstore.choose import ARGUMENTS as STORE_ARGUMENTS, describe, open_store, \
    plugin_store
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import boolean
from qpsmtpd_tx.policy import Setting

DENYMSG = "This mail is temporarily denied"
DB_FILE = "greylist.sqlite"
KEY_PREFIX = "greylist:"

DEFAULTS = {
    "remote_ip": "1",
    "sender": "0",
    "recipient": "0",
    "black_timeout": str(50 * 60),
    "grey_timeout": str(3 * 3600 + 20 * 60),
    "white_timeout": str(36 * 24 * 3600),
}
FLAGS = ("remote_ip", "sender", "recipient", "deny_late", "per_recipient", "upgrade")
TIMEOUTS = ("black_timeout", "grey_timeout", "white_timeout")
KNOWN = set(DEFAULTS) | set(FLAGS) | set(TIMEOUTS) | {
    "reject", "mode", "per_recipient_db", "p0f", "geoip"} | STORE_ARGUMENTS
P0F_KEYS = ("genre", "detail", "uptime", "link", "distance")


def seconds(text):
    """A timeout argument or note: a number of seconds, 0 or more."""
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError("not a number of seconds: %r" % (text,))
    return value


def parse_p0f(text):
    """``genre,windows,distance,3`` → ``[("genre", "windows"), ("distance", "3")]``."""
    words = text.split(",")
    if len(words) % 2 or not all(words):
        raise PluginError("p0f must be KEY,VALUE pairs separated by commas, got %r" % (text,))
    pairs = list(zip(words[::2], words[1::2]))
    for key, value in pairs:
        if key not in P0F_KEYS:
            raise PluginError("p0f: unknown key %r (known: %s)" % (key, ", ".join(P0F_KEYS)))
        if key in ("distance", "uptime"):
            try:
                float(value)
            except ValueError:
                raise PluginError("p0f: %s must be a number, got %r" % (key, value))
    return pairs


def p0f_matches(pairs, fingerprint):
    """The first pair of ``pairs`` that ``fingerprint`` (the ``p0f`` note) matches, or None."""
    for key, value in pairs:
        seen = fingerprint.get(key)
        if seen is None or seen == "":
            continue
        try:
            if key == "distance" and float(seen) > float(value):
                return key, value
            if key == "uptime" and float(seen) < float(value):
                return key, value
        except (TypeError, ValueError):
            continue
        if key in ("genre", "link", "detail") and re.search(value, str(seen), re.I):
            return key, value
    return None


def greylist_change(timeouts):
    """The store update of one try (see :meth:`qpsmtpd_tx.kvstore.Store.update`): gives
    ``(passes, log level, log text)``; ``timeouts`` maps black/grey/white_timeout to seconds."""
    black, grey, white = (timeouts[name] for name in TIMEOUTS)

    def change(old, now):
        """One try of the triplet: the new record, its TTL, the verdict."""
        now = int(now)
        if old:
            try:
                ts, new, deferred, delivered = (int(float(p)) for p in old.split(":"))
            except ValueError:
                old = None  # not ours: start over
        if not old:
            return ("%d:1:0:0" % now, max(grey, 1),
                    (False, LOGWARN, "fail: initial DENYSOFT, unknown"))
        age = now - ts
        if delivered and age < white:
            delivered += 1
            return ("%d:%d:%d:%d" % (now, new, deferred, delivered), max(white, 1),
                    (True, LOGINFO, "pass: white, %d deliveries" % delivered))
        if not delivered and age < black:
            deferred += 1
            return ("%d:%d:%d:0" % (ts, new, deferred), max(ts + grey - now, 1),
                    (False, LOGWARN, "fail: black DENYSOFT - %d deferred connections" % deferred))
        if not delivered and age < grey:
            return ("%d:%d:%d:1" % (now, new, deferred), max(white, 1),
                    (True, LOGWARN, "pass: updated grey->white"))
        # expired (the store's TTL had not yet removed it): a new triplet
        return ("%d:1:0:0" % now, max(grey, 1),
                (False, LOGWARN, "fail: initial DENYSOFT, %s timed out"
                 % ("white" if delivered else "grey")))
    return change


class Greylisting(Plugin):
    """Defer the first try of unknown (IP, sender, recipient) triplets."""

    clock = reactor
    recipient_settings = tuple(
        Setting("greylisting_" + name, name, float(DEFAULTS[name]), seconds, max, phase="rcpt")
        for name in TIMEOUTS)

    def init(self, args):
        """Arguments over the ``denysoft_greylist`` file; the store chosen and checked."""
        file_lines = {}
        for line in self.config("denysoft_greylist"):
            key, _, value = line.strip().partition(" ")
            file_lines[key] = value.strip()
        for key in file_lines:
            if key not in KNOWN and key != "loglevel":
                raise PluginError("config denysoft_greylist: unknown setting %r" % (key,))
        given = self.parse_kv_args(args, KNOWN)
        options = dict(DEFAULTS, **{k: v for k, v in file_lines.items() if k != "loglevel"})
        options.update(given)
        if "loglevel" in file_lines and self.loglevel is None:
            self.set_loglevel(file_lines["loglevel"])
        self.arguments = options
        self.flags = {name: boolean(name, options.get(name, "0")) for name in FLAGS}
        self.timeouts = {}
        for name in TIMEOUTS:
            try:
                self.timeouts[name] = seconds(options[name])
            except ValueError:
                raise PluginError("%s must be a number of seconds, got %r" % (name, options[name]))
        self.reject = self._reject(options)
        if boolean("per_recipient_db", options.get("per_recipient_db", "0")):
            raise PluginError("per_recipient_db 1 is not supported (one database per recipient "
                              "directory); per-recipient timeouts come from recipient notes")
        if not any(self.flags[name] for name in ("remote_ip", "sender", "recipient")):
            raise PluginError("enable one of remote_ip, sender, or recipient")
        self.p0f = parse_p0f(options["p0f"]) if options.get("p0f") else None
        self.countries = {c.strip().lower() for c in options.get("geoip", "").split(",")
                          if c.strip()}
        self.at_rcpt = self.flags["recipient"] or self.flags["per_recipient"]
        self.store = plugin_store(self.config_scalar, options, DB_FILE,
                                  qpsmtpd_db_dirs("greylisting"))
        self.store.clock = self.clock
        open_store(self.store, self.server.check_only)
        if self.flags["upgrade"]:
            self.log(LOGINFO, "upgrade: nothing to convert in %s" % describe(self.store))

    @staticmethod
    def _reject(options):
        if "reject" in options:
            return "1" if boolean("reject", options["reject"]) else "0"
        mode = options.get("mode")
        if mode is None:
            return "1"
        if mode.lower() not in ("denysoft", "testonly", "off"):
            raise PluginError("mode must be denysoft, testonly or off, got %r" % (mode,))
        return "0" if mode.lower() in ("testonly", "off") else "1"

    def register(self, registry):
        """The check at MAIL, or at RCPT with ``recipient`` or ``per_recipient``."""
        if self.at_rcpt:
            registry.register("rcpt", self, self.rcpt_handler)
        else:
            registry.register("mail", self, self.mail_handler)

    def stop(self):
        """Close the store."""
        return self.store.close()

    # -- hooks -----------------------------------------------------------------------------

    async def mail_handler(self, transaction, sender, params):
        """MAIL: check the triplet; defer now, or at DATA with ``deny_late``."""
        deferral = await self.greylist(transaction, sender, None, self.timeouts)
        if deferral is None:
            return DECLINED
        if not self.flags["deny_late"]:
            return DENYSOFT, deferral
        transaction.notes["greylist"] = deferral
        return DECLINED

    async def rcpt_handler(self, transaction, recipient, params):
        """RCPT: check the triplet with this recipient's timeouts."""
        timeouts = {name: self.setting(recipient, "greylisting_" + name) for name in TIMEOUTS}
        sender = transaction.sender
        deferral = await self.greylist(transaction, sender, recipient, timeouts)
        if deferral is None:
            return DECLINED
        # a null sender (a bounce, or an SMTP callout probe) is deferred at DATA instead
        if sender is not None and not sender.is_null:
            return DENYSOFT, deferral
        transaction.notes["greylist"] = deferral
        return DECLINED

    def hook_data(self, transaction):
        """DATA: the deferral kept for it, unless every recipient is whitelisted."""
        deferral = transaction.notes.get("greylist")
        if not deferral:
            return DECLINED
        if (transaction.notes.get("whitelistrcpt") or 0) == len(transaction.recipients):
            self.log(LOGWARN, "skip: all recipients whitelisted", transaction)
            return DECLINED
        return DENYSOFT, deferral

    # -- the check -------------------------------------------------------------------------

    async def greylist(self, transaction, sender, recipient, timeouts):
        """The deferral text if this try is to be deferred, else None (logged either way)."""
        if self.is_immune(transaction) or self._exempt(transaction):
            return None
        key = self.db_key(transaction, sender, recipient)
        try:
            passes, level, text = await self.store.update(key, greylist_change(timeouts))
        except StoreError as e:
            # at LOGERROR once per failure, not per message while the database stays down
            self.log_once("database", LOGERROR, "database failed, passing: %s" % (e,),
                          transaction, again=LOGINFO)
            return None
        self.problem_over("database")
        self.log(level, text, transaction)
        if passes:
            return None
        if self.reject == "0":
            return None
        return DENYMSG

    def _exempt(self, transaction):
        """The p0f and geoip exclusions (each only when its argument is given)."""
        notes = transaction.connection.notes
        if self.p0f is not None:
            fingerprint = notes.get("p0f")
            if not isinstance(fingerprint, dict):
                self.log(LOGERROR, "p0f info missing", transaction)
                return True
            match = p0f_matches(self.p0f, fingerprint)
            if match is None:
                self.log(LOGINFO, "skip: no p0f match", transaction)
                return True
            self.log(LOGDEBUG, "p0f %s match (%s)" % match, transaction)
        if self.countries:
            country = notes.get("geoip_country")
            name = notes.get("geoip_country_name") or ""
            if not country:
                self.log(LOGINFO, "skip: no geoip country", transaction)
            elif str(country).lower() in self.countries:
                self.log(LOGINFO, "pass: geoip country match (%s, %s)" % (country, name),
                         transaction)
                return True
            else:
                self.log(LOGINFO, "skip: no geoip match (%s)" % name, transaction)
        return False

    def db_key(self, transaction, sender, recipient):
        """qpsmtpd's key of the triplet, with our prefix."""
        parts = []
        if self.flags["remote_ip"]:
            parts.append(ip_key(transaction.connection.remote_ip))
        if self.flags["sender"]:
            parts.append(sender.unquoted_address if sender is not None else "")
        if self.flags["recipient"] and recipient is not None:
            parts.append(recipient.unquoted_address)
        return KEY_PREFIX + ":".join(parts)
