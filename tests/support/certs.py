"""Certificates for the TLS tests, made with the ``openssl`` command (no network).

``make_certs(directory, hostname)`` writes a test CA (``ca.crt``, ``ca.key``) and a leaf
certificate it signed (``HOSTNAME.crt``, ``HOSTNAME.key``) for ``hostname`` and 127.0.0.1
(subjectAltName DNS and IP), valid for two days; it returns the paths as a :class:`Certs`.
"""

import os
import subprocess


class Certs:
    """Paths of one test CA and the leaf it signed: ``ca``, ``cert``, ``key``."""

    def __init__(self, ca, cert, key):
        self.ca = ca
        self.cert = cert
        self.key = key


def _openssl(*args):
    subprocess.run(("openssl",) + args, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


def make_certs(directory, hostname, ca_name="qpsmtpd-tx test CA"):
    """Write a CA and a leaf for ``hostname`` into ``directory`` (see the module docstring)."""
    os.makedirs(directory, exist_ok=True)
    path = lambda name: os.path.join(directory, name)
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl("req", "-x509", *key, "-keyout", path("ca.key"), "-out", path("ca.crt"),
             "-days", "2", "-subj", "/CN=" + ca_name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-new", *key, "-keyout", path(hostname + ".key"), "-out", path(hostname + ".csr"),
             "-subj", "/CN=" + hostname)
    with open(path(hostname + ".ext"), "w") as f:
        f.write("subjectAltName = DNS:%s, IP:127.0.0.1\n"
                "extendedKeyUsage = serverAuth\n" % hostname)
    _openssl("x509", "-req", "-in", path(hostname + ".csr"), "-CA", path("ca.crt"),
             "-CAkey", path("ca.key"), "-CAcreateserial", "-days", "2",
             "-extfile", path(hostname + ".ext"), "-out", path(hostname + ".crt"))
    return Certs(path("ca.crt"), path(hostname + ".crt"), path(hostname + ".key"))
