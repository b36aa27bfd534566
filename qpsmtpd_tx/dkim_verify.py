"""Checking DKIM signatures (RFC 6376, RSA per RFC 8301, Ed25519 per RFC 8463) without DNS
or the body in hand: the caller fetches the keys (through the server's resolver) and hashes
the body while streaming it (:mod:`qpsmtpd_tx.dkim_body`), then calls :func:`check`.

:mod:`qpsmtpd_tx.dkim_tags` does dkimpy's field checks (``x=``, ``t=``, ``i=``); the header
fields are parsed, selected, canonicalized and hashed here, only those a signature covers
(dkimpy canonicalizes every field with regular expressions: this halves the cost of a check,
measured; tests/test_dkim_verify.py compares the hash input with dkimpy's); ``cryptography``
checks the RSA and Ed25519 signatures (dkimpy's RSA is pure Python, ten times slower; its
Ed25519 would need PyNaCl).

Results, as RFC 8601 names them: ``pass``; ``fail`` (``body has been altered``, ``message has
been altered``: Mail::DKIM's words for the body and header hashes);
``neutral`` (the signature is malformed); ``permerror`` (no key, a revoked or malformed key,
a key not for this use); ``temperror`` (the key could not be fetched now); ``policy`` (valid
but refused: rsa-sha1 or an RSA key under 1024 bits, RFC 8301). ``l=``: only that many
canonical body bytes are hashed; a signature that covers less than the whole body still
passes, with the count in its reason. ``z=`` (copied header fields) is diagnostic only and
is not used, as RFC 6376 section 3.5 says.
"""

import base64
import binascii
import re

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError
from dkim.crypto import UnparsableKeyError, parse_public_key
from dkim.util import InvalidTagValueList

from twisted.internet import defer

from qpsmtpd_tx import authresults, dkim_body, dkim_tags, tag_value
from qpsmtpd_tx.dns import DNSError
from qpsmtpd_tx.small_cache import small_cache

MIN_RSA_BITS = 1024
_ALGORITHMS = {b"rsa-sha256": ("rsa", "sha256"), b"rsa-sha1": ("rsa", "sha1"),
               b"ed25519-sha256": ("ed25519", "sha256")}
#: what verifies an RSA signature of each hash (stateless: made once, not per message)
_RSA_PADDING = PKCS1v15()
_PREHASHED = {"sha256": Prehashed(hashes.SHA256()), "sha1": Prehashed(hashes.SHA1())}


class Signature:
    """One DKIM-Signature field: its tags, what its body hash needs, and its result.

    ``result`` is None until checked (or set at once for a malformed signature), then one
    of the RFC 8601 results; ``reason`` says why when it is not ``pass``.
    """

    #: the tags a signature must have, and whether it is an ARC one (dkimpy's checks)
    MANDATORY = (b"v", b"a", b"b", b"bh", b"d", b"h", b"s")
    ARC = False

    def __init__(self, field):
        self.field = field          # (name, value) bytes as dkimpy reads them
        self.tags = {}
        self.result = None
        self.reason = ""
        self.domain = self.selector = self.algorithm = ""
        #: where the key is published: ``<selector>._domainkey.<domain>``
        self.key_name = "._domainkey."
        self.body_key = None        # (canonicalization, hash, limit) for dkim_body
        #: the b= and bh= values checked: {tag: (without white space, bytes or None)}
        self.base64 = None
        self.policy = None
        self._parse()

    def _parse(self):
        try:
            self.tags = tags = tag_value.parse(self.field[1])
        except InvalidTagValueList as e:
            return self._set("neutral", "malformed signature: %s" % e)
        # (decoded here, not by _text: a Python call costs more than the decoding)
        self.domain = tags.get(b"d", b"").decode("ascii", "backslashreplace").lower()
        self.selector = tags.get(b"s", b"").decode("ascii", "backslashreplace")
        self.algorithm = tags.get(b"a", b"").decode("ascii", "backslashreplace")
        self.key_name = "%s._domainkey.%s" % (self.selector, self.domain)
        try:
            self.base64 = dkim_tags.validate(tags, self.MANDATORY, self.ARC)
            c_value = tags.get(b"c")
            known = _POLICIES.get(c_value)      # (the usual c=: no Python call)
            self.policy, body_canonicalization = known or _policy(c_value)
        except (dkim.ValidationError, InvalidCanonicalizationPolicyError) as e:
            return self._set("neutral", "bad signature: %s" % _text(str(e).encode()))
        names = self._signed_fields = _signed_names(tags.get(b"h", b""))
        if b"from" not in names:
            return self._set("neutral", "From is not signed")
        algorithm = tags[b"a"]
        if algorithm == b"rsa-sha1":
            return self._set("policy", "rsa-sha1 is not accepted (RFC 8301)")
        limit = tags.get(b"l")
        self.body_key = (body_canonicalization,
                         _ALGORITHMS[algorithm][1], int(limit) if limit else None)

    def _set(self, result, reason=""):
        # (a malformed signature's reason quotes the bad tag, which may be 200 KB)
        self.result, self.reason = result, authresults.clipped(reason)

    def signed_fields(self):
        """The ``h=`` field names, lower case (read once; not to be changed)."""
        names = self.__dict__.get("_signed_fields")
        if names is None:
            names = self._signed_fields = _signed_names(self.tags.get(b"h", b""))
        return names

    @property
    def identity(self):
        """The ``i=`` value (default ``@domain``)."""
        return self._identity()

    def _identity(self):
        # (what identity gives, without a property's cost: auth_result asks it per message;
        # a subclass overrides this one)
        i = self.tags.get(b"i")
        return "@" + self.domain if i is None else i.decode("ascii", "backslashreplace")

    def auth_result(self):
        """This signature's Authentication-Results entry (RFC 8601, RFC 6008 ``header.b``).
        It may hold any character of the message's text: :func:`authresults.store`, which
        every entry passes on its way to the field, makes it safe there."""
        entry = "dkim=%s" % (self.result,)
        if self.reason:
            entry += " " + authresults.reason(self.reason)
        if self.domain:
            values = (self.domain, self._identity(), self.selector, self.algorithm)
            if max(map(len, values)) > authresults.MAX_VALUE:
                values = tuple(map(authresults.clipped, values))
            entry += " header.d=%s header.i=%s header.s=%s header.a=%s" % values
            if self.base64 is not None:
                b_tag = self.base64[b"b"][0][:8]
            else:
                b_value = self.tags.get(b"b", b"")
                b_tag = b_value[:16].translate(None, dkim_tags.WHITE_SPACE)[:8]
                if len(b_tag) < 8:      # white space in its first characters
                    b_tag = b_value.translate(None, dkim_tags.WHITE_SPACE)[:8]
            if b_tag:
                entry += " header.b=" + b_tag.decode("ascii", "backslashreplace")
        return entry


#: c= value -> (CanonicalizationPolicy, body canonicalization name); only valid values are
#: kept, so it holds at most seven
_POLICIES = {}


def _policy(c_value):
    """The policy of a ``c=`` value (None: absent) and its body canonicalization's name;
    raises InvalidCanonicalizationPolicyError. The policies are shared (never changed)."""
    known = _POLICIES.get(c_value)
    if known is None:
        policy = CanonicalizationPolicy.from_c_value(c_value)
        known = _POLICIES[c_value] = (policy, policy.body_algorithm.name.decode())
    return known


def _signed_names(h_value):
    """The field names of an ``h=`` value, lower case, in order."""
    # (bytes.strip drops what \s matches: the same as splitting at \s*:\s*; a loop: a
    # comprehension is a function call on Python 3.11)
    names = []
    for name in h_value.strip().split(b":"):
        names.append(name.strip().lower())
    return names


def _text(value):
    return value.decode("ascii", "backslashreplace")


#: bytes a field name may hold (RFC 5322 ftext, as dkimpy's parser reads names)
_NAME_BYTES = re.compile(rb"[\x21-\x39\x3b-\x7e]+\Z")
#: a field with white space before its colon (RFC 5322 obs-optional): ``From :`` is a From
#: field to a mail reader, not an mbox ``From `` line
_SPACED_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]+:")


def parse_fields(header_block):
    """dkimpy's ``[name, value]`` fields of an LF header block (values keep their folding,
    each line ending in CRLF); raises ValueError on a line that is neither a field nor a
    continuation. (dkimpy's own parser does the same with a regular expression per line:
    this costs a third of it.)"""
    fields = []
    for line in header_block.split(b"\n"):
        if not line:
            continue
        if line[0] in (9, 32):
            if not fields:
                raise ValueError("header starts with a continuation line")
            fields[-1][1] += line + b"\r\n"
            continue
        name, colon, value = line.partition(b":")
        if colon and _NAME_BYTES.match(name):
            fields.append([name, value + b"\r\n"])
        elif not line.startswith(b"From ") or _SPACED_NAME.match(line):
            # (dkimpy skips "From :" lines too: a second From field the signature does not
            # cover then went unseen, and a signature passed)
            raise ValueError("not a header field: %r" % line[:40])
    return fields


def received_fields(transaction):
    """The header's ``(name, raw)`` fields as the client sent them (the core adds its own
    and removes spoofed Authentication-Results before data_post: signatures must not see
    that); a transaction made without the core's header reading gives its header's."""
    if transaction.received_fields is not None:
        return transaction.received_fields
    return transaction.header.fields if transaction.header is not None else ()


def header_fields(fields):
    """What :func:`parse_fields` gives for the header whose :class:`~qpsmtpd_tx.message.Header`
    fields are ``fields`` (``(name, raw)``), without parsing it again: each field's value is
    its raw text after the colon with CRLF line ends. A header the two may read differently
    (a line that is no field, space before a colon, a field added with a bad value) is
    parsed again from its bytes, with parse_fields' errors."""
    converted = []
    for name, raw in fields:
        # (one partition and one replace per field: a slice costs as much as a search)
        head, colon, value = raw.partition(b":")
        if len(head) != len(name) or not head or not colon or raw[-1] != 10:
            return parse_fields(b"".join(raw for _, raw in fields))
        crlf = value.replace(b"\n", b"\r\n")
        lines = len(crlf) - len(value)
        if lines > 1 and value.count(b"\n ") + value.count(b"\n\t") != lines - 1:
            # a line of a folded field that is no continuation
            return parse_fields(b"".join(raw for _, raw in fields))
        converted.append([head, crlf])
    return converted


def signatures(fields, limit):
    """The first ``limit`` DKIM-Signature fields as Signatures; and how many more there were."""
    # (the length first, as Header.get: most fields are not lowered then; loops, not
    # comprehensions: on Python 3.11 each of those is a function made and called)
    found = []
    for field in fields:
        if len(field[0]) == 14 and field[0].lower() == b"dkim-signature":
            found.append(field)
    made = []
    for field in found[:limit]:
        made.append(Signature(field))
    return made, max(0, len(found) - limit)


def parse_key(record, signature):
    """The public key in TXT ``record`` (text) for ``signature``: ``("rsa"|"ed25519", key)``;
    raises KeyProblem(result, reason)."""
    tags, kind, key, (allowed, for_email, strict) = _load_key(record)
    if tags is None:
        raise KeyProblem("permerror", "malformed key record")
    if tags.get(b"v", b"DKIM1") != b"DKIM1":
        raise KeyProblem("permerror", "key record is not v=DKIM1")
    wanted, hash_name = _ALGORITHMS[signature.tags[b"a"]]
    if kind != wanted:
        raise KeyProblem("permerror", "key type does not match a=")
    if allowed is not None and hash_name.encode() not in allowed:
        raise KeyProblem("permerror", "key does not allow %s" % hash_name)
    if not for_email:
        raise KeyProblem("permerror", "key is not for email")
    if strict:
        # t=s: i= must be in d= itself, not a subdomain
        if signature.identity.rpartition("@")[2].lower() != signature.domain:
            raise KeyProblem("permerror", "i= is a subdomain of d= but the key has t=s")
    if isinstance(key, KeyProblem):
        raise key
    if kind == "rsa" and key.key_size < MIN_RSA_BITS:
        raise KeyProblem("policy", "RSA key shorter than %d bits (RFC 8301)" % MIN_RSA_BITS)
    return kind, key


@small_cache(256, 4096)
def _load_key(record):
    """``(tags, kind, key or KeyProblem, facts)`` of a key record (facts: see
    :func:`_key_facts`); tags None if it does not parse. Cached: the same few keys sign most
    mail, and parsing one costs more than checking (a record of an RSA key of 16384 bits
    has 2.8 KB: a longer one, which a hostile zone may publish, is not remembered)."""
    try:
        tags = tag_value.parse(record.encode("ascii", "replace"))
    except InvalidTagValueList:
        return None, None, None, (None, False, False)
    return (tags,) + _load_key_data(tags) + (_key_facts(tags),)


def _key_facts(tags):
    """What :func:`parse_key` asks of a key record's tags, found once per record: the hashes
    ``h=`` allows (None: any), whether ``s=`` allows email, whether ``t=`` has ``s``."""
    services = _colon_list(tags.get(b"s", b"*"))
    return (_colon_list(tags[b"h"]) if b"h" in tags else None,
            b"*" in services or b"email" in services,
            b"s" in _colon_list(tags.get(b"t", b"")))


def _load_key_data(tags):
    """``(kind, key or KeyProblem)`` of a key record's tags."""
    kind = tags.get(b"k", b"rsa").decode("ascii", "replace")
    data = tags.get(b"p", b"").translate(None, dkim_tags.WHITE_SPACE)
    if not data:
        return kind, KeyProblem("permerror", "key revoked")
    try:
        raw = base64.b64decode(data, validate=True)
        if kind == "ed25519":
            return kind, Ed25519PublicKey.from_public_bytes(raw)
        if kind == "rsa":
            # DKIM publishes a SubjectPublicKeyInfo; some publish a bare RSAPublicKey
            numbers = parse_public_key(raw)
            return kind, RSAPublicNumbers(numbers["publicExponent"],
                                          numbers["modulus"]).public_key()
    except (binascii.Error, ValueError, UnparsableKeyError, AssertionError):
        # (dkimpy's ASN.1 reader asserts what it expects: a NULL with a length raised
        # AssertionError out of the plugin)
        return kind, KeyProblem("permerror", "malformed %s key" % kind)
    return kind, KeyProblem("permerror", "unknown key type")


def _colon_list(value):
    # as written: RFC 6376 section 3.2 makes tag values case sensitive, and s=, h= and t=
    # name no exception (s=EMAIL is no email key, h=SHA256 allows no known hash)
    return [v.strip() for v in value.split(b":")]


class KeyProblem(Exception):
    """The key record cannot be used: ``result`` (RFC 8601) and ``reason``."""

    def __init__(self, result, reason):
        super().__init__(reason)
        self.result = result
        self.reason = reason


def check(signature, fields, body_hash, key_records):
    """Set ``signature.result``: ``fields`` are the message's header fields (dkimpy's form),
    ``body_hash`` its :class:`~qpsmtpd_tx.dkim_body.BodyHash`, ``key_records`` the TXT
    records at its key name (text; several is an error)."""
    if signature.result is not None:
        return
    if len(key_records) != 1:
        return signature._set("permerror", "%d key records" % len(key_records))
    try:
        kind, key = parse_key(key_records[0], signature)
    except KeyProblem as e:
        return signature._set(e.result, e.reason)
    limit = signature.body_key[2]
    if limit is not None and limit > body_hash.length:
        return signature._set("fail", "l= is longer than the body")
    expected = signature.base64[b"bh"][1]
    if expected is None or body_hash.digest() != expected:
        return signature._set("fail", "body has been altered")
    # the header hash (a From field more than the signature covers, a second From, makes
    # it fail)
    hasher = dkim_body.HASHES[signature.body_key[1]]()
    b_bytes = signature.base64[b"b"][1]
    hash_header_fields(hasher, signature.policy.header_algorithm.name == b"relaxed", fields,
                       signature._signed_fields + [b"from"], signature.field,
                       # (strict base64: only base64 characters, "=" and white space)
                       None if b_bytes is None else signature.tags[b"b"])
    if not _signs(kind, key, b_bytes, hasher):
        return signature._set("fail", "message has been altered")
    signature.result = "pass"
    if limit is not None and limit < body_hash.length:
        signature.reason = "l=%d of %d body bytes signed" % (limit, body_hash.length)


def select_fields(fields, names):
    """The fields ``names`` (lower case, in order) cover, RFC 6376 section 5.4.2: each name
    takes the last field of that name not taken yet; a name with none left takes nothing.
    Work in proportion to the fields and names (a search of the fields per name cost 28 s
    of CPU for an ``h=`` of 20,000 names absent from 40,000 short fields, measured)."""
    wanted = set(names)
    positions = {}      # name: the indexes of its fields not taken yet, the last at the end
    for i, field in enumerate(fields):
        name = field[0].lower()
        if name in wanted:
            positions.setdefault(name, []).append(i)
    selected = []
    for name in names:
        left = positions.get(name)
        if left:
            selected.append(fields[left.pop()])
    return selected


def _relaxed_field(name, value):
    """Relaxed header canonicalization (RFC 6376 section 3.4.2) of one field."""
    value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return name.lower().rstrip(), dkim_body.compress_spaces(value).strip() + b"\r\n"


#: a b= tag's name and equals sign: after ``;`` or white space, it starts the value that is
#: blanked before hashing the signature field (RFC 6376 section 3.7), as dkimpy's RE_BTAG
#: finds it (searched for without the byte before: re finds a pattern that starts with a
#: literal at a few instructions a byte, one that starts with a class at forty, measured)
_B_NAME = re.compile(rb"b\s*=")
_BEFORE_B_NAME = frozenset(b";" + dkim_tags.WHITE_SPACE)
#: every byte that cannot be in a b= value (not base64, not white space) as ``;``
_B_VALUE_ENDS = bytes(c if c in dkim_tags.BASE64_OR_SPACE + b"=" else ord(";")
                      for c in range(256))


def _b_tag(value, pos):
    """The first ``[;\\s]b\\s*=`` in ``value`` at ``pos`` or after (its ``b``: one past
    ``pos``), as a match of :data:`_B_NAME`; None if there is none."""
    found = _B_NAME.search(value, pos + 1)
    while found is not None and value[found.start() - 1] not in _BEFORE_B_NAME:
        found = _B_NAME.search(value, found.start() + 1)
    return found


def blank_b(value, b_value=None):
    """A signature field's value with its ``b=`` value removed: after each ``b=`` the
    longest run of base64 characters and white space, less the white space at its end
    (and the line end when b= is the last tag). ``b_value``: the field's b= tag value
    (stripped) if it is known to hold only base64 characters, ``=`` and white space."""
    found = _B_NAME.search(value, 1)      # (_b_tag's first search, without its call)
    if found is not None and value[found.start() - 1] not in _BEFORE_B_NAME:
        found = _b_tag(value, found.start())
    if found is None:
        return value
    if b_value is not None:
        # The usual field: the first b= is the b= tag, the last one; all after it is then
        # the run (no translation of the field to find where it ends, measured 7 k of 19 k).
        start = found.end()
        kept = value[start:].rstrip()
        if kept.lstrip() == b_value:
            end = start + len(kept)
            if len(value) - end <= 2 and value[end:] in (b"\n", b"\r\n"):
                return value[:start]
            return value[:start] + value[end:]
    # the run found by a translation and a find: re's repetition of a character class costs
    # twenty instructions a byte of a b= value (measured), and b= is most of the field
    ends = value.translate(_B_VALUE_ENDS)
    kept = []
    pos = 0
    while found is not None:
        start = found.end()
        stop = ends.find(b";", start)
        if stop < 0:
            stop = len(value)
        end = start + len(value[start:stop].rstrip(dkim_tags.WHITE_SPACE))
        if len(value) - end <= 2 and value[end:] in (b"\n", b"\r\n"):
            end = len(value)
        kept.append(value[pos:start])
        pos = end
        found = _b_tag(value, end) if end < len(value) else None
    kept.append(value[pos:])
    return b"".join(kept)


def hash_header_fields(hasher, relaxed, fields, names, signature_field, b_value=None):
    """Feed ``hasher`` the header hash input: the fields ``names`` select from ``fields``
    (``[name, value]`` as :func:`parse_fields` gives them), then ``signature_field`` with
    its ``b=`` value blanked and no line end; ``relaxed`` or simple canonicalization.
    Only the selected fields are canonicalized (a message has many more). ``b_value``: as
    :func:`blank_b` takes it."""
    selected = select_fields(fields, names)
    if relaxed:
        selected.append((signature_field[0], blank_b(signature_field[1], b_value)))
        hasher.update(_relaxed_lines(selected)[:-2])     # the signature field: no CRLF
        return
    for name, value in selected:
        hasher.update(name + b":" + value)
    hasher.update(signature_field[0] + b":" + blank_b(signature_field[1], b_value).rstrip())


def _relaxed_lines(fields):
    """The relaxed canonical form of ``fields`` (``(name, value)``), each ending in CRLF, in
    one piece: the values are unfolded and their spaces compressed all at once, joined by
    NUL (a Python call per field cost more than the work, measured), unless one holds a NUL."""
    values = []
    for field in fields:    # (loops: a comprehension is a function call on Python 3.11)
        values.append(field[1])
    values = b"\x00".join(values)
    if values.count(b"\x00") != len(fields) - 1:
        return b"".join([b"%s:%s" % _relaxed_field(name, value) for name, value in fields])
    values = dkim_body.compress_spaces(values.replace(b"\r\n", b"").replace(b"\n", b""))
    lines = []
    for (name, _), value in zip(fields, values.split(b"\x00")):
        lines.append(b"%s:%s\r\n" % (name.lower().rstrip(), value.strip()))
    return b"".join(lines)


def _b64(value):
    # what base64.b64decode(validate=True) does for bytes, without its Python layer
    return dkim_tags.base64_value(value)[1]


def signature_verifies(kind, key, b_value, hasher):
    """True if ``b_value`` (a ``b=`` tag, base64) signs what ``hasher`` has hashed."""
    return _signs(kind, key, _b64(b_value), hasher)


def _signs(kind, key, value, hasher):
    """True if the signature ``value`` (bytes; None: not base64) signs what ``hasher`` has
    hashed."""
    if value is None:
        return False
    try:
        if kind == "ed25519":
            key.verify(value, hasher.digest())
        else:
            key.verify(value, hasher.digest(), _RSA_PADDING, _PREHASHED[hasher.name])
        return True
    except InvalidSignature:
        return False


def _answered(answer):
    return list(answer.records)


def _key_error(e):
    """What a failed key lookup ``e`` (a DNSError) means: None (no key) or ``e``."""
    return None if e.no_record else e


def _failed(failure):
    return _key_error(failure.trap(DNSError) and failure.value)


def cached_keys(dns, names):
    """What :func:`fetch_keys` would give, at once from the DNS cache (``dns.cached``), or
    None if a name is not in it: for the usual message (the few signers' keys are cached)
    no Deferred is made."""
    found = {}
    for name in names:
        outcome = dns.cached(name, "TXT")
        if outcome is None:
            return None
        found[name] = _key_error(outcome) if isinstance(outcome, DNSError) else _answered(outcome)
    return found


def fetch_keys(dns, names, timeout):
    """A Deferred of ``{key name: [records] | None (no such key) | DNSError}``: the TXT
    records of ``names``, asked all at once through the server's resolver ``dns``."""
    names = sorted(set(names))
    if len(names) == 1:     # the common case: no DeferredList
        return dns.txt(names[0], timeout=timeout).addCallbacks(_answered, _failed).addCallback(
            lambda found: {names[0]: found})
    lookups = [dns.txt(name, timeout=timeout).addCallbacks(_answered, _failed)
               for name in names]
    return defer.gatherResults(lookups, consumeErrors=True).addCallback(
        lambda found: dict(zip(names, found)))
