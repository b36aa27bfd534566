"""karma — remember how each client IP behaved; send naughty ones to the penalty box.

qpsmtpd's plugin. Other plugins raise or lower the connection note ``karma`` while a client
talks (``dnsbl``, ``badmailfrom``, ``headers``, ``fcrdns``, ``spamassassin``…; and karma itself
for odd envelope syntax and spammy sender TLDs). When the connection ends, karma records the
verdict in a per-IP history: a connection whose karma is below -2 counts as naughty, above 2 as
nice. A client that has then been naughty more often than nice (by ``negative``) is in the
penalty box for ``penalty_days``: its connections are refused at connect (or, with ``reject
naughty``, by the ``naughty`` plugin). A client with no nice message and a history below -5
gets a longer penalty: one more day per naughty message (the "penalty box bonus").

Arguments: ``key value`` pairs, all optional:
  ``negative N``           how far nice − naughty may fall before a naughty message sends
                           the client to the penalty box (default 1)
  ``penalty_days D``       days in the penalty box (default 1; fractions allowed)
  ``reject 0|1|connect|naughty``  ``naughty`` (default): leave the refusal to the ``naughty``
                           plugin; ``1`` or ``connect``: refuse at connect; ``0``: log only
  ``reject_type T``        ``disconnect`` (default), ``perm``, ``temp``, ``temp_disconnect``
  ``db_dir DIR``           the directory of the file database ``karma.sqlite`` (default: the
                           first that exists of ``/var/lib/qpsmtpd/karma``, ``<program
                           dir>/var/db``, ``<program dir>/config``, ``.``)
  ``nfslock 0|1``          1: the file database is on NFS (SQLite's rollback journal)
  ``strikes N``            accepted and unused, as in 0.94
  ``loglevel L``           per-plugin log level
  ``redis_url URL``        ours: keep the history in Redis (``redis://HOST[:PORT][/DB]``),
                           shared by several processes or hosts; the config file
                           ``redis_server`` does the same when this argument is not given
  ``redis_timeout S``      ours: seconds to wait for Redis (default 3)
  ``expire_days D``        ours: days a client's record is kept after its last change
                           (default 60; longer while a penalty lasts)
A bad value or an unknown key stops start-up.

Config files: ``redis_server``.

The database: key ``karma:<ip as an integer>`` (qpsmtpd's key), value ``<penalty start>:
<naughty>:<nice>:<connects>`` (``qpsmtpd_tx/karma_db.py``), every record with a TTL; the
file store (SQLite) is safe with ``--workers``. ``qpsmtpd-tx karma`` lists and edits it (qpsmtpd's
``karma_tool``: ``list``, ``search``, ``capture``, ``release``, ``prune``).

Hooks, as qpsmtpd 0.94:
  pre-connection  sets connection note ``karma_history`` (nice − naughty, 0 when unknown)
  connect         sets ``karma`` 0 (+1 for a history above 10) and ``karma_history``;
                  a client in the penalty box: ``550 You were naughty. You cannot connect
                  for 0.99 more days.`` and the connection is closed (per ``reject`` and
                  ``reject_type``); relay clients and whitelisted hosts are never refused
  mail, rcpt      ``karma`` −2 for an envelope address without ``FROM:<`` / ``TO:<``; at
                  MAIL, −4 for senders in .info/.pw, −3 .tw/.biz, −2 .cl .br .fr .be .jp
                  .no .se .sg (0.94's table)
  rcpt            a second recipient in a transaction from a client whose ``karma`` and
                  ``karma_history`` are both 0 or less: ``450 too many recipients for karma
                  K (h: H)``
  data, data_post ``karma`` below -4: ``very bad karma: K`` (per ``reject``/``reject_type``:
                  ``554``/``552`` and close by default); skipped when the connection is
                  already ``naughty``; decided per recipient (below)
  disconnect      records the verdict (only when ``karma`` is not 0)

Per-recipient settings (recipient notes, see README "Per-recipient policy"): ``karma_reject``
(``0``, ``1``, ``naughty``; default the ``reject`` argument, ``connect`` counting as ``1``)
and ``karma_reject_type`` (default ``reject_type``), for the refusal at data and data_post;
strictest: ``1``, then ``naughty``, then ``0``, and a permanent type. With ``recipient_policy
split`` (the default) a client with very bad karma is refused for the recipients whose
``karma_reject`` is ``1`` (their copy quarantined, at data_post; see README) and its message
goes on for the ``0`` ones; ``naughty`` leaves it to the ``naughty`` plugin, which refuses
the whole message. The penalty box at connect has no recipients: the arguments apply.

Notes: reads and writes the connection notes ``karma`` and ``karma_history``; with ``reject
naughty`` sets ``naughty`` and ``naughty_reject_type``. Relay clients, whitelisted hosts
(``whitelisthost``) and senders (``whitelistsender``) are exempt from the refusals.

When the database cannot be used (Redis down, a file that cannot be written) the client is
treated as unknown and the reason logged at LOGERROR (once: while the same error goes on, at
LOGINFO for each connection).

Differences from qpsmtpd 0.94, on purpose:
- 0.94 never counts a naughty connection (its ``naughty`` field stays 0: only ``karma_tool
  capture`` raises it), so nice − naughty cannot fall below -1 and the bonus never happens;
  here each naughty connection is counted, as its documentation says.
- 0.94 refuses the second recipient with ``550``, which bounces mail of new senders to
  several recipients (qpsmtpd issue #267); here it is ``450``, and the client sends that
  recipient again in another transaction.
- 0.94 ignores ``db_dir`` (it reads ``$self->{args}``, not ``_args``); here it is used, and
  one that is not a directory stops start-up. Records expire (``expire_days``); 0.94 kept them
  for ever.
"""

from twisted.internet import reactor

from qpsmtpd_tx import karma_db
from qpsmtpd_tx.codes import DECLINED, DENYSOFT, LOGDEBUG, LOGERROR, LOGINFO
from qpsmtpd_tx.karma_db import DAY, Record
from qpsmtpd_tx.kvstore import StoreError, qpsmtpd_db_dirs
from qpsmtpd_tx.kvstore.choose import ARGUMENTS as STORE_ARGUMENTS, open_store, plugin_store
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import REJECT_TYPES, positive

DB_FILE = "karma.sqlite"
KNOWN = {"negative", "penalty_days", "reject", "reject_type", "strikes", "expire_days"} \
    | STORE_ARGUMENTS
REJECTS = ("0", "1", "connect", "naughty")
#: the texts of a failed store: reading a client's history, recording a verdict
_STORE_FAILED = ("error, database failed: %s", "error, database failed, not recorded: %s")
SPAMMY_TLDS = dict([(tld, 4) for tld in ("info", "pw")] + [(tld, 3) for tld in ("tw", "biz")]
                   + [(tld, 2) for tld in ("cl", "br", "fr", "be", "jp", "no", "se", "sg")])


def karma_verdict(karma, negative, penalty_days, expire_days):
    """The disconnect update (see :meth:`qpsmtpd_tx.kvstore.Store.update`): records the
    connection's ``karma``; gives the log text."""
    def change(old, now):
        """The record with this connection counted; its TTL; the log text."""
        record = Record.parse(old)
        history = record.history
        if karma < -2:
            record.naughty += 1
            history -= 1
            if history <= -negative:
                bonus = ""
                if record.nice == 0 and history < -5:
                    bonus = ", penalty box bonus!"
                    record.penalty_start = int(now) + abs(history) * DAY
                else:
                    record.penalty_start = int(now)
                text = "negative, sent to penalty box" + bonus
            else:
                text = "negative"
        elif karma > 2:
            record.nice += 1
            text = "positive"
        else:
            text = "neutral"
        record.connects += 1
        return (record.format(), karma_db.ttl(record, now, expire_days, penalty_days),
                "%s, (msg: %s, his: %s)" % (text, karma, history))
    return change


def penalty_check(penalty_days, expire_days):
    """The connect update: counts a connection in the penalty box; gives ``(record or None,
    days left or None)``."""
    def change(old, now):
        """A connection in the penalty box is counted; others are not written."""
        if old is None:
            return None, None, (None, None)
        record = Record.parse(old)
        if not record.penalty_start:
            return None, None, (record, None)
        days_old = (now - record.penalty_start) / DAY
        if days_old >= penalty_days:
            return None, None, (record, None)
        record.connects += 1
        return (record.format(), karma_db.ttl(record, now, expire_days, penalty_days),
                (record, penalty_days - days_old))
    return change


class Karma(Plugin):
    """Per-IP history of naughty and nice connections, and the penalty box."""

    clock = reactor

    def init(self, args):
        """Check the arguments; choose and check the store."""
        options = self.parse_kv_args(args, KNOWN)
        self.negative = positive("negative", options.get("negative", "1"))
        self.penalty_days = positive("penalty_days", options.get("penalty_days", "1"))
        self.expire_days = positive("expire_days", options.get("expire_days",
                                                             str(karma_db.DEFAULT_EXPIRE_DAYS)))
        self.reject = options.get("reject", "naughty")
        if self.reject not in REJECTS:
            raise PluginError("reject must be one of %s, got %r" % ("|".join(REJECTS), self.reject))
        self.reject_type = options.get("reject_type", "disconnect")
        if self.reject_type.lower() not in REJECT_TYPES:
            raise PluginError("reject_type must be one of %s, got %r"
                              % ("|".join(REJECT_TYPES), self.reject_type))
        if "strikes" in options:
            positive("strikes", options["strikes"])
        self.store = plugin_store(self.config_scalar, options, DB_FILE,
                                  qpsmtpd_db_dirs("karma"))
        self.store.clock = self.clock
        open_store(self.store, self.server.check_only)
        if self.reject == "connect":
            self.reject = "1"       # the same refusal, in the per-recipient notes' terms
        self.read_reject_per_recipient("karma")

    def register(self, registry):
        """data and data_post share one handler."""
        registry.register("data", self, self.data_handler)
        registry.register("data_post", self, self.data_handler)

    def stop(self):
        """Close the store."""
        return self.store.close()

    async def _read(self, transaction, ip):
        """The stored record of ``ip`` (None: none, or the store failed, logged)."""
        try:
            value = await self.store.get(karma_db.key(ip))
        except StoreError as e:
            self._store_failed(e, _STORE_FAILED[0], transaction)
            return None
        self._store_works()
        return None if value is None else Record.parse(value)

    def _store_failed(self, error, text, transaction):
        """Log a failure of the store: at LOGERROR once, then at LOGINFO for each use while
        the same error goes on (a database down must not log an error per message)."""
        # one key per text: a connection meets the error with two texts (its read, its
        # verdict), which under one key would each count as a new problem every time
        self.log_once(("database", text), LOGERROR, text % (error,), transaction,
                      again=LOGINFO)

    def _store_works(self):
        """The store answered: its next failure is logged at LOGERROR again."""
        for text in _STORE_FAILED:
            self.problem_over(("database", text))

    def _calc_karma(self, transaction, record):
        """qpsmtpd's calc_karma: sets ``karma_history``; +1 karma above 10."""
        if not record.naughty and not record.nice:
            return 0
        history = record.history
        transaction.connection.notes["karma_history"] = history
        if history > 10:
            self.adjust_karma(transaction, 1)
        return history

    # -- hooks -----------------------------------------------------------------------------

    async def hook_pre_connection(self, transaction, remote_ip, *args):
        """pre-connection: the client's history into ``karma_history`` (for hosts_allow)."""
        transaction.connection.notes["karma_history"] = 0
        record = await self._read(transaction, remote_ip)
        if record is None:
            self.log(LOGDEBUG, "pass, no record", transaction)
        else:
            self._calc_karma(transaction, record)
        return DECLINED

    async def hook_connect(self, transaction):
        """connect: ``karma`` 0, the history, and the penalty box."""
        notes = transaction.connection.notes
        notes["karma"] = 0
        if self.is_immune(transaction):
            return DECLINED
        ip = transaction.connection.remote_ip
        try:
            record, left = await self.store.update(
                karma_db.key(ip), penalty_check(self.penalty_days, self.expire_days))
        except StoreError as e:
            self._store_failed(e, _STORE_FAILED[0], transaction)
            return DECLINED
        self._store_works()
        if record is None:
            self.log(LOGINFO, "pass, no record", transaction)
            return DECLINED
        summary = "%d naughty, %d nice, %d connects" % (record.naughty, record.nice,
                                                       record.connects)
        karma = self._calc_karma(transaction, record)
        if left is None:
            self.log(LOGINFO, "pass, %s (%s)" % ("penalty expired" if record.penalty_start
                                                 else "no penalty", summary), transaction)
            return DECLINED
        message = "You were naughty. You cannot connect for %.2f more days." % left
        return self.get_reject(transaction, message, str(karma) if karma else "")

    def hook_mail(self, transaction, sender, params):
        """MAIL: karma for an odd envelope and for spammy sender TLDs."""
        self._illegal_envelope_format(transaction, transaction.connection.notes.get("envelope_from"))
        host = (sender.host or "").lower() if sender is not None else ""
        for tld, score in SPAMMY_TLDS.items():
            if host.endswith("." + tld):
                self.log(LOGINFO, "penalizing .%s envelope sender" % tld, transaction)
                self.adjust_karma(transaction, -score)
        return DECLINED

    def hook_rcpt(self, transaction, recipient, params):
        """RCPT: one recipient per transaction for clients without good karma."""
        notes = transaction.connection.notes
        self._illegal_envelope_format(transaction, notes.get("envelope_rcpt"))
        if self.is_immune(transaction):
            return DECLINED
        count = len(transaction.recipients)
        if not count:
            self.log(LOGDEBUG, "info, no recipient count", transaction)
            return DECLINED
        self.log(LOGINFO, "recipients t: %d (%s)" % (count, recipient.format()), transaction)
        history = notes.get("karma_history") or 0
        if history > 0:
            self.log(LOGINFO, "info, good history", transaction)
            return DECLINED
        karma = notes.get("karma") or 0
        if karma > 0:
            self.log(LOGINFO, "info, good connection", transaction)
            return DECLINED
        return DENYSOFT, "too many recipients for karma %s (h: %s)" % (karma, history)

    def data_handler(self, transaction):
        """data and data_post: refuse a connection whose karma fell below -4."""
        if self.is_immune(transaction) or self.is_naughty(transaction):
            return DECLINED
        karma = transaction.connection.notes.get("karma") or 0
        if karma < -4:
            return self.get_reject(transaction, "very bad karma: %s" % karma)
        return DECLINED

    async def hook_disconnect(self, transaction):
        """disconnect: record the connection's verdict (when its karma is not 0)."""
        karma = transaction.connection.notes.get("karma")
        if not karma:
            self.log(LOGDEBUG, "no karma", transaction)
            return DECLINED
        ip = transaction.connection.remote_ip
        try:
            text = await self.store.update(karma_db.key(ip), karma_verdict(
                karma, self.negative, self.penalty_days, self.expire_days))
        except StoreError as e:
            self._store_failed(e, _STORE_FAILED[1], transaction)
            return DECLINED
        self._store_works()
        self.log(LOGINFO, text, transaction)
        return DECLINED

    def _illegal_envelope_format(self, transaction, text):
        """−2 karma for ``MAIL FROM: <a@b>`` and other forms RFC 5321 does not allow."""
        if text is None:
            return
        upper = text.upper()
        if not upper.startswith("FROM:<") and not upper.startswith("TO:<"):
            self.log(LOGINFO, "illegal envelope address format: %s" % text, transaction)
            self.adjust_karma(transaction, -2)

