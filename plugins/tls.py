"""tls — STARTTLS (RFC 3207) and SMTPS (RFC 8314), under qpsmtpd's name and arguments.

Usage in ``plugins``::

    tls [CERT KEY [CA [DHPARAM]]]

  ``CERT``     the server certificate (PEM; intermediates may follow it in the same file).
               Default ``ssl/qpsmtpd-server.crt``.
  ``KEY``      its private key (PEM, not encrypted). Default ``ssl/qpsmtpd-server.key``.
  ``CA``       CA certificates (PEM): clients are asked for a certificate and the ones sent
               are checked against these. Default ``ssl/qpsmtpd-ca.crt``, used if it exists.
  ``DHPARAM``  Diffie-Hellman parameters (PEM) for DHE ciphers. Default
               ``ssl/qpsmtpd-dhparam.pem``, used if it exists.

Relative paths are relative to the directory that holds the config directory (qpsmtpd's
home, where it runs); the default ``ssl`` directory is ``ssl/`` there if it exists, else
``ssl/`` inside the config directory, as qpsmtpd's ``-d 'ssl' ? 'ssl' : 'config/ssl'``.
``qpsmtpd-tx tls-cert --config DIR`` writes a self-signed pair to the default place.

The certificate and key are loaded and checked once, when the plugin loads (start-up, or a
SIGHUP): a missing or unreadable file, an expired certificate or a key that does not belong to
the certificate stops start-up with an error naming the file (after a SIGHUP, the error is
logged and the running plugin chain, with the old certificate, stays). Every connection of a
chain shares that one TLS context.

Config files:
  ``tls_ciphers``    OpenSSL cipher string for TLS 1.2 and older (default ``HIGH``).
  ``tls_protocols``  the TLS versions, in qpsmtpd's syntax: ``SSLv23:!SSLv2:!SSLv3``,
                     ``TLSv1_2:TLSv1_3``, ``!TLSv1:!TLSv1_1``… Without the file: TLS 1.2
                     and newer. Versions must form a range (no gaps).
  ``tls_sni_dir``    a directory of ``NAME.crt``/``NAME.key`` pairs (default ``ssl/sni`` if
                     it exists): a client that asks for server name NAME (SNI) gets that
                     certificate, any other the default one. Every pair is checked at load.
  ``tls_before_auth`` (core item) defaults to 1 when this plugin is loaded: AUTH is neither
                     offered nor accepted before TLS.

Behaviour:
  - EHLO advertises ``STARTTLS`` while the connection is not encrypted (this plugin adds it to
    the ``capabilities`` transaction note, as qpsmtpd's does).
  - ``STARTTLS`` → ``220 Go ahead with TLS``, then the handshake; afterwards the session
    starts over (RFC 3207 4.2): HELO/EHLO, AUTH and the transaction are forgotten, the
    connection notes are kept. STARTTLS after a successful AUTH is allowed; the client must
    AUTH again on TLS to be authenticated (and a relay client through AUTH). The core does this, not the plugin (see ``session`` docs).
  - Connection notes after the handshake: ``tls_enabled`` (1), ``tls_protocol``
    (``TLSv1.3``), ``tls_cipher`` (OpenSSL's name), ``tls_cipher_bits``,
    ``tls_cipher_comment`` (``(<cipher> encrypted) ``), and, if the client sent a
    certificate, ``tls_client_subject`` (``/CN=…``) and ``tls_client_verified``.
  - ``Received: … with ESMTPS`` (``ESMTPSA`` with AUTH) and ``(<cipher> encrypted)``.

Replies to STARTTLS:
  - ``220 Go ahead with TLS``;
  - ``501 Syntax error (no parameters allowed)``;
  - ``503 please say hello first ...`` before EHLO; ``503 5.5.1 MAIL transaction in
    progress`` inside a transaction; ``503 5.5.1 TLS already active`` on TLS;
  - ``421 4.5.0 Commands sent after STARTTLS before its reply; closing`` when the client
    pipelined anything after STARTTLS (those bytes are dropped, never executed).

Differences from qpsmtpd 0.94, on purpose:
  - the default minimum protocol is TLS 1.2 (0.94 allowed whatever IO::Socket::SSL allowed,
    TLS 1.0 included); 0.94 has no ``tls_protocols`` nor DH parameters (qpsmtpd HEAD has);
  - a missing default CA file is not an error (0.94 silently disabled TLS), and a missing or
    broken certificate or key stops start-up (0.94 logged and ran without STARTTLS);
  - STARTTLS with arguments gets 501 (0.94: 500), a second STARTTLS 503 (0.94: 500);
  - ``tls_before_auth`` does what its name says and is on by default with this plugin (0.94's
    test is inverted and defaults to off);
  - SMTPS is a listen option (``--listen-tls``), not a connect hook on port 465;
  - several certificates by SNI (0.94 has one).
"""

import os

from qpsmtpd_tx.codes import DECLINED, LOGDEBUG
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.tls import ServerTLS, base_dir, parse_protocols, resolve_paths, sni_pairs, ssl_dir


class TLS(Plugin):
    """Loads the certificate once and offers STARTTLS in EHLO (the session does the rest)."""

    #: the ServerTLS the session uses for STARTTLS and SMTPS
    server_tls = None

    def init(self, args):
        """``tls [CERT KEY [CA [DHPARAM]]]``: load and check the files now."""
        (cert, key, ca, dhparam), given = resolve_paths(self.server.config, list(args))
        if not given[2] and not os.path.exists(ca):
            ca = None
        if not given[3] and not os.path.exists(dhparam):
            dhparam = None
        cipher_lines = self.server.config.get_lines("tls_ciphers")
        ciphers = cipher_lines[0].text if cipher_lines else "HIGH"
        origin = ("%s:%s" % (cipher_lines[0].path, cipher_lines[0].lineno) if cipher_lines
                  else "tls_ciphers")
        protocols = parse_protocols(self.server.config.get_lines("tls_protocols"))
        sni = self._sni_directory()
        self.server_tls = ServerTLS(cert, key, ca, dhparam, sni=sni_pairs(sni) if sni else None,
                                    ciphers=ciphers, protocols=protocols, ciphers_origin=origin)
        self.log(LOGDEBUG, "certificate %s, ciphers %s" % (cert, ciphers))

    def _sni_directory(self):
        """``tls_sni_dir``'s directory (it must exist), else ``ssl/sni`` if it exists, else None."""
        lines = self.server.config.get_lines("tls_sni_dir")
        if lines:
            path = os.path.join(base_dir(self.server.config), lines[0].text)
            if not os.path.isdir(path):
                raise PluginError("%s:%s: %s is not a directory" % (lines[0].path, lines[0].lineno,
                                                                  path))
            return path
        path = os.path.join(ssl_dir(self.server.config), "sni")
        return path if os.path.isdir(path) else None

    def hook_ehlo(self, transaction, *args):
        """Advertise STARTTLS while the connection is in plain text."""
        if not transaction.connection.tls:
            capabilities = transaction.notes.setdefault("capabilities", [])
            if "STARTTLS" not in capabilities:
                capabilities.append("STARTTLS")
        return DECLINED
