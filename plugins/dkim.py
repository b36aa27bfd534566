"""dkim — check the DKIM signatures of incoming messages; sign messages from relay clients.

At data_post, a message from a relay client (``relayclients``, or an authenticated user) is
signed; any other message (unless whitelisted) has its signatures checked.

Checking (RFC 6376): every DKIM-Signature field, up to ``max_signatures``, is checked on its
own: ``rsa-sha256`` and ``ed25519-sha256`` (RFC 8463); ``rsa-sha1`` and RSA keys under 1024
bits are refused (RFC 8301, result ``policy``); ``l=`` hashes only that many body bytes (the
signature passes, and the Authentication-Results entry says how much was signed); ``z=`` is
diagnostic only and not used. The keys (TXT ``<s>._domainkey.<d>``) are asked through the
server's resolver, all at once, while the body is hashed streaming from the spool in the I/O
thread pool (a 50 MB message is never in memory; a body under 64 KiB is hashed at once).
Each signature adds one entry to the message's Authentication-Results field
(:mod:`qpsmtpd_tx.authresults`), e.g.
``dkim=pass header.d=example.org header.i=@example.org header.s=may2013 header.a=rsa-sha256
header.b=AbCdEfGh`` or ``dkim=fail reason="body has been altered" …``; no signature adds
``dkim=none``. A reason or tag value longer than 256 characters (a malformed signature's
reason quotes the bad tag) is cut there, ending in ``...``, in the entry and in the log.

The message's result is the first signature's, or ``pass`` if any passes (as Mail::DKIM
decides it), named as 0.94 names it: ``pass``, ``fail``, ``invalid`` (malformed signature, no
or bad key, refused algorithm), ``temperror`` (the key could not be fetched), ``none``.

Replies (data_post; with the default ``reject_type``), with Mail::DKIM's reasons where 0.94
gave them:
  ``fail``       ``552 signature invalid: fail (body has been altered)`` (or ``message has
                 been altered``: the header hash; ``l= is longer than the body``), subject
                 to ``reject``
  ``temperror``  ``452 Please try again later - temperror (<reason>)`` (not with ``reject 0``)
  others         accepted.

Signing (a relay client's message whose envelope sender has a domain): the key directory
``<config>/dkim/<domain>/`` holds ``selector`` and ``private``, as qpsmtpd's dkim plugin
documents (and its ``dkim_key_gen.sh`` makes); a domain without a directory uses its nearest
parent's; a directory that is a symbolic link signs as the domain it points to (see
:mod:`qpsmtpd_tx.dkim_sign` for the fields signed). The ``DKIM-Signature`` field is added at
the top of the header. No key directory: not signed (logged). A key directory that cannot be
read is logged at LOGERROR and the message goes unsigned (the key is read again, and the
error logged at LOGERROR again, once its files change; each message meanwhile at LOGINFO).

Arguments (``key value`` pairs, all optional):
  ``reject 0|1|naughty``  as qpsmtpd: ``1`` (default) refuses a failed signature, ``0`` only
                       logs, ``naughty`` leaves the refusal to the naughty plugin.
  ``reject_type perm|temp|…``  the code of that refusal (default ``perm``).
  ``timeout SECONDS``  the longest wait for a key (default 5).
  ``max_signatures N`` the most signatures checked per message (default 10; the rest are
                       ignored, logged).
  ``loglevel LEVEL``

Per-recipient settings (recipient notes, README "Per-recipient policy"): ``dkim_reject``
(``0``, ``1``, ``naughty``) and ``dkim_reject_type`` override ``reject`` and ``reject_type`` for
that recipient (note → argument → default); with ``recipient_policy split`` a failed
signature refuses the message for the recipients whose level refuses it and it goes on for
the others; a temperror defers the whole message unless every recipient's level is ``0``.

Notes written (for the dmarc plugin): transaction notes ``dkim_result`` (the message's
result) and ``dkim_pass_domains`` (the ``d=`` domains of the passing signatures, lower case);
connection note ``dkim_result`` as 0.94 sets it.

Differences from qpsmtpd 0.94, intended:
  - Every signature is checked and reported (0.94 reported the first, or the passing one).
  - No ADSP or DomainKeys policy lookups (ADSP is historic since 2013; 0.94's policy answers
    only ever made ``pass``/``none``/``invalid`` accept); no ``X-DKIM-Authentication`` field
    (the Authentication-Results entries carry the same); the results reach this message's
    Authentication-Results field (0.94 stored them after its field was written, so they
    appeared on the connection's next message).
  - ``temperror`` honours ``reject 0`` (0.94 always deferred); rsa-sha1 and short RSA keys
    are refused as RFC 8301 requires; Ed25519 signatures are checked and made.
  - Signing: the nearest parent domain's key is used (0.94's loop ended at the farthest one);
    the fields signed and over-signed are chosen as above, ``c=relaxed/relaxed`` as 0.94.
"""

from qpsmtpd_tx import authresults, dkim_body, dkim_sign, dkim_verify
from qpsmtpd_tx.codes import DECLINED, DENYSOFT, LOGDEBUG, LOGERROR, LOGINFO
from qpsmtpd_tx.dns import DNSError
from qpsmtpd_tx.plugin import Plugin
from qpsmtpd_tx.plugin_args import positive, reject_settings

#: our results as 0.94 (Mail::DKIM) names them
_RESULT_NAMES = {"pass": "pass", "fail": "fail", "temperror": "temperror",
                 "neutral": "invalid", "permerror": "invalid", "policy": "invalid"}


class DKIMPlugin(Plugin):
    """Checks DKIM signatures at data_post and signs relay clients' messages."""

    KNOWN = ("reject", "reject_type", "timeout", "max_signatures")

    def init(self, args):
        arguments = self.parse_kv_args(list(args), self.KNOWN)
        self.reject, self.reject_type = reject_settings(arguments)
        self.read_reject_per_recipient("dkim")
        self.timeout = positive("timeout", arguments.get("timeout", "5"))
        self.max_signatures = positive("max_signatures",
                                       arguments.get("max_signatures", "10"), int)
        self._keys = dkim_sign.KeyCache()

    def hook_data_post(self, transaction):
        if transaction.connection.relay_client:
            return self._sign(transaction)
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, whitelisted", transaction)
            return DECLINED
        return self._verify(transaction, dkim_verify.received_fields(transaction),
                            transaction.body.open())

    # -- checking ---------------------------------------------------------------------------

    def _verify(self, transaction, received, body):
        # No coroutine: with the keys in the DNS cache and a body of one piece no Deferred
        # is made at all (this hook runs for every message); else plain Deferreds.
        try:
            fields = dkim_verify.header_fields(received)
        except Exception as e:    # a header line that is no field
            fields = []
            self.log(LOGINFO, "header not parsed: %s" % e, transaction)
        signatures, ignored = dkim_verify.signatures(fields, self.max_signatures)
        if ignored:
            self.log(LOGINFO, "%d signatures beyond max_signatures ignored" % ignored, transaction)
        if not signatures:
            body.close()
            self.store_auth_results(transaction, "dkim=none")
            return self._decide(transaction, "none", None)
        wanted = set()      # the body hashes and keys the signatures not yet decided need
        key_names = []
        for signature in signatures:
            if signature.result is None:
                wanted.add(signature.body_key)
                key_names.append(signature.key_name)
        keys = dkim_verify.cached_keys(transaction.connection.dns, key_names)
        if keys is not None and transaction.body.size <= dkim_body.HASH_CHUNK:
            try:            # the usual message: no Deferred at all
                hashes = dkim_body.body_hashes(body, wanted)
            finally:
                body.close()
            return self._check((hashes, keys), transaction, signatures, fields)
        d = dkim_body.hashes_and(self.server, transaction.body.size, body, wanted,
                                 dkim_verify.fetch_keys(transaction.connection.dns, key_names,
                                                        self.timeout))
        return d.addCallback(self._check, transaction, signatures, fields)

    def _check(self, hashes_and_keys, transaction, signatures, fields):
        hashes, keys = hashes_and_keys
        passed = []
        info_logged = None      # log_enabled(LOGINFO), once asked
        for signature in signatures:
            if signature.result is None:
                records = keys[signature.key_name]
                if isinstance(records, DNSError):
                    signature._set("temperror", "key lookup: %s" % records)
                elif records is None:
                    signature._set("permerror", "no key")
                else:
                    dkim_verify.check(signature, fields, hashes[signature.body_key], records)
            self.store_auth_results(transaction, signature.auth_result())
            if signature.result == "pass":
                passed.append(signature)
                if info_logged is None:
                    info_logged = self.log_enabled(LOGINFO)
                logged, level = info_logged, LOGINFO
            else:
                logged, level = self.log_enabled(LOGDEBUG), LOGDEBUG
            if logged:
                self.log(level, "%s: %s %s" % (authresults.clipped(signature.key_name),
                                               signature.result, signature.reason),
                         transaction)
        transaction.notes["dkim_pass_domains"] = (
            [passed[0].domain] if len(passed) == 1 else sorted({s.domain for s in passed}))
        decisive = passed[0] if passed else signatures[0]
        return self._decide(transaction, _RESULT_NAMES[decisive.result], decisive, info_logged)

    def _decide(self, transaction, result, signature, info_logged=None):
        """Note ``result`` and answer for it; ``info_logged``: log_enabled(LOGINFO) if
        known."""
        transaction.notes["dkim_result"] = result
        transaction.connection.notes["dkim_result"] = result
        detail = result if signature is None or not signature.reason else (
            "%s (%s)" % (result, signature.reason))
        if result == "pass" or result == "none":     # the usual: no log line to build
            if result == "pass":
                self.adjust_karma(transaction, 1)
            if info_logged is None:
                info_logged = self.log_enabled(LOGINFO)
            if not info_logged:
                return DECLINED
        where = "" if signature is None else ", domain: %s, selector: %s" % (
            authresults.clipped(signature.domain), authresults.clipped(signature.selector))
        if result == "fail":
            self.adjust_karma(transaction, -1)
            return self.get_reject(transaction, "signature invalid: " + detail,
                                   "result: " + detail + where)
        if result == "temperror":
            if self.transaction_setting(transaction, "dkim_reject") == "0":
                self.log(LOGINFO, "error, tolerated: " + detail + where, transaction)
                return DECLINED
            self.log(LOGINFO, "error, " + detail + where, transaction)
            return DENYSOFT, "Please try again later - " + detail
        self.log(LOGINFO, "%s%s" % (detail, where), transaction)
        return DECLINED

    # -- signing ----------------------------------------------------------------------------

    def _sign(self, transaction):
        sender = transaction.sender
        domain = sender.host if sender is not None and not sender.is_null else ""
        dkim_dir = self.server.config.path_of("dkim")
        found = dkim_sign.find_key_dir(dkim_dir, domain) if dkim_dir and domain else None
        if found is None:
            self.log(LOGINFO, "skip, DKIM not configured for %s" % (domain or "<>"), transaction)
            return DECLINED
        try:
            key = self._keys.get(*found)
        except dkim_sign.SigningError as e:
            # LOGERROR once per broken key, then per message at LOGINFO
            self.log_once(("key", found[1]), LOGERROR, "error, not signed: %s" % e, transaction,
                          again=LOGINFO)
            return DECLINED
        self.problem_over(("key", found[1]))
        if transaction.header is None or not transaction.header.count("From"):
            self.log(LOGINFO, "skip, no From field to sign", transaction)
            return DECLINED
        block = transaction.header.as_bytes()
        body = transaction.body.open()
        wanted = ("relaxed", "sha256", None)

        def signed(hashes):
            value = dkim_sign.sign(key, block, hashes[wanted])
            transaction.header.add("DKIM-Signature", value, prepend=True)
            self.log(LOGINFO, "pass, we signed the message (d=%s s=%s)"
                     % (key.domain, key.selector), transaction)
            return DECLINED

        def closed(result):
            body.close()
            return result

        return self._hash_body(transaction, body, [wanted]).addBoth(closed).addCallback(signed)

    def _hash_body(self, transaction, body, wanted):
        return dkim_body.hash_body(self.server, transaction.body.size, body, wanted)
