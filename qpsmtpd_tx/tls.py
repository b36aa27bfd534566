"""The server's TLS context: certificate, key, CA, DH parameters, ciphers and protocol versions.

:class:`ServerTLS` is built once per load of the ``tls`` plugin (start-up, SIGHUP), never per
connection; every STARTTLS and SMTPS connection of that plugin chain uses its one OpenSSL
context. Anything wrong with the files (missing, unreadable, not PEM, an expired certificate, a
key that does not belong to the certificate) is a :class:`~qpsmtpd_tx.plugin.PluginError`
naming the file, so start-up stops, or a SIGHUP keeps the old chain.

:func:`default_paths` says where qpsmtpd's ``tls`` plugin looks for the files when its
``plugins`` line names none; ``qpsmtpd-tx tls-cert`` writes there (:func:`write_self_signed`).
"""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from qpsmtpd_tx.plugin import PluginError

#: qpsmtpd's file names, in its ``ssl`` directory
DEFAULT_NAMES = ("qpsmtpd-server.crt", "qpsmtpd-server.key", "qpsmtpd-ca.crt",
                 "qpsmtpd-dhparam.pem")

#: ``tls_protocols`` words → the OpenSSL version each enables
PROTOCOL_VERSIONS = {
    "tlsv1": SSL.TLS1_VERSION,
    "tlsv1_1": SSL.TLS1_1_VERSION,
    "tlsv1_2": SSL.TLS1_2_VERSION,
    "tlsv1_3": SSL.TLS1_3_VERSION,
}
#: names of protocols no OpenSSL build here offers: accepted in ``tls_protocols``, never enabled
_OBSOLETE = ("sslv2", "sslv3")
#: the versions in effect without a ``tls_protocols`` file
DEFAULT_MIN_VERSION = SSL.TLS1_2_VERSION


def base_dir(config):
    """What qpsmtpd's relative TLS paths are relative to: the directory holding the config
    directory (qpsmtpd runs in its home, where ``config/`` is)."""
    return os.path.dirname(os.path.abspath(config.search_dirs()[0]))


def ssl_dir(config):
    """qpsmtpd's ``-d 'ssl' ? 'ssl' : 'config/ssl'``: ``ssl/`` beside the config directory if
    it exists, else ``ssl/`` inside it."""
    beside = os.path.join(base_dir(config), "ssl")
    if os.path.isdir(beside):
        return beside
    return os.path.join(os.path.abspath(config.search_dirs()[0]), "ssl")


def default_paths(config):
    """``(cert, key, ca, dhparam)`` where the ``tls`` plugin looks when given no arguments."""
    directory = ssl_dir(config)
    return tuple(os.path.join(directory, name) for name in DEFAULT_NAMES)


def resolve_paths(config, args):
    """The four paths for ``tls [CERT KEY [CA [DHPARAM]]]``: missing ones get the defaults,
    relative ones are relative to :func:`base_dir`. Returns ``(paths, given)`` where ``given``
    says which of them the line named (a named CA or DH file must exist; a default one need
    not)."""
    if len(args) > 4 or len(args) == 1:
        raise PluginError("expected 'tls [CERT KEY [CA [DHPARAM]]]', got %r" % (" ".join(args),))
    defaults = default_paths(config)
    base = base_dir(config)
    paths = [os.path.join(base, arg) for arg in args] + list(defaults[len(args):])
    given = [True] * len(args) + [False] * (4 - len(args))
    return tuple(paths), tuple(given)


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise PluginError("cannot read the TLS %s %s: %s" % (what, path, e.strerror or e))


def load_certificate(path):
    """The first certificate of PEM file ``path``; PluginError naming it if unusable or expired."""
    try:
        cert = crypto.load_certificate(crypto.FILETYPE_PEM, _read(path, "certificate"))
    except crypto.Error:
        raise PluginError("the TLS certificate %s is not a PEM certificate" % (path,))
    if cert.has_expired():
        raise PluginError("the TLS certificate %s expired on %s" % (
            path, cert.get_notAfter().decode("ascii", "replace")))
    return cert


def parse_protocols(lines):
    """``(min_version, max_version)`` from the ``tls_protocols`` ConfigLines (qpsmtpd's
    IO::Socket::SSL syntax, e.g. ``SSLv23:!SSLv2:!SSLv3`` or ``TLSv1_2:TLSv1_3``).

    No lines: TLS 1.2 and newer. ``SSLv23`` (or only ``!`` words) starts from every version;
    named versions are enabled, ``!`` ones removed. An unknown word is a PluginError naming
    the file and line.
    """
    if not lines:
        return DEFAULT_MIN_VERSION, 0
    wanted, removed, everything = set(), set(), False
    for line in lines:
        for word in line.text.replace(" ", ":").split(":"):
            if not word:
                continue
            negated = word.startswith("!")
            name = word.lstrip("!").lower()
            if name in ("sslv23", "all"):
                everything = everything or not negated
                continue
            if name in _OBSOLETE:
                continue
            if name not in PROTOCOL_VERSIONS:
                raise PluginError("%s:%s: unknown TLS protocol %r (known: SSLv23, %s)" % (
                    line.path, line.lineno, word, ", ".join(
                        n.replace("tlsv", "TLSv") for n in PROTOCOL_VERSIONS)))
            (removed if negated else wanted).add(PROTOCOL_VERSIONS[name])
    if everything or not wanted:
        wanted |= set(PROTOCOL_VERSIONS.values())
    enabled = sorted(wanted - removed)
    if not enabled:
        where = lines[0]
        raise PluginError("%s:%s: no TLS protocol left enabled" % (where.path, where.lineno))
    if enabled != list(range(enabled[0], enabled[-1] + 1)):
        where = lines[0]
        raise PluginError("%s:%s: TLS protocols must be a range without gaps, got %s" % (
            where.path, where.lineno, ":".join(line.text for line in lines)))
    return enabled[0], enabled[-1]


def build_context(cert, key, ca=None, dhparam=None, ciphers="HIGH",
                  protocols=(DEFAULT_MIN_VERSION, 0), ciphers_origin="tls_ciphers"):
    """An OpenSSL server context for one certificate and key, checked: PluginError naming the
    file that is missing, unreadable, expired or does not match.

    ``ciphers`` is an OpenSSL cipher string (TLS 1.2 and older); ``protocols`` a
    ``(min, max)`` pair from :func:`parse_protocols` (max 0: the newest).
    """
    load_certificate(cert)
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(protocols[0])
    if protocols[1]:
        ctx.set_max_proto_version(protocols[1])
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    try:
        ctx.set_cipher_list(ciphers.encode("ascii"))
    except (SSL.Error, UnicodeError):
        raise PluginError("%s: no usable cipher in %r" % (ciphers_origin, ciphers))
    try:
        ctx.use_certificate_chain_file(cert.encode())
    except SSL.Error:
        raise PluginError("the TLS certificate %s cannot be used" % (cert,))
    try:
        pkey = crypto.load_privatekey(crypto.FILETYPE_PEM, _read(key, "key"))
    except crypto.Error:
        raise PluginError("the TLS key %s is not a PEM private key (or is encrypted)" % (key,))
    try:
        ctx.use_privatekey(pkey)
        ctx.check_privatekey()
    except SSL.Error:
        raise PluginError("the TLS key %s does not belong to the certificate %s" % (key, cert))
    if ca is not None:
        _read(ca, "CA file")
        try:
            ctx.load_verify_locations(ca.encode())
        except SSL.Error:
            raise PluginError("the TLS CA file %s holds no PEM certificate" % (ca,))
        # Ask for a client certificate (its subject becomes a note) but accept any or none:
        # plugins decide what a verified one is worth.
        ctx.set_verify(SSL.VERIFY_PEER, _note_verification)
    if dhparam is not None:
        _read(dhparam, "DH parameter file")
        try:
            ctx.load_tmp_dh(dhparam.encode())
        except SSL.Error:
            raise PluginError("the TLS DH parameter file %s is not PEM DH parameters" % (dhparam,))
    ctx.set_session_id(b"qpsmtpd-tx")
    # an idle connection keeps no 16+ KiB read/write buffers (measured: 56 → 30 KiB each)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    return ctx


def sni_pairs(directory):
    """``{name: (cert, key)}`` for the ``NAME.crt``/``NAME.key`` pairs in ``directory``;
    PluginError naming a certificate without its key."""
    pairs = {}
    for entry in sorted(os.listdir(directory)):
        if entry.endswith(".crt") and not entry.startswith("."):
            name = entry[:-4].lower().rstrip(".")
            key = os.path.join(directory, entry[:-4] + ".key")
            if not os.path.exists(key):
                raise PluginError("the TLS certificate %s has no key %s"
                                  % (os.path.join(directory, entry), key))
            pairs[name] = (os.path.join(directory, entry), key)
    return pairs


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """The server's TLS contexts, checked and built at once; a connection per client for Twisted.

    The arguments are :func:`build_context`'s for the default certificate; ``sni`` maps server
    names to ``(cert, key)`` pairs (:func:`sni_pairs`), chosen by the name a client asks for
    (SNI), built with the same CA, DH parameters, ciphers and protocols.
    """

    def __init__(self, cert, key, ca=None, dhparam=None, sni=None, **options):
        self.cert_path, self.key_path, self.ca_path, self.dhparam_path = cert, key, ca, dhparam
        self.context = build_context(cert, key, ca, dhparam, **options)
        self.by_name = {name: build_context(c, k, ca, dhparam, **options)
                        for name, (c, k) in (sni or {}).items()}
        if self.by_name:
            self.context.set_tlsext_servername_callback(self._choose_certificate)

    def _choose_certificate(self, connection):
        name = connection.get_servername()
        if name:
            ctx = self.by_name.get(name.decode("ascii", "replace").lower().rstrip("."))
            if ctx is not None:
                connection.set_context(ctx)

    def serverConnectionForTLS(self, tls_protocol):
        """A new OpenSSL server connection on the shared context (for ``startTLS``)."""
        return SSL.Connection(self.context, None)


def _note_verification(connection, x509, errno, depth, ok):
    """Accept every client certificate; remember whether the chain verified."""
    if not ok:
        connection.set_app_data(False)
    return True


def client_verified(connection):
    """True if the client sent a certificate that verified against the CA file."""
    return connection.get_peer_certificate() is not None and connection.get_app_data() is not False


def session_notes(connection):
    """The connection notes for a finished handshake on OpenSSL ``connection``: qpsmtpd's
    ``tls_enabled``, and ``tls_protocol``, ``tls_cipher``, ``tls_cipher_comment`` (the text
    the Received header and the ``received_line`` hook get), ``tls_client_subject``."""
    cipher = connection.get_cipher_name()
    notes = {
        "tls_enabled": 1,
        "tls_protocol": connection.get_protocol_version_name(),
        "tls_cipher": cipher,
        "tls_cipher_bits": connection.get_cipher_bits(),
        "tls_cipher_comment": "(%s encrypted) " % cipher,
    }
    peer = connection.get_peer_certificate()
    if peer is not None:
        notes["tls_client_subject"] = "".join(
            "/%s=%s" % (k.decode("ascii", "replace"), v.decode("utf-8", "replace"))
            for k, v in peer.get_subject().get_components())
        notes["tls_client_verified"] = client_verified(connection)
    return notes


def write_self_signed(cert_path, key_path, hostname, days=3650):
    """Write a new self-signed certificate for ``hostname`` and its key (mode 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(key, hashes.SHA256()))
    for path in (cert_path, key_path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
