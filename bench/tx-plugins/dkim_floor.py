"""dkim_floor — a benchmark-only stand-in for ``dkim`` that does nothing but the work no
DKIM verifier can avoid (bench/auth_bench.py ``--floor``; never in a real chain).

At data_post, per message: one SHA-256 of the body as stored and one of the header block
(no canonicalization, no parsing), one RSA-2048 signature check (OpenSSL, through
``cryptography``: the check fails, the header not being canonical, at the same cost), and
one Authentication-Results entry. So ``floor / plain`` is the best ratio a verifier written
in Python on this server could reach, with every line of Python but one hook's taken away.

Arguments: ``KEY SIGNATURE`` — the PEM public key file and a file holding the base64 of a
signature made with its private key (auth_bench writes both).
"""

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from qpsmtpd_tx.codes import DECLINED
from qpsmtpd_tx.plugin import Plugin

_PADDING = PKCS1v15()
_PREHASHED = Prehashed(hashes.SHA256())


class DKIMFloor(Plugin):
    """The unavoidable part of checking one DKIM signature, and nothing else."""

    def init(self, args):
        with open(args[0], "rb") as f:
            self.key = serialization.load_pem_public_key(f.read())
        with open(args[1], "rb") as f:
            self.signature = base64.b64decode(f.read())

    def hook_data_post(self, transaction):
        body_hash = hashlib.sha256(transaction.body.getvalue()).digest()
        header_hash = hashlib.sha256(transaction.header.as_bytes() + body_hash).digest()
        try:
            self.key.verify(self.signature, header_hash, _PADDING, _PREHASHED)
        except InvalidSignature:
            pass
        self.store_auth_results(transaction, "dkim=pass header.d=floor.invalid")
        return DECLINED
