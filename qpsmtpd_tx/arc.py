"""ARC (RFC 8617): checking a message's Authenticated Received Chain and adding our ARC set,
on the parts of :mod:`qpsmtpd_tx.dkim_verify` (fields, keys, signature checks) and
:mod:`qpsmtpd_tx.dkim_body` (body hashes streamed from the spool): the message is never
needed whole, and the keys are fetched by the caller through the server's resolver.

Checking (:func:`check_chain`, RFC 8617 section 5.2): no ARC field → ``none``; the newest
ARC-Seal says ``cv=fail`` → ``fail``; the sets must be complete and numbered 1..N (N at most
50), ``cv=none`` in the first and ``cv=pass`` in the others; the newest
ARC-Message-Signature must verify; every ARC-Seal must verify → ``pass``, with
``oldest_pass`` the oldest instance from which every ARC-Message-Signature still verifies
(0 when all do). A key that cannot be fetched now → ``temperror`` (not in RFC 8617's
results: the chain is neither good nor bad; such a message is not sealed).

Sealing (:func:`seal`, section 5.1): an ARC-Authentication-Results field (``i=N;`` and our
Authentication-Results value), an ARC-Message-Signature (``rsa-sha256``,
``c=relaxed/relaxed``, the fields :func:`qpsmtpd_tx.dkim_sign.fields_to_sign` picks), and an
ARC-Seal over all the sets (only ours when the chain failed).
"""

import base64
import hashlib
import re
import time

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.util import InvalidTagValueList

from qpsmtpd_tx import authresults, dkim_body, dkim_sign, dkim_tags, dkim_verify, tag_value

AAR, AMS, SEAL = b"arc-authentication-results", b"arc-message-signature", b"arc-seal"
#: the most ARC sets a chain may have (RFC 8617 section 4.2.1)
MAX_INSTANCE = 50
#: the body hash every seal of ours needs
SEAL_BODY = ("relaxed", "sha256", None)
#: the most body hashes (distinct ``c=``, ``a=``, ``l=``) the ARC-Message-Signatures of a
#: chain get, the newest first (the dkim plugin's default ``max_signatures``): each is a
#: pass over the body, and 50 sets with 50 ``l=`` cost 1.5 s of CPU for a 50 MB body. An
#: older signature needing one more is not checked, which only moves header.oldest-pass.
MAX_BODY_HASHES = 10
_AAR_INSTANCE = re.compile(rb"\s*i\s*=\s*(\d+)\s*;")
#: the longest i= read as a number (any longer one is far beyond MAX_INSTANCE)
_INSTANCE_DIGITS = 9


class MessageSignature(dkim_verify.Signature):
    """An ARC-Message-Signature: a DKIM signature with ``i=`` its instance and no ``v=``."""

    MANDATORY = (b"i", b"a", b"b", b"bh", b"d", b"h", b"s")
    ARC = True

    def _identity(self):
        # ARC has no agent identity: the domain (for the key's ``t=s``); ``identity`` and
        # auth_result both ask this
        return "@" + self.domain


class Seal:
    """An ARC-Seal field: its tags and key name; ``problem`` if it is malformed."""

    def __init__(self, field):
        self.field = field
        self.problem = None
        self.tags = {}
        try:
            self.tags = tag_value.parse(field[1])
            dkim_tags.validate(self.tags, (b"i", b"a", b"b", b"cv", b"d", b"s"), True)
            if b"h" in self.tags:
                raise dkim.ValidationError("h= is not allowed in an ARC-Seal")
        except (InvalidTagValueList, dkim.ValidationError) as e:
            self.problem = "malformed ARC-Seal: %s" % e
        self.domain = _text(self.tags.get(b"d", b"")).lower()
        self.selector = _text(self.tags.get(b"s", b""))
        self.cv = self.tags.get(b"cv", b"").lower()

    @property
    def identity(self):
        """The domain (for the key's ``t=s``)."""
        return "@" + self.domain

    @property
    def key_name(self):
        """Where the key is published."""
        return "%s._domainkey.%s" % (self.selector, self.domain)


def _text(value):
    return value.decode("ascii", "backslashreplace")


class Chain:
    """The ARC sets of a header (``[name, value]`` fields as :func:`dkim_verify.parse_fields`
    gives them): ``sets`` ``{instance: {AAR|AMS|SEAL: field}}``, ``count`` (N), ``problem``
    (why the chain fails on its form alone, else None)."""

    def __init__(self, fields):
        self.sets = {}
        self.problem = None
        self.signatures = {}    # instance: MessageSignature
        self.seals = {}         # instance: Seal
        for field in fields:
            name = field[0].lower()
            if name not in (AAR, AMS, SEAL):
                continue
            instance = _instance(name, field[1])
            if instance is None:
                self.problem = self.problem or "%s without a valid i=" % _text(field[0])
                continue
            found = self.sets.setdefault(instance, {})
            if name in found:
                self.problem = self.problem or "two %s fields with i=%d" % (
                    _text(field[0]), instance)
            found[name] = field
        self.count = max(self.sets) if self.sets else 0
        if self.sets and self.problem is None:
            self.problem = self._form()

    def _form(self):
        if self.count > MAX_INSTANCE:
            return "more than %d ARC sets" % MAX_INSTANCE
        for instance in range(1, self.count + 1):
            found = self.sets.get(instance, {})
            if len(found) != 3:
                return "ARC set %d is incomplete" % instance
            self.signatures[instance] = MessageSignature(found[AMS])
            self.seals[instance] = seal = Seal(found[SEAL])
            if seal.problem:
                return seal.problem
            wanted = b"none" if instance == 1 else b"pass"
            if seal.cv != wanted and not (instance == self.count and seal.cv == b"fail"):
                return "ARC-Seal %d has cv=%s" % (instance, _text(seal.cv))
        self._limit_body_hashes()
        return None

    def _limit_body_hashes(self):
        """Leave unchecked (``policy``) the older signatures needing more than
        :data:`MAX_BODY_HASHES` body hashes."""
        kept = set()
        for instance in range(self.count, 0, -1):
            signature = self.signatures[instance]
            if signature.result is not None or signature.body_key in kept:
                continue
            if len(kept) < MAX_BODY_HASHES:
                kept.add(signature.body_key)
            else:
                signature._set("policy", "more than %d body hashes in the chain"
                               % MAX_BODY_HASHES)

    def _checked(self):
        """Whether the chain's signatures are checked (not when its form already fails it)."""
        return not self.problem and self.sets and self.seals[self.count].cv != b"fail"

    def key_names(self):
        """The key names the chain's signatures need (none if its form already fails it)."""
        if not self._checked():
            return []
        return ([s.key_name for s in self.seals.values()]
                + [s.key_name for s in self.signatures.values() if s.result is None])

    def body_keys(self):
        """The body hashes (:func:`dkim_body.body_hashes` keys) the signatures need (none if
        its form already fails it: they were hashed all the same)."""
        if not self._checked():
            return set()
        return {s.body_key for s in self.signatures.values() if s.result is None}


def _instance(name, value):
    """The ``i=`` of an ARC field; None if it has none that is a number of at most
    :data:`_INSTANCE_DIGITS` digits (int() refuses more than 4300: a ValueError)."""
    if name == AAR:
        match = _AAR_INSTANCE.match(value)
        digits = match.group(1) if match else b""
    else:
        try:
            digits = tag_value.parse(value).get(b"i", b"")
        except InvalidTagValueList:
            return None
    return int(digits) if digits.isdigit() and len(digits) <= _INSTANCE_DIGITS else None


class Verdict:
    """The chain's result: ``result`` (``pass``, ``fail``, ``none``, ``temperror``),
    ``reason``, ``count`` (N), ``oldest_pass``."""

    def __init__(self, result, reason="", count=0, oldest_pass=None):
        # (clipped: a malformed field's reason quotes the bad tag, which may be 200 KB)
        self.result, self.reason, self.count, self.oldest_pass = (
            result, authresults.clipped(reason), count, oldest_pass)

    def auth_result(self, remote_ip):
        """The Authentication-Results entry (RFC 8617 section 6). Its reason may hold any
        character of the message's text: :func:`authresults.store`, which every entry passes
        on its way to the field, makes it safe there."""
        parts = ["arc=%s" % self.result]
        if self.reason:
            parts.append(authresults.reason(self.reason))
        if self.result in ("pass", "fail") and remote_ip:
            parts.append("smtp.remote-ip=%s" % remote_ip)
        if self.result == "pass":
            parts.append("header.oldest-pass=%d" % self.oldest_pass)
        return " ".join(parts)


def check_chain(chain, fields, body_hashes, keys):
    """The :class:`Verdict` on ``chain``: ``fields`` its message's header fields,
    ``body_hashes`` the :func:`dkim_body.body_hashes` of :meth:`Chain.body_keys`, ``keys``
    ``{key name: [records] | None | DNSError}`` for :meth:`Chain.key_names`."""
    count = chain.count
    if not count:
        return Verdict("none")
    if chain.problem:
        return Verdict("fail", chain.problem, count)
    if chain.seals[count].cv == b"fail":
        return Verdict("fail", "ARC-Seal %d has cv=fail" % count, count)
    for signature in chain.signatures.values():
        if signature.result is None:
            records = keys[signature.key_name]
            if isinstance(records, Exception):
                return Verdict("temperror", "key lookup: %s" % records, count)
            if records is None:
                signature._set("permerror", "no key")
            else:
                dkim_verify.check(signature, fields, body_hashes[signature.body_key], records)
    newest = chain.signatures[count]
    if newest.result != "pass":
        return Verdict("fail", "ARC-Message-Signature %d: %s %s" % (
            count, newest.result, newest.reason), count)
    oldest_pass = 0
    for instance in range(count - 1, 0, -1):
        if chain.signatures[instance].result != "pass":
            oldest_pass = instance + 1
            break
    for instance in range(count, 0, -1):
        seal = chain.seals[instance]
        records = keys[seal.key_name]
        if isinstance(records, Exception):
            return Verdict("temperror", "key lookup: %s" % records, count)
        problem = _seal_problem(chain, instance, records)
        if problem:
            return Verdict("fail", "ARC-Seal %d: %s" % (instance, problem), count)
    return Verdict("pass", "", count, oldest_pass)


def _seal_problem(chain, instance, records):
    seal = chain.seals[instance]
    if records is None:
        return "no key"
    if len(records) != 1:
        return "%d key records" % len(records)
    try:
        kind, key = dkim_verify.parse_key(records[0], seal)
    except dkim_verify.KeyProblem as e:
        return e.reason
    hasher = hashlib.sha256()
    _hash_seal_input(hasher, [chain.sets[i] for i in range(1, instance + 1)], seal.field)
    if not dkim_verify.signature_verifies(kind, key, seal.tags[b"b"], hasher):
        return "signature does not verify"
    return None


def _hash_seal_input(hasher, sets, seal_field):
    """Feed ``hasher`` what an ARC-Seal signs (RFC 8617 section 5.1.1): the sets in order,
    each AAR, AMS, AS, relaxed; the last AS is ``seal_field``, its ``b=`` blanked."""
    for found in sets[:-1]:
        for name in (AAR, AMS, SEAL):
            hasher.update(_relaxed(found[name]) + b"\r\n")
    for name in (AAR, AMS):
        hasher.update(_relaxed(sets[-1][name]) + b"\r\n")
    name, value = seal_field
    hasher.update(_relaxed((name, dkim_verify.blank_b(value))))


def _relaxed(field):
    name, value = field
    value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return name.lower().rstrip() + b":" + dkim_body.compress_spaces(value).strip()


# -- sealing ---------------------------------------------------------------------------------


class SealError(Exception):
    """The message cannot be sealed (the chain is terminated, or our key is unusable)."""


def check_key(key):
    """Raise SealError unless ``key`` (a :class:`dkim_sign.SigningKey`) can seal: RFC 8617
    knows ``rsa-sha256`` only."""
    if not isinstance(key.private, RSAPrivateKey):
        raise SealError("%s/private: ARC seals with RSA keys only (rsa-sha256)" % key.directory)
    if key.private.key_size < dkim_verify.MIN_RSA_BITS:
        raise SealError("%s/private: an RSA key of %d bits is too short (at least %d)"
                        % (key.directory, key.private.key_size, dkim_verify.MIN_RSA_BITS))


def seal(key, header_block, body_hash, verdict, results, now=None):
    """Our ARC set for the message with LF header block ``header_block`` (as it leaves,
    with our Authentication-Results field), relaxed/sha256 ``body_hash``, its chain's
    ``verdict``, and ``results`` (our Authentication-Results value, which names the
    chain's result). Returns ``[(name, value)]`` (text, LF-folded) in the order to prepend
    them, the ARC-Seal last; raises SealError if the chain may not be extended."""
    if verdict.result not in ("none", "pass", "fail"):
        raise SealError("chain result %s: not sealed" % verdict.result)
    try:
        fields = dkim_verify.parse_fields(header_block)
    except ValueError as e:
        raise SealError("header not parsed: %s" % e)
    chain = Chain(fields)
    if verdict.result == "fail" and chain.count and chain.seals.get(chain.count) is not None \
            and chain.seals[chain.count].cv == b"fail":
        raise SealError("the chain ended with cv=fail at instance %d" % chain.count)
    instance = chain.count + 1
    if instance > MAX_INSTANCE:
        raise SealError("the chain has %d sets already" % chain.count)
    stamp = str(int(time.time() if now is None else now))
    common = [("a", "rsa-sha256"), ("d", key.domain), ("s", key.selector), ("t", stamp)]
    aar = (b"ARC-Authentication-Results", ("i=%d; %s" % (instance, results)).encode())
    names = [name.decode("ascii", "replace").lower() for name, _ in fields]
    signed = dkim_sign.fields_to_sign(names)
    ams_tags = ([("i", str(instance))] + common[:1] + [("c", "relaxed/relaxed")] + common[1:]
                + [("h", ":".join(signed)), ("bh", base64.b64encode(body_hash.digest()).decode())])
    hasher = hashlib.sha256()
    unsigned = _fold(ams_tags, "")
    dkim_verify.hash_header_fields(hasher, True, fields, [n.encode() for n in signed],
                                   [b"ARC-Message-Signature", b" " + unsigned.encode()])
    ams = (b"ARC-Message-Signature", _fold(ams_tags, _sign(key, hasher)).encode())
    seal_tags = [("i", str(instance)), ("cv", verdict.result)] + common
    own = {AAR: aar, AMS: ams}
    if verdict.result == "fail":
        sets = [own]
    else:
        sets = [chain.sets[i] for i in range(1, instance)] + [own]
    hasher = hashlib.sha256()
    _hash_seal_input(hasher, sets, (b"ARC-Seal", b" " + _fold(seal_tags, "").encode()))
    seal_value = _fold(seal_tags, _sign(key, hasher))
    return [(_text(aar[0]), _text(aar[1])), (_text(ams[0]), _text(ams[1]).lstrip()),
            ("ARC-Seal", seal_value.lstrip())]


def _sign(key, hasher):
    return base64.b64encode(key.private.sign(
        hasher.digest(), PKCS1v15(), Prehashed(hashes.SHA256()))).decode()


def _fold(tags, b_value, width=72):
    """``tag=value; …; b=<b_value>`` folded at the ``; `` between tags (where relaxed
    canonicalization does not see a fold), ``b=`` on lines of its own."""
    lines, line = [], ""
    for name, value in tags:
        part = "%s=%s;" % (name, value)
        if line and len(line) + 1 + len(part) > width:
            lines.append(line)
            line = part
        else:
            line = "%s %s" % (line, part) if line else part
    lines.append(line)
    b_lines = [b_value[i:i + width] for i in range(0, len(b_value), width)] or [""]
    lines.append("b=" + b_lines[0])
    lines += b_lines[1:]
    return " " + "\n\t".join(lines)
