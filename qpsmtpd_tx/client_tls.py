"""TLS for the queue plugins' clients: the options for STARTTLS to a next hop, and what it gave.

Built once per plugin load (reading the CA file is start-up work, not per message); Twisted's
TLS stack (pyOpenSSL) does the handshake and service-identity checks the host name or IP
address in the certificate.
"""

import re

from twisted.internet import ssl

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def load_trust_root(path):
    """A trust root of every PEM certificate in ``path``; ValueError naming the file if none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError("cannot read the CA file %s: %s" % (path, e.strerror or e))
    certificates = []
    for block in _PEM_CERT.findall(data):
        try:
            certificates.append(ssl.Certificate.loadPEM(block))
        except Exception as e:
            raise ValueError("bad certificate in the CA file %s: %s" % (path, e))
    if not certificates:
        raise ValueError("no PEM certificate in the CA file %s" % path)
    return ssl.trustRootFromCertificates(certificates)


def client_options(verify_name=None, trust_root=None):
    """Options for ``transport.startTLS``: verifying the peer as ``verify_name`` (a host name
    or IP address) against ``trust_root`` (None: the system's CAs), or, without a name,
    encrypting without checking the certificate (opportunistic TLS, as Postfix's ``may``)."""
    if verify_name is None:
        return ssl.CertificateOptions()
    return ssl.optionsForClientTLS(verify_name, trustRoot=trust_root or ssl.platformTrust())


def session_details(transport):
    """``{"protocol", "cipher", "bits"}`` of the TLS session on ``transport`` (after the
    handshake), e.g. ``TLSv1.3``, ``TLS_AES_256_GCM_SHA384``, 256."""
    connection = transport.getHandle()
    return {"protocol": connection.get_protocol_version_name(),
            "cipher": connection.get_cipher_name(),
            "bits": connection.get_cipher_bits()}
