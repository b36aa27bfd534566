"""Signed messages and their mutations, for the whole-message DKIM differential test
(tests/test_dkim_differential.py): :func:`cases` makes them from a fixed seed.

Each case is a message as a relay hands it on (CRLF lines, dots not stuffed), signed once or
twice, then changed the ways an attacker or a broken relay changes mail: the body, the
header, the DKIM-Signature field (changed after signing, or with its tags changed before
signing so that ``b=`` covers them) and the key records published for it. The signatures
are computed with dkimpy's own canonicalization and header hashing (``dkim.hash_headers``,
``canonicalize_body``): a quarter of them by ``dkim.DKIM.sign`` itself, the rest by
:func:`sign`, which can also write the tags dkimpy never writes (``x=``, ``z=``, other tag
orders and spacing, unknown or repeated tags). ``cryptography`` does the RSA and Ed25519
arithmetic.

:func:`dkimpy_results` is the reference verdict: ``dkim.DKIM(message).verify(idx, dnsfunc)``
for each signature, with the same key records. dkimpy checks Ed25519 only through PyNaCl,
which is not installed here: :data:`NACL_STAND_IN` gives it PyNaCl's three calls on
``cryptography``'s Ed25519 (a stand-in for a missing library, not for the check).
"""

import base64
import hashlib
import random
import re
import time
import types

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.canonicalization import CanonicalizationPolicy

DOMAIN = "example.org"
#: "now" for t= and x=: fixed per run, well inside dkimpy's and our 10-hour slack
NOW = int(time.time())


class Key:
    """A signing key: ``kind`` (``rsa``/``ed25519``), its private key and public TXT ``p=``."""

    def __init__(self, label, kind, private):
        self.label, self.kind, self.private = label, kind, private
        public = private.public_key()
        if kind == "rsa":
            raw = public.public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
        else:
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.p = base64.b64encode(raw).decode()
        self.algorithm = b"rsa-sha256" if kind == "rsa" else b"ed25519-sha256"

    def record(self):
        """The usual key record."""
        return "v=DKIM1; k=%s; p=%s" % (self.kind, self.p)

    def pem(self):
        """The private key in PEM (for dkimpy's own signer)."""
        return self.private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption())

    def sign(self, digest, hash_name):
        """The signature of a header hash ``digest``."""
        if self.kind == "ed25519":
            return self.private.sign(digest)
        chosen = hashes.SHA256() if hash_name == "sha256" else hashes.SHA1()
        return self.private.sign(digest, PKCS1v15(), Prehashed(chosen))


_KEYS = []


def keys():
    """The three signing keys (RSA 1024 and 2048 bits, Ed25519), made once per process."""
    if not _KEYS:
        _KEYS.extend([
            Key("rsa1024", "rsa", rsa.generate_private_key(public_exponent=65537, key_size=1024)),
            Key("rsa2048", "rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            Key("ed25519", "ed25519", ed25519.Ed25519PrivateKey.generate())])
    return _KEYS


# -- dkimpy's Ed25519 through cryptography ---------------------------------------------------

class _BadSignature(Exception):
    pass


class _NaClValueError(ValueError):
    pass


class _VerifyKey:
    """PyNaCl's VerifyKey as dkimpy calls it: built from base64, ``verify(message, sig)``."""

    def __init__(self, value, encoder=None):
        try:
            raw = base64.b64decode(value)      # PyNaCl's Base64Encoder: not validating
            self.key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as e:
            raise _NaClValueError(str(e))

    def verify(self, message, signature):
        """``message`` if ``signature`` signs it, else raise the bad-signature error."""
        try:
            self.key.verify(signature, message)
        except InvalidSignature:
            raise _BadSignature("bad signature")
        return message


NACL_STAND_IN = types.SimpleNamespace(
    signing=types.SimpleNamespace(VerifyKey=_VerifyKey),
    encoding=types.SimpleNamespace(Base64Encoder=None),
    exceptions=types.SimpleNamespace(ValueError=_NaClValueError, BadSignatureError=_BadSignature))


# -- messages -------------------------------------------------------------------------------

#: words of header values and body lines (text is encoded as latin-1, a byte a character:
#: "Ã\x9c" is the UTF-8 of "Ü", 8-bit bytes as real mail has them)
_WORDS = ["hello", "invoice", "meeting", "la", "the", "a", "Über".encode().decode("latin-1"),
          "x", "payment", "tomorrow", "--", "=", ":", ";", "ok"]
#: what only some messages hold: white space that is no WSP, a bare CR, a NUL
_ODD = ["\x0b", "\x0c", "a\rb", "\x00", "\x7f"]


def _words(rng, most=6):
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, most)))


def _base_header(rng):
    """``[(name, raw field with CRLF)]`` of a plausible message."""
    fields = [
        ("Received", "from relay.example.net (relay.example.net [192.0.2.9])\r\n\tby mx; "
                     "Sun, 6 Dec 2026 10:00:00 +0000"),
        ("From", rng.choice(["Sender <sender@%s>" % DOMAIN, "sender@%s" % DOMAIN,
                             "\"A, B\" <a.b@%s>" % DOMAIN])),
        ("To", rng.choice(["alice@example.com", "Alice <alice@example.com>,\r\n bob@example.com"])),
        ("Subject", rng.choice([_words(rng), "  " + _words(rng) + " \t", _words(rng, 3) +
                                "\r\n\t" + _words(rng, 3), "\r\n\t" + _words(rng, 3)])),
        ("Date", "Sun, 06 Dec 2026 20:00:00 +0000"),
        ("Message-ID", "<%d@%s>" % (rng.randrange(10 ** 6), DOMAIN)),
    ]
    if rng.random() < 0.5:
        fields.append(("Cc", "carol@example.com"))
    if rng.random() < 0.4:
        fields.append(("MIME-Version", "1.0"))
        fields.append(("Content-Type", "text/plain; charset=us-ascii"))
    if rng.random() < 0.3:
        fields.insert(rng.randrange(1, len(fields)), ("X-Mailer", _words(rng, 3)))
    if rng.random() < 0.1:
        fields.insert(rng.randrange(1, len(fields)), ("X-Empty", rng.choice(["", " ", "\t"])))
    if rng.random() < 0.1:
        fields.insert(rng.randrange(1, len(fields)), ("X-Odd", rng.choice(_ODD) + " v "
                                                      + rng.choice(_ODD + ["\r"])))
    sep = rng.choice([": ", ":", ":\t", ":  "])
    return [(name, ("%s%s%s\r\n" % (name, sep, value)).encode("latin-1"))
            for name, value in fields]


def _base_body(rng):
    kind = rng.random()
    if kind < 0.08:
        return b""
    if kind < 0.12:
        return b"\r\n\r\n"
    if kind < 0.14:     # more than the plugin hashes at once (64 KiB): hashed in pieces
        line = ("word  \t" * rng.randint(9000, 12000)).encode()
        return (b"big body\r\n" + line + b" \r\n" + b"short line \r\n" * rng.randint(1, 9000)
                + b"\r\n" * rng.randint(0, 2))
    lines = []
    for _ in range(rng.randint(1, 8)):
        shape = rng.random()
        if shape < 0.15:
            lines.append("")
        elif shape < 0.25:
            lines.append(rng.choice([".", "..", ".hidden", " . "]))
        elif shape < 0.35:
            lines.append(_words(rng) + rng.choice([" ", "\t", "  \t "]))
        elif shape < 0.42:
            lines.append(rng.choice([" ", "\t"]) + _words(rng).replace(" ", "  \t"))
        elif shape < 0.45:
            lines.append("w" * rng.randint(900, 1200))
        elif shape < 0.5:
            lines.append(_words(rng, 3) + rng.choice(_ODD) + _words(rng, 2))
        elif shape < 0.55:
            lines.append(rng.choice(["   ", "\t", " \t "]))     # blank once relaxed
        elif shape < 0.57:
            lines.append(rng.choice(["\r", _words(rng, 2) + "\r", _words(rng, 2) + " \r "]))
        else:
            lines.append(_words(rng, 12))
    trailing = rng.choice([0, 0, 0, 1, 2])
    return ("\r\n".join(lines) + "\r\n" + "\r\n" * trailing).encode("latin-1")


class Message:
    """A message being built: ``signatures`` (raw DKIM-Signature fields, top first), the
    other ``fields`` (``[(name, raw)]``), ``body``, and the TXT records published:
    ``records`` ``{key name: [record, …] or None (no such name)}``."""

    def __init__(self, fields, body):
        self.signatures = []
        self.fields = list(fields)
        self.body = body
        self.records = {}

    def bytes(self, line_end=b"\r\n"):
        """The whole message."""
        text = b"".join(self.signatures) + b"".join(raw for _, raw in self.fields) + b"\r\n" \
            + self.body
        return text if line_end == b"\r\n" else text.replace(b"\r\n", line_end)

    def copy(self):
        """A copy to change."""
        other = Message(self.fields, self.body)
        other.signatures = list(self.signatures)
        other.records = dict(self.records)
        return other


# -- signing --------------------------------------------------------------------------------

class Spec:
    """What one signature says: its key, selector and tags, in the order written.

    ``tags`` is a list of ``[name, value]`` (bytes) that mutations may reorder, repeat or
    change; ``bh`` and ``b`` are filled in by :func:`sign` (a ``bh`` value set here is kept).
    """

    def __init__(self, key, selector, h_names, header_c=b"relaxed", body_c=b"relaxed",
                 hash_name="sha256"):
        self.key = key
        self.selector = selector
        self.hash_name = hash_name
        self.header_c, self.body_c = header_c, body_c
        self.h_names = list(h_names)
        self.limit = None       # l=: None, "full" or a byte count
        algorithm = key.algorithm if hash_name == "sha256" else b"rsa-sha1"
        self.tags = [[b"v", b"1"], [b"a", algorithm], [b"c", header_c + b"/" + body_c],
                     [b"d", DOMAIN.encode()], [b"s", selector.encode()],
                     [b"h", b":".join(h_names)], [b"bh", None], [b"b", None]]
        self.separator = b"; "
        self.equals = b"="
        self.fold_b = 0         # break the b= value every so many characters (0: never)
        self.omit = set()       # tags left out of the field (after bh= is computed)

    def tag(self, name):
        """The value of the first tag ``name``, or None."""
        for tag, value in self.tags:
            if tag == name:
                return value
        return None

    def set(self, name, value, where=None):
        """Set tag ``name`` (added at ``where``, default before ``bh=``, if absent)."""
        for pair in self.tags:
            if pair[0] == name:
                pair[1] = value
                return
        at = where if where is not None else [t for t, _ in self.tags].index(b"bh")
        self.tags.insert(at, [name, value])

    def drop(self, name):
        """Remove every tag ``name``."""
        self.tags = [pair for pair in self.tags if pair[0] != name]

    def policy(self):
        """The canonicalization the signature is made with."""
        return CanonicalizationPolicy.from_c_value(self.header_c + b"/" + self.body_c)

    def text(self, b_value):
        """The field's value (after the colon, with CRLF) with ``b=`` set to ``b_value``."""
        parts = []
        for name, value in self.tags:
            if name in self.omit:
                continue
            if name == b"b" and value is None:     # (a repeated b= keeps its own value)
                value = b_value
                if self.fold_b and value:
                    value = b"\r\n\t".join(value[i:i + self.fold_b]
                                           for i in range(0, len(value), self.fold_b))
            parts.append(name + self.equals + value)
        return b" " + self.separator.join(parts) + b"\r\n"


def body_hash(message, spec):
    """bh= for ``spec`` over ``message``'s body (dkimpy's canonicalization), and the
    canonical body's length."""
    _, body = dkim.rfc822_parse(message.bytes())
    canonical = spec.policy().canonicalize_body(body)
    limit = len(canonical) if spec.limit == "full" else spec.limit
    if isinstance(limit, int):
        canonical = canonical[:limit]
    digest = hashlib.new(spec.hash_name, canonical).digest()
    return base64.b64encode(digest), limit


def sign(message, spec):
    """Add the signature ``spec`` describes on top of ``message`` (in place)."""
    bh, limit = body_hash(message, spec)
    for pair in spec.tags:
        if pair[0] == b"bh" and pair[1] is None:
            pair[1] = bh
    if limit is not None and spec.tag(b"l") is None:
        spec.set(b"l", str(limit).encode())
    headers, _ = dkim.rfc822_parse(message.bytes())
    policy = spec.policy()
    hasher = hashlib.new(spec.hash_name)
    # hashed as verifiers blank b= (with the white space before the value): a stand-in
    # value as long as the signature, folded the same way
    size = spec.key.private.key_size // 8 if spec.key.kind == "rsa" else 64
    stand_in = spec.text(base64.b64encode(bytes(size)))
    names = [n.strip().lower() for n in spec.h_names]
    dkim.hash_headers(hasher, policy, policy.canonicalize_headers(headers), names,
                      (b"DKIM-Signature", stand_in), None)
    b_value = base64.b64encode(spec.key.sign(hasher.digest(), spec.hash_name))
    signed = spec.text(b_value)
    if dkim.RE_BTAG.sub(rb"\1", signed) != dkim.RE_BTAG.sub(rb"\1", stand_in):
        raise AssertionError("b= cannot be told apart in %r" % signed)
    message.signatures.insert(0, b"DKIM-Signature:" + signed)


def sign_with_dkimpy(message, spec, identity=None):
    """Add a signature made by ``dkim.DKIM.sign`` itself (RSA; dkimpy's own tags)."""
    field = dkim.DKIM(message.bytes()).sign(
        spec.selector.encode(), DOMAIN.encode(), spec.key.pem(),
        canonicalize=(spec.header_c, spec.body_c), include_headers=spec.h_names,
        length=spec.limit is not None, identity=identity)
    message.signatures.insert(0, field)


# -- cases ----------------------------------------------------------------------------------

class Case:
    """One message to check: ``labels`` say how it was made, ``message`` its bytes,
    ``records`` the TXT records (see :class:`Message`), ``made_by`` the mutation functions
    applied and the signers used (``dkimpy``, the key labels)."""

    def __init__(self, labels, message, records, made_by):
        self.labels, self.message, self.records = labels, message, records
        #: the names of the functions that changed it, and how it was signed
        self.made_by = made_by

    def __repr__(self):
        return "<Case %s>" % " ".join(self.labels)


def _key_name(selector):
    return "%s._domainkey.%s" % (selector, DOMAIN)


def _choose_spec(rng, message, number, index):
    key = rng.choices(keys(), weights=[2, 1, 2])[0]
    selector = "c%d-%s-%d" % (number, key.label, index)
    present = [name.lower().encode() for name, _ in message.fields if name != "Received"]
    h = [b"from"] + rng.sample(present, rng.randint(0, len(present)))
    h = list(dict.fromkeys(h))
    if rng.random() < 0.3:      # over-signing: one more than present
        h += [b"from", b"subject"]
    if message.signatures and rng.random() < 0.5:     # the signature below is signed too
        h.append(b"dkim-signature")
    if rng.random() < 0.2:      # a field that is absent is signed as absent
        h.append(b"reply-to")
    rng.shuffle(h)
    if rng.random() < 0.2:
        h = [n.capitalize() if rng.random() < 0.5 else n for n in h]
    hash_name = "sha1" if key.kind == "rsa" and rng.random() < 0.03 else "sha256"
    spec = Spec(key, selector, h, rng.choice([b"simple", b"relaxed"]),
                rng.choice([b"simple", b"relaxed"]), hash_name)
    if rng.random() < 0.25:
        spec.limit = "full"
    if rng.random() < 0.3:
        spec.set(b"i", rng.choice([b"@example.org", b"user@example.org",
                                   b"@mail.example.org", b"a+b@Sub.Example.Org"]))
    if rng.random() < 0.5:
        spec.set(b"t", str(NOW - rng.randrange(100)).encode())
    if rng.random() < 0.2:
        spec.set(b"x", str(NOW + 3600 * rng.randint(1, 100)).encode())
    if rng.random() < 0.3:
        spec.set(b"q", b"dns/txt")
    if rng.random() < 0.1:
        spec.set(b"z", b"From:sender=40example.org|To:alice=40example.com")
    if rng.random() < 0.2:
        spec.drop(b"c")     # the default, simple/simple
        spec.header_c = spec.body_c = b"simple"
    elif rng.random() < 0.1:
        spec.set(b"c", spec.header_c)       # "relaxed" alone: the body is simple
        spec.body_c = b"simple"
    if rng.random() < 0.3:
        rng.shuffle(spec.tags)
    spec.separator = rng.choice([b"; ", b";", b" ; ", b";\r\n\t", b"; \r\n "])
    spec.equals = rng.choice([b"=", b"=", b" = ", b"= "])
    spec.fold_b = rng.choice([0, 0, 60, 40, 13])
    if rng.random() < 0.2:
        spec.set(b"h", rng.choice([b" : ", b":\r\n ", b" :\t"]).join(spec.h_names))
    return spec


def _sign_fresh(rng, message, number, index):
    spec = _choose_spec(rng, message, number, index)
    message.records[_key_name(spec.selector)] = [spec.key.record()]
    # (dkimpy's signer takes no i= whose domain differs in case from d=, and does not
    # sign DKIM-Signature fields)
    by_dkimpy = (spec.key.kind == "rsa" and spec.hash_name == "sha256" and rng.random() < 0.3
                 and (spec.tag(b"i") or DOMAIN.encode()).endswith(DOMAIN.encode())
                 and b"dkim-signature" not in [n.lower() for n in spec.h_names])
    return spec, by_dkimpy


def cases(count, seed=20261207):
    """``count`` cases, the same ones for the same ``seed``."""
    rng = random.Random(seed)
    made = []
    for number in range(count):
        message = Message(_base_header(rng), _base_body(rng))
        labels = []
        made_by = []
        specs = []
        for index in range(rng.choice([1, 1, 1, 2])):
            spec, by_dkimpy = _sign_fresh(rng, message, number, index)
            mutation = None
            if rng.random() < 0.3:      # change the tags, then sign (b= covers the change)
                mutation = rng.choice(SIGNED_TAG_MUTATIONS)
                by_dkimpy = False
                mutation(rng, spec, message)
                labels.append("signed-" + mutation.__name__)
                made_by.append(mutation.__name__)
            if by_dkimpy:
                sign_with_dkimpy(message, spec, spec.tag(b"i"))
                labels.append("dkimpy-%s" % spec.key.label)
                made_by.append("dkimpy")
            else:
                sign(message, spec)
                labels.append("%s-%s" % (spec.hash_name, spec.key.label))
            made_by.append(spec.key.label)
            specs.append(spec)
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            mutation = rng.choices(MUTATIONS, weights=[WEIGHTS.get(m, 1) for m in MUTATIONS])[0]
            label = mutation(rng, message, specs)
            labels.append(label or mutation.__name__)
            made_by.append(mutation.__name__)
        if message.body and not message.body.endswith(b"\n"):
            message.body += b"\r\n"       # SMTP can carry nothing else
        made.append(Case(labels, message.bytes(), dict(message.records), made_by))
    return made


# -- tag changes made before signing ---------------------------------------------------------

def v_2(rng, spec, message):
    """v=2."""
    spec.set(b"v", b"2")


def a_unknown(rng, spec, message):
    """An a= no verifier knows (or in capitals)."""
    spec.set(b"a", rng.choice([b"rsa-sha512", b"ed448-sha256", b"RSA-SHA256"]))


def x_expired(rng, spec, message):
    """x= past, beyond the 10-hour slack."""
    spec.set(b"x", str(NOW - 36000 - rng.randint(100, 10 ** 6)).encode())


def x_before_t(rng, spec, message):
    """x= earlier than t=."""
    spec.set(b"t", str(NOW - 100).encode())
    spec.set(b"x", str(NOW - 200).encode())


def t_future(rng, spec, message):
    """t= in the future, beyond the 10-hour slack."""
    spec.set(b"t", str(NOW + 36000 + rng.randint(100, 10 ** 6)).encode())


def i_outside_d(rng, spec, message):
    """i= not in d= or a subdomain of it (or without @)."""
    spec.set(b"i", rng.choice([b"@example.net", b"@notexample.org", b"example.org",
                               b"user@example.org.evil", b"@xexample.org"]))


def h_without_from(rng, spec, message):
    """h= without From."""
    spec.h_names = [n for n in spec.h_names if n.lower() != b"from"] or [b"to"]
    spec.set(b"h", b":".join(spec.h_names))


def l_larger_than_body(rng, spec, message):
    """l= longer than the canonical body."""
    _, body = dkim.rfc822_parse(message.bytes())
    spec.limit = None
    spec.set(b"l", str(len(spec.policy().canonicalize_body(body)) + rng.randint(1, 50))
             .encode())


def l_not_a_number(rng, spec, message):
    """l= that is no decimal count."""
    spec.limit = None
    spec.set(b"l", rng.choice([b"12a", b"-1", b"0x10", b"1 2", b"\xd9\xa3"]))


def l_zero(rng, spec, message):
    """l=0: no body signed."""
    spec.limit = 0


def bh_bad_base64(rng, spec, message):
    """bh= that is no base64."""
    spec.set(b"bh", rng.choice([b"!!!!", b"abc", b"a=bc", b"YWJj\x00"]))


def repeated_tag(rng, spec, message):
    """A tag twice."""
    name, value = rng.choice([[b"d", DOMAIN.encode()], [b"s", spec.selector.encode()],
                              [b"h", b"from"], [b"v", b"1"], [b"i", b"@example.org"],
                              [b"b", b"QUJD"], [b"bh", b"QUJD"], [b"a", b"rsa-sha256"]])
    spec.tags.insert(rng.randrange(len(spec.tags) + 1), [name, value])


def unknown_tag(rng, spec, message):
    """A tag DKIM does not define (tags are case sensitive: D=, B=, H= too)."""
    spec.tags.insert(rng.randrange(len(spec.tags) + 1),
                     [rng.choice([b"foo", b"n", b"X", b"r", b"D", b"B", b"H"]),
                      rng.choice([b"bar", b"", b"1", b"example.net", b"QUJD", b"to"])])


def missing_tag(rng, spec, message):
    """A required tag left out."""
    spec.omit.add(rng.choice([b"v", b"a", b"d", b"h", b"s", b"bh"]))


def q_other(rng, spec, message):
    """q= other than dns/txt."""
    spec.set(b"q", rng.choice([b"dns", b"dns/txt:other", b"DNS/TXT", b"http"]))


def c_bad(rng, spec, message):
    """c= no canonicalization."""
    spec.set(b"c", rng.choice([b"relaxed/strict", b"nowsp", b"simple/simple/simple"]))


def key_h_sha1_only(rng, spec, message):
    """The key allows sha1 only."""
    message.records[_key_name(spec.selector)] = [
        "v=DKIM1; k=%s; h=sha1; p=%s" % (spec.key.kind, spec.key.p)]


def key_t_s_with_subdomain_i(rng, spec, message):
    """i= in a subdomain of d=, the key has t=s."""
    spec.set(b"i", b"@mail.example.org")
    message.records[_key_name(spec.selector)] = [
        "v=DKIM1; k=%s; t=s; p=%s" % (spec.key.kind, spec.key.p)]


SIGNED_TAG_MUTATIONS = [v_2, a_unknown, x_expired, x_before_t, t_future, i_outside_d,
                        h_without_from, l_larger_than_body, l_not_a_number, l_zero,
                        bh_bad_base64, repeated_tag, unknown_tag, missing_tag, q_other, c_bad,
                        key_h_sha1_only, key_t_s_with_subdomain_i]


# -- changes after signing --------------------------------------------------------------------

def _lines(body):
    return body.split(b"\r\n")


def body_append(rng, message, specs):
    """Text added after the body (or after what l= covers)."""
    message.body += rng.choice([b"unsubscribe here\r\n", b"\r\nP.S. pay me\r\n", b".\r\n"])


def body_last_line_changed(rng, message, specs):
    """The last non-empty body line changed."""
    lines = _lines(message.body)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip():
            lines[i] = lines[i] + b"!"
            message.body = b"\r\n".join(lines)
            return None
    message.body = b"x\r\n"
    return None


def body_trailing_blank_lines(rng, message, specs):
    """Empty lines added at the end of the body, or removed."""
    if rng.random() < 0.5:
        message.body += b"\r\n" * rng.randint(1, 3)
        return "body_blank_lines_added"
    message.body = message.body.rstrip(b"\r\n") + (b"\r\n" if message.body.strip() else b"")
    return "body_blank_lines_removed"


def body_inner_whitespace(rng, message, specs):
    """White space changed in a body line."""
    lines = _lines(message.body)
    i = rng.randrange(len(lines))
    how = rng.choice(["double", "tab", "trailing", "leading", "drop"])
    line = lines[i]
    if how == "double":
        line = line.replace(b" ", b"  ", 1) if b" " in line else line + b"  "
    elif how == "tab":
        line = line.replace(b" ", b"\t", 1) if b" " in line else line + b"\t"
    elif how == "trailing":
        line = line + b" \t"
    elif how == "leading":
        line = b" " + line
    else:
        line = line.replace(b" ", b"", 1)
    lines[i] = line
    message.body = b"\r\n".join(lines)
    return "body_whitespace_" + how


def body_dot_line(rng, message, specs):
    """A line that is a dot (stuffed on the wire)."""
    lines = _lines(message.body)
    lines.insert(rng.randrange(len(lines)), rng.choice([b".", b"..", b". "]))
    message.body = b"\r\n".join(lines)
    if not message.body.endswith(b"\r\n"):
        message.body += b"\r\n"


def body_crlf_to_lf(rng, message, specs):
    """The body's line ends made bare LF."""
    message.body = message.body.replace(b"\r\n", b"\n")


def header_crlf_to_lf(rng, message, specs):
    """The header's line ends made bare LF."""
    message.signatures = [s.replace(b"\r\n", b"\n") for s in message.signatures]
    message.fields = [(n, raw.replace(b"\r\n", b"\n")) for n, raw in message.fields]


def _index(message, name):
    found = [i for i, (n, _) in enumerate(message.fields) if n.lower() == name]
    return found[0] if found else None


def second_field(rng, message, specs):
    """Another From, Subject, To or Reply-To above or below the first, or at either end."""
    name = rng.choice(["From", "From", "Subject", "To", "Reply-To"])
    at = _index(message, name.lower())
    where = rng.choice(["above", "below", "top", "bottom"])
    new = (name, ("%s: %s\r\n" % (name, rng.choice(["boss@bank.example", "urgent"]))).encode())
    if at is None or where == "bottom":
        message.fields.append(new)
    elif where == "top":
        message.fields.insert(0, new)
    else:
        message.fields.insert(at + (where == "below"), new)
    return "second_%s_%s" % (name.lower(), where)


def header_name_case(rng, message, specs):
    """A field name in other letter case."""
    i = rng.randrange(len(message.fields))
    name, raw = message.fields[i]
    changed = rng.choice([name.upper(), name.lower(), name.swapcase()])
    message.fields[i] = (changed, changed.encode() + raw[len(name):])


def header_refold(rng, message, specs):
    """A field folded anew."""
    i = rng.randrange(len(message.fields))
    name, raw = message.fields[i]
    body = raw[len(name) + 1:]
    spaces = [j for j in range(1, len(body) - 2) if body[j:j + 1] == b" "]
    if spaces:
        j = rng.choice(spaces)
        body = body[:j] + b"\r\n" + body[j:]
    else:
        body = body.replace(b"\r\n", b"\r\n\t") + b"x\r\n"   # a new continuation line
    message.fields[i] = (name, raw[:len(name) + 1] + body)


def header_unfold(rng, message, specs):
    """A folded field unfolded."""
    for i, (name, raw) in enumerate(message.fields):
        if raw.count(b"\r\n") > 1:
            message.fields[i] = (name, raw.replace(b"\r\n\t", b" ").replace(b"\r\n ", b"  ")
                                 .rstrip(b"\r\n") + b"\r\n")
            return None
    return "header_unfold_nothing"


def header_value_whitespace(rng, message, specs):
    """White space added around a colon or inside a value."""
    i = rng.randrange(len(message.fields))
    name, raw = message.fields[i]
    how = rng.choice(["after_colon", "before_colon", "inner", "end"])
    if how == "after_colon":
        raw = raw[:len(name) + 1] + b" \t " + raw[len(name) + 1:]
    elif how == "before_colon":
        raw = raw[:len(name)] + b" " + raw[len(name):]
    elif how == "inner":
        raw = raw[:len(name) + 1] + raw[len(name) + 1:].replace(b" ", b"   ", 1)
    else:
        raw = raw[:-2] + b"  \r\n"
    message.fields[i] = (name, raw)
    return "header_whitespace_" + how


def header_value_changed(rng, message, specs):
    """A field's value changed."""
    at = _index(message, rng.choice(["subject", "from", "to", "date"]))
    if at is not None:
        name, raw = message.fields[at]
        message.fields[at] = (name, raw[:-2] + b"X\r\n")


def header_removed(rng, message, specs):
    """A field removed."""
    at = _index(message, rng.choice(["subject", "from", "to", "date", "message-id", "cc"]))
    if at is not None:
        del message.fields[at]


def header_reordered(rng, message, specs):
    """Two fields swapped."""
    i, j = rng.sample(range(len(message.fields)), 2)
    message.fields[i], message.fields[j] = message.fields[j], message.fields[i]


def header_added_unsigned(rng, message, specs):
    """A field added."""
    message.fields.insert(rng.randrange(len(message.fields) + 1),
                          ("X-Spam", b"X-Spam: no\r\n"))


def _signature_edit(rng, message, edit):
    if not message.signatures:      # moved down among the other fields
        return
    i = rng.randrange(len(message.signatures))
    message.signatures[i] = edit(message.signatures[i])


def sig_b_refolded(rng, message, specs):
    """White space or folding added inside b=."""
    def edit(field):
        cut = _b_value_start(field) + rng.randint(4, 30)
        return field[:cut] + rng.choice([b"\r\n\t", b" ", b"\r\n ", b"\t \t"]) + field[cut:]
    _signature_edit(rng, message, edit)


def sig_b_bad_base64(rng, message, specs):
    """A character that is no base64 in b= (or padding inside it)."""
    def edit(field):
        value_start = _b_value_start(field)
        return field[:value_start + 5] + rng.choice([b"!", b"-", b"_", b"="]) + \
            field[value_start + 6:]
    _signature_edit(rng, message, edit)


def sig_b_truncated(rng, message, specs):
    """Four characters taken out of b=."""
    def edit(field):
        value_start = _b_value_start(field)
        return field[:value_start + 4] + field[value_start + 8:]
    _signature_edit(rng, message, edit)


def _b_value_start(field):
    """Where the b= value starts in a raw signature field (after ``b=`` and spaces)."""
    match = re.search(rb"[;\s]b\s*=\s*", field)
    return match.end()


def sig_tag_changed(rng, message, specs):
    """A signed tag changed after signing."""
    old, new = rng.choice([(b"c=relaxed", b"c=simple"), (b"c=simple", b"c=relaxed"),
                           (b"a=rsa-sha256", b"a=rsa-sha1"), (b"v=1", b"v=1 "),
                           (b"t=", b"t=1"), (b"l=", b"l=1"), (b"h=", b"h=to:"),
                           (b"d=example.org", b"d=EXAMPLE.org")])
    _signature_edit(rng, message, lambda field: field.replace(old, new, 1))
    return "sig_changed_" + old.decode().rstrip("=")


def sig_domain_changed(rng, message, specs):
    """d= changed after signing (the new name has no key)."""
    _signature_edit(rng, message, lambda field: field.replace(b"d=example.org", b"d=example.net"))
    for name in list(message.records):
        message.records[name.replace(DOMAIN, "example.net")] = None


def sig_name_case(rng, message, specs):
    """The DKIM-Signature field name in other letter case."""
    _signature_edit(rng, message, lambda field: rng.choice([b"dkim-signature", b"DKIM-SIGNATURE"])
                    + field[len(b"DKIM-Signature"):])


def sig_moved_down(rng, message, specs):
    """A DKIM-Signature field moved among the other fields."""
    if not message.signatures:
        return "sig_moved_down_nothing"
    field = message.signatures.pop(rng.randrange(len(message.signatures)))
    message.fields.insert(rng.randrange(len(message.fields) + 1), ("DKIM-Signature", field))


def sig_copied(rng, message, specs):
    """A DKIM-Signature field twice."""
    if not message.signatures:
        return "sig_copied_nothing"
    message.signatures.insert(0, message.signatures[rng.randrange(len(message.signatures))])


def _record_edit(rng, message, specs, make):
    spec = rng.choice(specs)
    message.records[_key_name(spec.selector)] = make(spec)


def key_revoked(rng, message, specs):
    """The key revoked (p= empty)."""
    _record_edit(rng, message, specs, lambda s: ["v=DKIM1; k=%s; p=" % s.key.kind])


def key_wrong_k(rng, message, specs):
    """k= another or an unknown key type."""
    _record_edit(rng, message, specs, lambda s: [
        "v=DKIM1; k=%s; p=%s" % (rng.choice(["ed25519", "rsa", "dsa", "RSA"]), s.key.p)])


def key_h_sha1(rng, message, specs):
    """The key's h= list."""
    _record_edit(rng, message, specs, lambda s: [
        "v=DKIM1; k=%s; h=%s; p=%s" % (s.key.kind, rng.choice(["sha1", "sha256", "sha1:sha256",
                                                               "SHA256", "sha512"]), s.key.p)])


def key_service(rng, message, specs):
    """The key's s= list (service types)."""
    _record_edit(rng, message, specs, lambda s: [
        "v=DKIM1; k=%s; s=%s; p=%s" % (s.key.kind, rng.choice(["email", "*", "tlsrpt",
                                                               "email:tlsrpt", "other", "EMAIL"]),
                                       s.key.p)])


def key_flags(rng, message, specs):
    """The key's t= flags."""
    _record_edit(rng, message, specs, lambda s: [
        "v=DKIM1; k=%s; t=%s; p=%s" % (s.key.kind, rng.choice(["y", "s", "y:s", "x"]), s.key.p)])


def key_unknown_tags(rng, message, specs):
    """Tags key records do not define, and a final semicolon."""
    _record_edit(rng, message, specs, lambda s: [
        "v=DKIM1; n=notes here; k=%s; zz=1; p=%s;" % (s.key.kind, s.key.p)])


def key_version(rng, message, specs):
    """v= other than DKIM1, absent, or not first."""
    _record_edit(rng, message, specs, lambda s: [
        rng.choice(["v=DKIM2; p=%s", "p=%s", "k=%s; v=DKIM1; p=%%s" % s.key.kind,
                    "v=dkim1; p=%s"]) % s.key.p])


def key_two_records(rng, message, specs):
    """Two TXT records at the selector."""
    _record_edit(rng, message, specs, lambda s: [s.key.record(), s.key.record()])


def key_missing(rng, message, specs):
    """No such name (NXDOMAIN)."""
    _record_edit(rng, message, specs, lambda s: None)


def key_malformed(rng, message, specs):
    """p= cut, with a bad character or white space, or a record that is no tag list."""
    _record_edit(rng, message, specs, lambda s: [
        rng.choice(["v=DKIM1; p=%s!" % s.key.p[:-4], "v=DKIM1; p=%s" % s.key.p[:40],
                    "v=DKIM1; p=%s" % s.key.p.replace("A", " A ", 3), "garbage",
                    "v=DKIM1; p=%s; p=%s" % (s.key.p, s.key.p)])])


def key_pkcs1(rng, message, specs):
    """An RSA key published as a bare RSAPublicKey (PKCS#1), not SubjectPublicKeyInfo."""
    def make(spec):
        if spec.key.kind != "rsa":
            return [spec.key.record()]
        raw = spec.key.private.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.PKCS1)
        return ["v=DKIM1; k=rsa; p=" + base64.b64encode(raw).decode()]
    _record_edit(rng, message, specs, make)


def key_other_key(rng, message, specs):
    """Another key published at the selector."""
    def make(spec):
        other = [k for k in keys() if k is not spec.key and k.kind == spec.key.kind] or \
            [k for k in keys() if k is not spec.key]
        return [other[0].record()]
    _record_edit(rng, message, specs, make)


MUTATIONS = [body_append, body_last_line_changed, body_trailing_blank_lines,
             body_inner_whitespace, body_dot_line, body_crlf_to_lf, header_crlf_to_lf,
             second_field, header_name_case, header_refold, header_unfold,
             header_value_whitespace, header_value_changed, header_removed, header_reordered,
             header_added_unsigned, sig_b_refolded, sig_b_bad_base64, sig_b_truncated,
             sig_tag_changed, sig_domain_changed, sig_name_case, sig_moved_down, sig_copied,
             key_revoked, key_wrong_k, key_h_sha1, key_service, key_flags, key_unknown_tags,
             key_version, key_two_records, key_missing, key_malformed, key_pkcs1,
             key_other_key]

#: the changes made more often: those that forge what a reader sees (another From or
#: Subject, changed text) more than those that only break a signature
WEIGHTS = {second_field: 5, header_value_changed: 2, body_append: 2,
           body_last_line_changed: 2, header_removed: 2}


# -- the reference --------------------------------------------------------------------------

def dkimpy_results(message, records):
    """dkimpy's verdict for each DKIM-Signature field of ``message`` (top first): ``(True,
    "")`` for a pass, else ``(False, why)``. ``records``: see :class:`Message`."""
    def dnsfunc(name, timeout=5):
        found = records.get(name.decode().rstrip(".").lower())
        return found[0].encode() if found else None     # dkimpy takes the first record

    try:
        count = len([1 for name, _ in dkim.rfc822_parse(message)[0]
                     if name.lower() == b"dkim-signature"])
    except dkim.DKIMException as e:
        return None, "%s: %s" % (type(e).__name__, e)
    results = []
    for idx in range(count):
        try:
            verifier = dkim.DKIM(message, minkey=1024)
            ok = verifier.verify(idx, dnsfunc=dnsfunc)
            results.append((bool(ok), "" if ok else "did not verify"))
        except Exception as e:      # DKIMException, or one of dkimpy's own crashes
            results.append((False, "%s: %s" % (type(e).__name__, e)))
    return results, ""
