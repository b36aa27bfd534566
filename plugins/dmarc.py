"""dmarc — apply the From domain's DMARC policy (RFC 7489) at data_post.

Load it after ``sender_permitted_from`` and ``dkim`` (it reads their results) and have those
two not refuse what DMARC should decide (qpsmtpd's advice: ``reject 0`` or low levels).

For a message not from a relay client: the From field's domain (one From field with one
address whose domain is a domain name written as such, else refused); its policy is the TXT
record ``v=DMARC1`` at ``_dmarc.<domain>``, or, if there is none, at
``_dmarc.<organizational domain>`` (the registrable domain by the Public Suffix List),
where ``sp=`` (default ``p=``) applies. The message passes if a DKIM signature that passed
has an aligned ``d=`` or SPF passed for an aligned MAIL FROM (or HELO) domain;
``adkim``/``aspf`` ``r`` (default: same organizational domain) or ``s`` (same name). A failing
message gets the policy, but only ``pct=`` percent of them do: the others get the next less
strict one (reject → quarantine → none).

Read from the other plugins (transaction notes): ``dkim_pass_domains`` (the dkim plugin: the
``d=`` domains of the signatures that passed) and ``dmarc_spf`` (sender_permitted_from, as in
qpsmtpd 0.94: ``{"domain": …, "scope": "mfrom"|"helo", "result": "pass"|…}``).

Result: one entry in the Authentication-Results field, ``dmarc=pass|fail (p=P sp=S dis=D)
header.from=<domain>``, ``dmarc=none header.from=<domain>`` without a policy, or
``dmarc=temperror`` when the DNS could not answer (the message is then accepted);
transaction note ``dmarc_result`` (``pass``, ``fail``, ``none``, ``temperror``).

Per-recipient settings (recipient notes, README "Per-recipient policy"): ``dmarc_reject``
(``0``, ``1``, ``naughty``) and ``dmarc_reject_type`` override ``reject`` and ``reject_type`` for
that recipient (note → argument → default); with ``recipient_policy split`` the message is
refused for the recipients whose level refuses it and goes on for the others.

Replies (data_post, default ``reject_type``), as qpsmtpd 0.94: disposition ``reject`` or
``quarantine`` → ``552 failed DMARC policy`` (karma −3); no From field → ``552 empty from
address, null sender?``; a From field without a domain → ``552 unparseable from header``; all
subject to ``reject`` (whitelisted hosts and senders are never refused).

Arguments (``key value`` pairs, all optional):
  ``reject 0|1|naughty``  ``1`` (default) refuses as above, ``0`` only logs, ``naughty``
                       leaves it to the naughty plugin.
  ``reject_type perm|temp|…``  (default ``perm``).
  ``timeout SECONDS``  the longest wait for a ``_dmarc`` record (default 5).
  ``loglevel LEVEL``

Config: ``public_suffix_list`` (optional): rules in the Public Suffix List's format that
replace the list of the ``publicsuffixlist`` package (for private top-level domains, or a
newer copy of the list).

Config ``arc_trusted_sealers`` (optional; default none, so no override): forwarders' ARC
sealing domains (the ``d=`` of their ARC-Seal), one a line, that the operator trusts
(RFC 7489 section 6.7 local policy, RFC 8617 section 7.2). A failing message whose
disposition is ``reject`` or ``quarantine`` is accepted instead when its ARC chain validates
(``arc=pass``) and a listed sealer's ARC-Authentication-Results says ``dmarc=pass`` for the
same From domain, or, if it has no dmarc result, an aligned ``dkim=pass`` (``header.d``) or
``spf=pass`` (``smtp.mailfrom``) (:mod:`qpsmtpd_tx.arc_override`). The entry then reads
``dmarc=fail (p=reject sp=reject dis=none, overridden by trusted ARC sealer lists.example
i=1: dmarc=pass) header.from=<domain>`` (the result stays ``fail``: the override is local
policy, RFC 7489's ``trusted_forwarder``), the log line ``fail, reject, policy reject,
overridden by …``, and the transaction note ``dmarc_arc_override`` the sealer. When no
sealer vouches, the log says why (``no override: ARC chain fail (…)``, ``… no trusted ARC
sealer``, ``… did not find it passing``) and the policy applies as usual (also per
recipient). The chain is checked here, once per message (the ``arc`` plugin, if loaded,
reuses it). A chain whose keys cannot be fetched now (``temperror``) gives no override; if
a listed sealer is in it, the refusal is made temporary instead (``perm`` → ``temp``,
``disconnect`` → ``temp_disconnect``; reply ``failed DMARC policy, trusted ARC sealer not
verifiable now``, log ``deferred: trusted ARC sealer … not verifiable now``), so that the
forwarder retries rather than gets a bounce its sealer might have prevented.
A line that is not a domain name stops start-up, naming the file and line.

Differences from qpsmtpd 0.94, intended: the ARC override above (0.94 has no ARC); no
aggregate or failure reports (``rua``/``ruf`` are not acted on); several From addresses or
fields are refused (0.94's TODO), and so is a From field longer than 4096 characters
(``qpsmtpd_tx.dmarc_policy.MAX_FROM``: the address parser's cost) or one whose address
Python's parser reads with a domain that is no domain name or is not written in the field
(``a@bank.example x`` reads as ``bank.examplex``, ``a@bank.example\\`` keeps the
backslash: a reader shows ``bank.example``, whose policy would not be checked); the
Authentication-Results entry is complete (0.94 overwrote ``dmarc=…`` with the policy text)
and is written also without a policy (``dmarc=none``); a DNS failure is ``temperror``.
"""

from twisted.internet import defer

from qpsmtpd_tx import arc_check, arc_override, dmarc_policy
from qpsmtpd_tx.codes import DECLINED, LOGINFO
from qpsmtpd_tx.dns import DNSError
from qpsmtpd_tx.plugin import Plugin
from qpsmtpd_tx.plugin_args import positive, reject_settings

#: the config file naming the trusted ARC sealers
TRUSTED_SEALERS = "arc_trusted_sealers"
#: the reply when a trusted sealer's chain could not be checked now
UNCHECKED_SEALER = "failed DMARC policy, trusted ARC sealer not verifiable now"


class DMARCPlugin(Plugin):
    """Applies the From domain's DMARC policy at data_post."""

    KNOWN = ("reject", "reject_type", "timeout")

    def init(self, args):
        arguments = self.parse_kv_args(list(args), self.KNOWN)
        self.reject, self.reject_type = reject_settings(arguments)
        self.read_reject_per_recipient("dmarc")
        self.timeout = positive("timeout", arguments.get("timeout", "5"))
        #: ``(config, its generation, (suffix list, trusted sealers))`` last read
        self._kept_settings = None
        #: ``(DNS answer, its DMARC record)`` last read: the same answer object (a cached
        #: one) gives the same record; one entry, so bounded whatever clients send
        self._last_answer = (None, None)
        self.settings(None)

    def trusted_sealers(self, transaction):
        """The ARC sealer domains whose results may override a DMARC failure."""
        return self.parsed_config(TRUSTED_SEALERS, arc_override.trusted_parser, transaction)

    def suffixes(self, transaction):
        """The Public Suffix List in use."""
        return self.parsed_config(
            "public_suffix_list",
            lambda lines: dmarc_policy.suffix_list([l.text for l in lines] if lines else None),
            transaction)

    def settings(self, transaction):
        """``(Public Suffix List, trusted ARC sealers)`` in force: :meth:`suffixes` and
        :meth:`trusted_sealers`, asked again only once the config changed (a reload, a
        config hook), as :meth:`parsed_config` itself would."""
        config = self.server.config
        kept = self._kept_settings
        if kept is not None and kept[0] is config and kept[1] == config.generation:
            return kept[2]
        settings = (self.suffixes(transaction), self.trusted_sealers(transaction))
        self._kept_settings = (config, config.generation, settings)
        return settings

    def hook_data_post(self, transaction):
        if transaction.connection.relay_client:
            self.log(LOGINFO, "skip, relay client", transaction)
            return DECLINED
        header = transaction.header
        froms = header.get("From") if header is not None else []
        if not froms:
            self.log(LOGINFO, "skip, null sender", transaction)
            return self._refuse(transaction, "empty from address, null sender?")
        domain = dmarc_policy.from_domain(tuple(froms))
        if domain is None:
            self.log(LOGINFO, "unparseable from header: %s" % " / ".join(froms), transaction)
            return self._refuse(transaction, "unparseable from header")
        psl, trusted = self.settings(transaction)
        found = self._cached_policy(transaction.connection.dns, domain, psl)
        if found is not None:   # the usual message: its records are cached, no Deferred
            return self._apply(transaction, domain, psl, trusted, found)
        return defer.Deferred.fromCoroutine(
            self._fetch_and_apply(transaction, domain, psl, trusted))

    async def _fetch_and_apply(self, transaction, domain, psl, trusted):
        dns = transaction.connection.dns
        try:
            record = await self._record(dns, domain)
            from_org = False
            if record is None:
                org_domain = dmarc_policy.organizational_domain(domain, psl)
                if org_domain != domain:
                    record = await self._record(dns, org_domain)
                    from_org = True
            found = (record, from_org)
        except DNSError as e:
            found = e
        result = self._apply(transaction, domain, psl, trusted, found)
        if isinstance(result, defer.Deferred):
            result = await result
        return result

    def _apply(self, transaction, domain, psl, trusted, found):
        """The answer for ``found``: ``(record or None, whether it is the organizational
        domain's)`` or the DNSError that kept it from being known; a Deferred only when a
        ``trusted`` ARC sealer's chain has to be checked."""
        if isinstance(found, DNSError):
            transaction.notes["dmarc_result"] = "temperror"
            self.store_auth_results(transaction, "dmarc=temperror header.from=%s" % domain)
            self.log(LOGINFO, "skip, DNS error: %s" % found, transaction)
            return DECLINED
        record, from_org = found
        if record is None:
            transaction.notes["dmarc_result"] = "none"
            self.store_auth_results(transaction, "dmarc=none header.from=%s" % domain)
            self.log(LOGINFO, "skip, no policy", transaction)
            return DECLINED
        spf = transaction.notes.get("dmarc_spf") or {}
        verdict = dmarc_policy.evaluate(
            record, domain, from_org, transaction.notes.get("dkim_pass_domains", ()),
            (spf.get("domain"), spf.get("result")) if spf.get("domain") else None, psl)
        transaction.notes["dmarc_result"] = verdict.result
        if verdict.disposition != "none" and trusted:
            # a coroutine started here keeps the hook's context (log lines, stored results)
            return defer.Deferred.fromCoroutine(
                self._with_arc(transaction, domain, psl, record, verdict, trusted))
        return self._decide(transaction, domain, record, verdict, None, None)

    async def _with_arc(self, transaction, domain, psl, record, verdict, trusted):
        """:meth:`_decide` once the ARC chain is checked: a trusted sealer may vouch."""
        checked = await arc_check.check(self.server, transaction, self.timeout)
        vouch, why_not = arc_override.vouching_sealer(checked, trusted, domain, record, psl)
        if why_not:
            self.log(LOGINFO, "no override: %s" % why_not, transaction)
        unchecked = arc_override.unchecked_trusted_sealer(checked, trusted)
        return self._decide(transaction, domain, record, verdict, vouch, unchecked)

    def _decide(self, transaction, domain, record, verdict, vouch, unchecked):
        """Store the entry, log, and answer for ``verdict``; ``vouch``: the trusted sealer
        that overrides a failure, ``unchecked``: one whose chain could not be checked now."""
        self.store_auth_results(transaction, "dmarc=%s (p=%s sp=%s dis=%s%s) header.from=%s" % (
            verdict.result, record.p, record.sp, "none" if vouch else verdict.disposition,
            ", %s" % vouch.comment() if vouch else "", domain))
        if verdict.result == "pass":
            if not self.log_enabled(LOGINFO):
                return DECLINED
            self.log(LOGINFO, "pass, aligned: %s" % ", ".join(
                ["dkim %s" % d for d in verdict.dkim_domains]
                + (["spf %s" % verdict.spf_domain] if verdict.spf_domain else [])), transaction)
            return DECLINED
        if vouch is not None:
            transaction.notes["dmarc_arc_override"] = vouch.domain
            self.log(LOGINFO, "fail, %s, policy %s, %s" % (
                verdict.disposition, verdict.policy, vouch.comment()), transaction)
            return DECLINED
        self.log(LOGINFO, "fail, %s, policy %s" % (
            "tolerated" if verdict.disposition == "none" else verdict.disposition,
            verdict.policy), transaction)
        if verdict.disposition == "none" or self.is_immune(transaction):
            return DECLINED
        if unchecked is not None:
            # the trusted sealer in the chain might vouch once its key can be fetched
            self.log(LOGINFO, "deferred: trusted ARC sealer %s not verifiable now" % unchecked,
                     transaction)
            return self.get_reject(transaction, UNCHECKED_SEALER, UNCHECKED_SEALER,
                                   temporary=True)
        self.adjust_karma(transaction, -3)
        return self._refuse(transaction, "failed DMARC policy")

    def _cached_policy(self, dns, domain, psl):
        """What :meth:`_fetch_and_apply` would find, at once from the DNS cache; None if a
        record it needs is not cached. (The organizational domain is only needed when the
        From domain has no record of its own.)"""
        record = self._cached_record(dns, domain)
        from_org = False
        if record is None:
            org_domain = dmarc_policy.organizational_domain(domain, psl)
            if org_domain != domain:
                record = self._cached_record(dns, org_domain)
                from_org = True
        if record is _NOT_CACHED:
            return None
        return record if isinstance(record, DNSError) else (record, from_org)

    def _cached_record(self, dns, domain):
        """What :meth:`_record` would give for ``domain`` (the record, or None), or the
        DNSError it would raise, from the DNS cache; ``_NOT_CACHED`` if the cache has no
        answer."""
        outcome = dns.cached("_dmarc." + domain, "TXT")
        if outcome is None:
            return _NOT_CACHED
        if isinstance(outcome, DNSError):
            return None if outcome.no_record else outcome
        last = self._last_answer
        if last[0] is outcome:      # the cache's answer for the last message's domain
            return last[1]
        record = dmarc_policy.select_record(outcome.records)
        self._last_answer = (outcome, record)
        return record

    async def _record(self, dns, domain):
        """The DMARC record at ``_dmarc.<domain>``, None if there is none."""
        try:
            answer = await dns.txt("_dmarc." + domain, timeout=self.timeout)
        except DNSError as e:
            if e.no_record:
                return None
            raise
        return dmarc_policy.select_record(answer.records)

    def _refuse(self, transaction, message):
        if self.is_immune(transaction):
            return DECLINED
        return self.get_reject(transaction, message, message)


_NOT_CACHED = object()

