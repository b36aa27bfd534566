"""DKIM signing with qpsmtpd's key layout: ``<config>/dkim/<domain>/selector`` (first line:
the selector) and ``<config>/dkim/<domain>/private`` (a PEM private key: RSA, as
``openssl genrsa`` writes it, PKCS#1 or PKCS#8; or Ed25519, ``openssl genpkey -algorithm
ed25519``, signed as ``ed25519-sha256``, RFC 8463).

The key of a domain with no directory of its own is its nearest parent's that has one
(``mail.example.org`` → ``example.org``); a directory that is a symbolic link signs with the
domain it points to (``client.com -> example.org`` signs as ``d=example.org``).

Signatures are ``c=relaxed/relaxed`` over the fields in :data:`SIGNED` present in the
message, each of :data:`OVERSIGNED` once more than present, so no instance can be added
without breaking the signature. The body hash comes from :mod:`qpsmtpd_tx.dkim_body`
(streamed); dkimpy hashes and signs the header fields.
"""

import base64
import os
import time

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import parse_pem_private_key

from qpsmtpd_tx.file_version import file_version

#: the fields signed when present (RFC 6376 section 5.4.1's list)
SIGNED = ("from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
          "mime-version", "content-type", "content-transfer-encoding", "content-id",
          "content-description", "resent-date", "resent-from", "resent-sender", "resent-to",
          "resent-cc", "resent-message-id", "in-reply-to", "references", "list-id",
          "list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
          "list-archive", "list-unsubscribe-post")
#: the fields a message has at most one of (and MIME's): signed once more than present
OVERSIGNED = ("from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
              "mime-version", "content-type", "content-transfer-encoding", "in-reply-to",
              "references")
POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


class SigningError(Exception):
    """The key directory of a domain cannot be used (the message says which file and why)."""


class SigningKey:
    """A domain's selector and private key, read from its key directory."""

    def __init__(self, domain, directory):
        self.domain = domain
        self.directory = directory
        try:
            with open(os.path.join(directory, "selector"), encoding="ascii") as f:
                self.selector = f.readline().strip()
            with open(os.path.join(directory, "private"), "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
        except (OSError, ValueError, TypeError) as e:
            raise SigningError("%s: %s" % (directory, e))
        if not self.selector:
            raise SigningError("%s/selector: no selector" % directory)
        self.private = key          # cryptography's key (ARC seals with it)
        if isinstance(key, Ed25519PrivateKey):
            self.algorithm = b"ed25519-sha256"
            self.key = _Ed25519Signer(key)
        elif isinstance(key, RSAPrivateKey):
            self.algorithm = b"rsa-sha256"
            self.key = parse_pem_private_key(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption()))
        else:
            raise SigningError("%s/private: neither an RSA nor an Ed25519 key" % directory)


class KeyCache:
    """SigningKeys by key directory, each read again when its files changed."""

    def __init__(self):
        self._keys = {}

    def get(self, domain, directory):
        """The SigningKey of ``directory``; raises SigningError, for a key that cannot be
        used the same one until its files change (they are not read again for each message)."""
        try:
            stamp = (file_version(os.stat(os.path.join(directory, "private"))),
                     file_version(os.stat(os.path.join(directory, "selector"))))
        except OSError as e:
            raise SigningError("%s: %s" % (directory, e))
        cached = self._keys.get(directory)
        if cached is None or cached[0] != stamp:
            try:
                key = SigningKey(domain, directory)
            except SigningError as e:
                key = e
            cached = self._keys[directory] = (stamp, key)
        if isinstance(cached[1], SigningError):
            raise cached[1].with_traceback(None)
        return cached[1]


class _Ed25519Signer:
    """An Ed25519 key with the signing interface dkimpy expects (PyNaCl's)."""

    class _Signed:
        def __init__(self, signature):
            self.signature = signature

    def __init__(self, key):
        self._key = key

    def sign(self, data):
        return self._Signed(self._key.sign(data))


def find_key_dir(dkim_dir, domain):
    """``(signing domain, key directory)`` for mail from ``domain``, or None."""
    labels = domain.lower().strip(".").split(".")
    for i in range(len(labels) - 1):
        candidate = ".".join(labels[i:])
        path = os.path.join(dkim_dir, candidate)
        if os.path.isdir(path):
            if os.path.islink(path):
                candidate = os.path.basename(os.path.realpath(path))
            return candidate, path
    return None


def fields_to_sign(field_names):
    """The ``h=`` list for a message whose fields are ``field_names`` (lower case)."""
    present = [name for name in field_names if name in SIGNED]
    return present + [name for name in OVERSIGNED if name in present or name == "from"]


def sign(key, header_block, body_hash, now=None):
    """The value of a DKIM-Signature field (text, LF-folded) for the message with LF header
    block ``header_block``, whose relaxed/sha256 :class:`~qpsmtpd_tx.dkim_body.BodyHash`
    is ``body_hash``."""
    signer = dkim.DKIM(header_block.replace(b"\n", b"\r\n") + b"\r\n",
                       signature_algorithm=key.algorithm)
    signer.hasher = dkim.HASH_ALGORITHMS[key.algorithm]
    names = [name.decode("ascii", "replace").lower() for name, _ in signer.headers]
    include = [name.encode("ascii") for name in fields_to_sign(names)]
    tags = [
        (b"v", b"1"), (b"a", key.algorithm), (b"c", b"relaxed/relaxed"),
        (b"d", key.domain.encode("ascii")), (b"s", key.selector.encode("ascii")),
        (b"t", str(int(time.time() if now is None else now)).encode("ascii")),
        (b"h", b":".join(include)), (b"bh", base64.b64encode(body_hash.digest())),
        # a placeholder long enough that b= is folded onto a line of its own
        (b"b", b"0" * 60),
    ]
    value = signer.gen_header(tags, include, POLICY, b"DKIM-Signature", key.key)
    return value.decode("ascii").replace("\r\n", "\n").strip()
