"""arc — check a message's ARC chain (RFC 8617) and add our ARC set to messages we pass on.

Not a plugin of qpsmtpd 0.94 (it has no ARC): a plugin of qpsmtpd-tx under a new name. Load
it after ``sender_permitted_from``, ``dkim`` and ``dmarc`` (its seal carries their results)
and before the queue plugin.

Checking, at data_post, every message: the ARC sets of the header as received are checked
as RFC 8617 section 5.2 says (:mod:`qpsmtpd_tx.arc`); keys (TXT ``<s>._domainkey.<d>``) are
asked through the server's resolver, all at once, and the body hashed streaming from the
spool, as the ``dkim`` plugin does. The result is one entry in the message's
Authentication-Results field: ``arc=none`` (no ARC fields), ``arc=pass
smtp.remote-ip=<client> header.oldest-pass=<N>`` (the oldest instance whose
ARC-Message-Signature still verifies, 0 when all do), ``arc=fail reason="…"
smtp.remote-ip=<client>``, or ``arc=temperror reason="…"`` when a key could not be fetched.
At most 10 distinct body hashes (``c=``, ``l=``) are computed per chain, for the newest
ARC-Message-Signatures (``qpsmtpd_tx.arc.MAX_BODY_HASHES``): an older one needing another is
not checked, which only moves ``header.oldest-pass``.
Transaction notes: ``arc_result`` (that result), ``arc_oldest_pass``. A chain's result never
refuses a message (RFC 8617 leaves that to local policy; the dmarc plugin's
``arc_trusted_sealers`` is such a policy). The chain is checked once per message
(:mod:`qpsmtpd_tx.arc_check`): when ``dmarc`` checked it first, its result is used.

Sealing: with ``seal relay`` the messages of relay clients and authenticated users, with
``seal all`` every message, get our ARC set on top of the header: ARC-Authentication-Results
(our Authentication-Results value, which holds the chain's result), ARC-Message-Signature
and ARC-Seal (``rsa-sha256``, ``c=relaxed/relaxed``; ``cv=`` the chain's result). Not
sealed (logged): a chain whose result is ``temperror``, a chain that already ended with
``cv=fail``, a chain of 50 sets.

The key has the dkim plugin's layout: ``<config>/dkim/<domain>/selector`` (first line) and
``<config>/dkim/<domain>/private`` (an RSA key, ``openssl genrsa 2048``; ARC knows no
Ed25519); publish the public key as TXT ``<selector>._domainkey.<domain>``. The key is
checked at start-up (a missing or unusable one stops it, naming the file) and read again
when its files change; one that became unusable after start-up leaves messages unsealed and
is logged at LOGERROR once until its files change again (each message meanwhile at LOGINFO).

Arguments (``key value`` pairs, all optional):
  ``seal none|relay|all``  which messages get our ARC set (default ``none``: only check).
  ``domain DOMAIN``     the sealing domain (``d=``), whose key directory is used (or its
                        nearest parent's, as in the dkim plugin); default: ``me``.
  ``timeout SECONDS``   the longest wait for a key (default 5).
  ``loglevel LEVEL``
"""

from qpsmtpd_tx import arc, arc_check, authresults, dkim_sign
from qpsmtpd_tx.codes import DECLINED, LOGERROR, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import positive

_SEAL = ("none", "relay", "all")


class ARCPlugin(Plugin):
    """Checks ARC chains and seals the messages it is told to at data_post."""

    KNOWN = ("seal", "domain", "timeout")

    def init(self, args):
        arguments = self.parse_kv_args(list(args), self.KNOWN)
        self.seal = arguments.get("seal", "none")
        if self.seal not in _SEAL:
            raise PluginError("seal must be one of %s, got %r" % (", ".join(_SEAL), self.seal))
        self.timeout = positive("timeout", arguments.get("timeout", "5"))
        self._keys = dkim_sign.KeyCache()
        self._key_dir = None
        if self.seal != "none":
            domain = arguments.get("domain") or self.server.me
            dkim_dir = self.server.config.path_of("dkim")
            self._key_dir = dkim_sign.find_key_dir(dkim_dir, domain) if dkim_dir else None
            if self._key_dir is None:
                raise PluginError("seal %s: no key directory dkim/%s (with selector and "
                                  "private) in the config" % (self.seal, domain))
            try:
                arc.check_key(self._keys.get(*self._key_dir))
            except (dkim_sign.SigningError, arc.SealError) as e:
                raise PluginError(str(e))

    def hook_data_post(self, transaction):
        sealing = self.seal == "all" or (
            self.seal == "relay" and transaction.connection.relay_client)
        d = arc_check.check(self.server, transaction, self.timeout,
                            (arc.SEAL_BODY,) if sealing else ())
        return d.addCallback(self._checked, transaction)

    def _checked(self, checked, transaction):
        if checked.problem:
            self.log(LOGINFO, checked.problem, transaction)
        return self._done(transaction, checked.verdict, checked.hashes.get(arc.SEAL_BODY))

    def _done(self, transaction, verdict, seal_hash):
        transaction.notes["arc_result"] = verdict.result
        transaction.notes["arc_oldest_pass"] = verdict.oldest_pass
        self.store_auth_results(
            transaction, verdict.auth_result(transaction.connection.remote_ip))
        self.log(LOGINFO, "chain: %s%s" % (verdict.result, (
            " (%s)" % verdict.reason) if verdict.reason else ""), transaction)
        if seal_hash is not None and transaction.header is not None:
            self._seal(transaction, verdict, seal_hash)
        return DECLINED

    def _seal(self, transaction, verdict, seal_hash):
        me = self.server.me
        results = authresults.header_value(me, transaction.connection, transaction)
        try:
            key = self._keys.get(*self._key_dir)
            arc.check_key(key)
            fields = arc.seal(key, transaction.header.as_bytes(), seal_hash, verdict, results)
        except arc.SealError as e:
            self.log(LOGINFO, "not sealed: %s" % e, transaction)
            return
        except dkim_sign.SigningError as e:
            # LOGERROR once per broken key, then per message at LOGINFO
            self.log_once("key", LOGERROR, "not sealed: %s" % e, transaction, again=LOGINFO)
            return
        self.problem_over("key")
        for name, value in fields:
            transaction.header.add(name, value, prepend=True)
        self.log(LOGINFO, "sealed (d=%s s=%s cv=%s)" % (key.domain, key.selector,
                                                         verdict.result), transaction)
