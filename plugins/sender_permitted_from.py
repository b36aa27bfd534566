"""sender_permitted_from — check the sender's SPF policy (RFC 7208) and act on its result.

At MAIL FROM the client's address is checked against the SPF record of the sender's domain
(``check_host()``, :mod:`qpsmtpd_tx.spf`: pyspf's evaluator, every lookup made through the
connection's resolver, so its cache and ``dns_budget`` apply; RFC 7208's limits of 10 DNS
terms and 2 void lookups hold). The result is acted on as the ``reject`` level says, written
into the message as a ``Received-SPF`` header field (at the top, at data_post) and into the
message's Authentication-Results field (``spf=pass smtp.mailfrom=example.com``).

Arguments (``key value`` pairs, all optional; qpsmtpd's names):
  ``reject N``     what is refused, qpsmtpd's levels (default: the config file
                   ``spfbehavior``, else 0, which only annotates, as 1 does):

                   ======  ===========================================================
                   level   refused
                   ======  ===========================================================
                   1       nothing: the header field only
                   2       also ``450`` on DNS failures (temperror) and on ``fail``
                   3       ``550`` on ``fail``; ``450`` on ``softfail``
                   4       also ``550`` on ``softfail``; ``450`` on ``permerror``
                   5       also ``550`` on ``neutral``
                   6       also ``550`` on ``none`` (no record) and ``permerror``
                   ======  ===========================================================
  ``spf_deny 1|2`` qpsmtpd's older name: 1 is ``reject 3``, 2 ``reject 4``.
  ``timeout S``    the longest one check may wait for DNS, in seconds (default 20, RFC 7208
                   4.6.4's minimum); a lookup beyond it makes the result ``temperror``.
  ``loglevel L``   per-plugin log level.

Config files: ``spfbehavior`` (the reject level when the plugin line gives none).

Per-recipient setting (recipient note, README "Per-recipient policy"): ``spf_reject``, a
level from 0 to 6 for that recipient, applied at the end of DATA (the MAIL FROM result kept
in ``spfquery``; the level of the plugin line or ``spfbehavior`` has already been applied at
MAIL FROM, so a note can only be stricter). With ``recipient_policy split`` the message is
refused for the recipients whose level refuses the result and goes on for the others (a
temporary refusal defers the whole message). Strictest = the highest level.

Replies (to MAIL FROM), ``why`` being Mail::SPF's explanation as 0.94 shows it
(``example.com: Sender is not authorized by default to use 'a@example.com' in 'mfrom'
identity (mechanism '-all' matched)``): ``550 SPF - forgery: why`` (fail), ``450 SPF - fail:
why`` (fail at level 2, softfail at 3), ``550 SPF - fail: why`` (softfail),
``550 SPF - neutral: why``, ``550 SPF - none: why``, ``450``/``550 SPF - permerror: why``,
``450 SPF - temperror: why``.

Notes: transaction ``spfquery`` (the :class:`~qpsmtpd_tx.spf.SPFResult`), ``spf_pass_host``
(the sender's domain, lower case, on pass), ``dmarc_spf`` (``{domain, scope, result}`` for
the DMARC plugin). Karma: +1 on pass, -1 on fail and softfail. Relay clients and whitelisted
hosts and senders are not checked (``dmarc_spf`` says pass, as in 0.94) and get no header.

The HELO identity (RFC 7208 2.3 and 2.4), where the HELO/EHLO name is a domain name:
  - for a null sender (``MAIL FROM:<>``) the identity checked is ``postmaster@<helo>``, with
    the levels above and ``identity=helo`` in the header field (qpsmtpd 0.94 skips null
    senders: bounces from a host whose name has ``-all`` are refused at level 3 and above);
  - for other senders the HELO name's own record is checked first; its ``fail`` is conclusive (RFC 7208 2.3): at a level that refuses ``fail`` the
    reply is the fail reply for the HELO identity, and MAIL FROM is not checked. Any other
    HELO result changes nothing. Only hosts that publish a record for their own name are
    concerned (qpsmtpd 0.94 does not check it).

A result is reused for the same sender and HELO name on the same connection for 60 seconds
(not a temperror): a client sending many messages is checked once a minute, not per message.

Other differences from qpsmtpd 0.94, intended:
  - A temperror (a DNS failure) is answered ``450`` from level 2 up, as 0.94 documents; 0.94
    itself matches ``temperror`` with its permerror test (``/(?:permerror|error)/``), so it
    lets it through at levels 2 and 3 and refuses it for good (``550``) at level 6.
  - Only ``v=spf1`` records (RFC 7208); 0.94 (Mail::SPF) also reads Sender ID's
    ``spf2.0/mfrom``. permerror texts are pyspf's (``Unknown mechanism found: foo``), not
    Mail::SPF's; the other texts are Mail::SPF's.
  - ``receiver=`` in the header field is our ``me`` (0.94: the system's host name).
  - The check has a time limit (``timeout``) and never blocks the server.
  - An SPF record longer than 4096 characters (``qpsmtpd_tx.spf.MAX_RECORD``; RFC 7208 3.4
    asks for 512 bytes) is a permerror, ``SPF record at <domain> is <n> characters long (at
    most 4096 are read)``: reading such records again after each DNS round trip cost up to
    1.7 s of CPU per check. An explanation (``exp=``) record longer than 1024 characters
    (``MAX_EXPLANATION``) is ignored, as RFC 7208 6.2 ignores an unusable one: expanding
    60 KB of macros cost 7.5 s. Mail::SPF reads any length.
  - A target name with a label of more than 63 characters (written so, or made by a
    macro), which no DNS query can ask for, is a name that does not exist (RFC 7208 4.8
    leaves it undefined; the RFC 7208 suite's ``invalid-domain-long`` tests call it
    non-existent): ``a``, ``mx``, ``exists`` do not match and count a void lookup,
    ``ptr`` does not match, ``include`` and ``redirect=`` are a permerror (RFC 7208 5.2,
    6.1), ``exp=`` is ignored (6.2). Mail::SPF cuts the label to 63 characters and looks
    up that other name: where it exists, its result differs.
  - Where the RFC 7208 suite or text and Mail::SPF (RFC 4408) part, RFC 7208 wins: more
    than 10 MX names are a permerror (Mail::SPF uses the first 10); a malformed macro is a
    syntax error of the whole record (Mail::SPF sees it only in a term it reaches); void
    lookups are counted by term (Mail::SPF counts each address query of an ``mx``'s
    names); ``%{dR}`` is ``%{dr}`` (Mail::SPF refuses it); ``%{l-}`` of ``x-y`` is
    ``x.y`` (Mail::SPF: ``x-y``); an IPv4 client never matches ``ip6`` (Mail::SPF compares
    its IPv4-mapped form); a HELO check's ``%{s}`` is ``postmaster@<helo>`` (Mail::SPF: the
    HELO name); a ``ptr`` whose PTR lookup fails does not match (Mail::SPF: temperror).
    The differential test (tests/test_spf_differential.py) lists these classes.
"""

from qpsmtpd_tx.codes import DECLINED, DENY, DENYSOFT, LOGDEBUG, LOGERROR, LOGINFO
from qpsmtpd_tx.hook_result import then
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import positive
from qpsmtpd_tx.policy import Setting
from qpsmtpd_tx.spf import DEFAULT_TIMEOUT, check_host, is_domain


def verdict(result, reject):
    """``(code, message)`` for an SPF ``result`` at ``reject`` level; ``DECLINED`` when it
    passes; the message is what 0.94 answers (``why`` is the result's explanation)."""
    code, why = result.result, result.local_explanation()
    if code == "fail":
        if reject >= 3:
            return DENY, "SPF - forgery: %s" % why
        if reject >= 2:
            return DENYSOFT, "SPF - fail: %s" % why
    elif code == "softfail":
        if reject >= 4:
            return DENY, "SPF - fail: %s" % why
        if reject >= 3:
            return DENYSOFT, "SPF - fail: %s" % why
    elif code == "neutral":
        if reject >= 5:
            return DENY, "SPF - neutral: %s" % why
    elif code == "none":
        if reject >= 6:
            return DENY, "SPF - none: %s" % why
    elif code == "permerror":
        if reject >= 6:
            return DENY, "SPF - permerror: %s" % why
        if reject > 3:
            return DENYSOFT, "SPF - permerror: %s" % why
    elif code == "temperror":
        if reject >= 2:
            return DENYSOFT, "SPF - temperror: %s" % why
    return DECLINED


#: a connection's next check of the same sender and HELO name within this many seconds reuses
#: the result (bulk senders send many messages per connection); well below usual DNS TTLs
REUSE_SECONDS = 60
#: results kept per connection
REUSE_ENTRIES = 20


def spf_level(text):
    """An ``spf_reject`` note: a level from 0 to 6 (ValueError otherwise)."""
    value = int(str(text).strip())
    if not 0 <= value <= 6:
        raise ValueError(text)
    return value


class SenderPermittedFrom(Plugin):
    """Checks the sender's SPF record at MAIL FROM; adds Received-SPF at data_post."""

    recipient_settings = (Setting("spf_reject", None, None, spf_level, max),)

    KNOWN = ("reject", "spf_deny", "timeout")

    def init(self, args):
        arguments = self.parse_kv_args(list(args), self.KNOWN)
        self.reject = None
        if "reject" in arguments:
            self.reject = self._level("reject", arguments["reject"])
        deny = arguments.get("spf_deny")
        if deny is not None:
            if deny not in ("0", "1", "2"):
                raise PluginError("spf_deny must be 0, 1 or 2, got %r" % (deny,))
            if deny != "0":
                self.reject = {"1": 3, "2": 4}[deny]
        self.timeout = positive("timeout", arguments.get("timeout", str(DEFAULT_TIMEOUT)))
        self.level()    # a spfbehavior file that cannot be read stops start-up

    @staticmethod
    def _level(name, text):
        if not text.isdigit() or int(text) > 6:
            raise PluginError("%s must be a level from 0 to 6, got %r" % (name, text))
        return int(text)

    def level(self):
        """The reject level in force: the argument, else the ``spfbehavior`` config file."""
        if self.reject:
            return self.reject
        behavior = (self.config_scalar("spfbehavior") or "").strip()
        if behavior.isdigit():
            return min(int(behavior), 6)
        return 0

    def hook_mail(self, transaction, sender, params):
        if self.is_immune(transaction):
            transaction.notes["dmarc_spf"] = {"domain": sender.host, "scope": "mfrom",
                                              "result": "pass"}
            self.log(LOGINFO, "skip, relay client or whitelisted", transaction)
            return DECLINED
        connection = transaction.connection
        helo = connection.hello_host
        if not is_domain(helo):
            helo = None
        if not sender.user or not sender.host:
            if helo is None:
                self.log(LOGINFO, "skip, null sender", transaction)
                transaction.notes["dmarc_spf"] = {"scope": "helo", "result": "none"}
                return DECLINED, "SPF - null sender"
            return then(self._check(transaction, "", helo), self._decide, transaction, "helo",
                        helo)
        mailfrom = "%s@%s" % (sender.user, sender.host.lower())
        transaction.notes["dmarc_spf"] = {"domain": sender.host, "scope": "mfrom",
                                          "result": "none"}
        reused = self._reused(connection, mailfrom, helo)
        if reused is not None:      # the usual message on a connection: nothing to check
            return self._after_helo(reused[0], transaction, mailfrom, helo, sender.host,
                                    reused[1])
        return then(self._helo_result(transaction, helo), self._after_helo, transaction,
                    mailfrom, helo, sender.host)

    @staticmethod
    def _reused(connection, mailfrom, helo):
        """``(HELO result or None, MAIL FROM result)`` when :meth:`_check` would reuse
        both (the HELO identity's only if ``helo`` is given), else None: one look at the
        clock and the connection's results for the two."""
        cache = connection.notes.get("spf_results")
        if not cache:
            return None
        helo_key = (helo or connection.hello_host or "").lower()
        now = connection.dns.clock.seconds()
        mfrom = cache.get((mailfrom.lower(), helo_key))
        if mfrom is None or mfrom[0] <= now:
            return None
        if helo is None:
            return None, mfrom[1]
        helo_entry = cache.get(("", helo_key))
        if helo_entry is None or helo_entry[0] <= now:
            return None
        return helo_entry[1], mfrom[1]

    def _check(self, transaction, mailfrom, helo):
        """check_host for ``mailfrom`` (empty: the HELO identity) and ``helo``; a result
        (not a temperror) is reused on the connection for :data:`REUSE_SECONDS`: then it is
        returned at once (the usual message), else a Deferred of it."""
        connection = transaction.connection
        cache = connection.notes.setdefault("spf_results", {})
        helo = helo or connection.hello_host or ""
        key = (mailfrom.lower(), helo.lower())
        now = connection.dns.clock.seconds()
        cached = cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        d = check_host(connection.dns, connection.remote_ip, mailfrom, helo,
                       receiver=self.server.me, timeout=self.timeout)

        def keep(result):
            self.log(LOGDEBUG, "checked %s: %s (%d lookups, %d runs)"
                     % (mailfrom or "helo " + helo, result.result, result.lookups, result.runs),
                     transaction)
            if result.result != "temperror":
                cache.pop(key, None)
                cache[key] = (now + REUSE_SECONDS, result)
                while len(cache) > REUSE_ENTRIES:
                    del cache[next(iter(cache))]
            return result
        return d.addCallback(keep)

    def _helo_result(self, transaction, helo):
        """The HELO identity's result (None without a HELO domain name), or a Deferred of it."""
        if helo is None:
            return None
        return self._check(transaction, "", helo)

    def _after_helo(self, helo_result, transaction, mailfrom, helo, domain, result=None):
        """The answer once the HELO identity's result is known; ``result``: the MAIL FROM
        identity's if it is known too (reused)."""
        if helo_result is not None and helo_result.result == "fail":
            reply = verdict(helo_result, self.level())
            if reply is not DECLINED:
                transaction.notes["dmarc_spf"] = {"domain": helo, "scope": "helo",
                                                  "result": "fail"}
                return self._decide(helo_result, transaction, "helo", helo)
        if result is not None:
            return self._decide(result, transaction, "mfrom", domain)
        return then(self._check(transaction, mailfrom, helo), self._decide, transaction,
                    "mfrom", domain)

    def _decide(self, result, transaction, scope, domain):
        transaction.notes["spfquery"] = result
        transaction.notes["dmarc_spf"] = {"domain": domain, "scope": scope,
                                          "result": result.result}
        prop = "smtp.mailfrom" if scope == "mfrom" else "smtp.helo"
        self.store_auth_results(transaction, "spf=%s %s=%s" % (result.result, prop, domain))
        code = result.result
        if code == "pass":
            self.adjust_karma(transaction, 1)
            transaction.notes["spf_pass_host"] = domain.lower()
            if self.log_enabled(LOGINFO):   # (the usual message: its line not logged)
                self.log(LOGINFO, "pass, %s" % result.local_explanation(), transaction)
            return DECLINED
        why = result.local_explanation()
        if code in ("fail", "softfail"):
            self.adjust_karma(transaction, -1)
        reject = self.level()
        if not reject:
            self.log(LOGINFO, "skip, tolerated (%s: %s)" % (code, why), transaction)
            return DECLINED, "SPF - %s: %s" % (code, why)
        reply = verdict(result, reject)
        if reply is DECLINED:
            self.log(LOGINFO, "fail, tolerated, %s, %s" % (code, why), transaction)
        else:
            self.log(LOGINFO, "fail, %s, %s" % (code, why), transaction)
        return reply

    def hook_data_post(self, transaction):
        result = transaction.notes.get("spfquery")
        if result is None or self.is_immune(transaction):
            return DECLINED
        if transaction.header is None:
            self.log(LOGERROR, "missing headers!", transaction)
            return DECLINED
        transaction.header.add_field("Received-SPF", result.received_spf_field(self.server.me),
                                     prepend=True)
        if result.result == "pass":     # accepted at every level: no recipient's note matters
            return DECLINED
        return self.per_recipient_result(transaction, [
            (recipients, self._data_verdict(transaction, result, values["spf_reject"]))
            for values, recipients in self.recipient_groups(transaction)])

    def _data_verdict(self, transaction, result, level):
        """The result for recipients whose ``spf_reject`` note is ``level`` (None: no note,
        MAIL FROM has applied the plugin's level)."""
        if level is None:
            return DECLINED
        reply = verdict(result, level)
        if reply is not DECLINED:
            self.log(LOGINFO, "fail at data time, level %d, %s" % (level, result.result),
                     transaction)
        return reply
