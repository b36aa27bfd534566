"""tls_cert — not a plugin: qpsmtpd's script that makes a self-signed certificate; use ``qpsmtpd-tx tls-cert``.

qpsmtpd 0.94 ships ``tls_cert`` among its plugins, but it is a script: named in
``plugins``, Perl qpsmtpd runs it while loading (it writes a CA, a key and a certificate
under ``ssl/`` with openssl, or dies). Here such a line stops start-up with a message naming
the command that does that work: ``qpsmtpd-tx tls-cert [--config DIR] [--hostname NAME]
[--force]`` writes ``ssl/qpsmtpd-server.crt`` and ``.key``, where the ``tls`` plugin looks
by default.

Arguments, config files, replies: none.
"""

from qpsmtpd_tx.plugin import Plugin, PluginError


class TlsCert(Plugin):
    """Refuses to load, pointing to ``qpsmtpd-tx tls-cert``."""

    def init(self, args):
        """Always refuse, naming the command to use."""
        raise PluginError("tls_cert is qpsmtpd's script that makes a self-signed certificate, "
                          "not a plugin: remove the line, run `qpsmtpd-tx tls-cert --config DIR` "
                          "once, and load the tls plugin")
