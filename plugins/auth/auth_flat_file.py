"""auth/auth_flat_file — SMTP AUTH against a flat file of addresses and clear-text passwords.

Offers PLAIN, LOGIN and CRAM-MD5. A successful AUTH makes the client a relay client.

Arguments: none.

Config files:
  ``flat_auth_pw``   lines ``user@domain:password`` (the user must log in with the full address;
                     compared in lower case; the password may contain ``:``).

A ``flat_auth_pw`` that cannot be read after start-up (made unreadable, a circular
``$include``, then SIGHUP) accepts no login until it can be read again: the plugin declines
every AUTH (another auth plugin may still know the user; else ``535``), and the error is
logged at LOGERROR once (unlike lists of other plugins, whose previous lines stay in use: an
edit that revoked a password must not leave the old one working). At start-up it stops the
server, naming it.

Replies (through the core): ``235 PLAIN authentication successful for u@example.org -
auth_flat_file``. A wrong password is DENY (``auth_flat_file - wrong password``); an unknown
user or a user without a domain is DECLINED (another auth plugin may know it). Either way the
client gets the same ``535 5.7.8 Authentication credentials invalid``, after the core's
``auth_failure_delay``; the plugin's reason goes to the log. (qpsmtpd 0.94 answered
``535 LOGIN authentication failed for u@example.org - auth_flat_file - wrong password`` to a
wrong password but no reason to an unknown user, telling the two apart.)
"""

from qpsmtpd_tx.auth import validate_password
from qpsmtpd_tx.codes import DECLINED, DENY, LOGERROR, LOGINFO
from qpsmtpd_tx.config import ConfigError
from qpsmtpd_tx.plugin import Plugin


class AuthFlatFile(Plugin):
    """Check SMTP AUTH credentials against ``flat_auth_pw``."""

    def init(self, args):
        super().init(args)
        self.config("flat_auth_pw")     # a file that cannot be read stops start-up

    def register(self, registry):
        for hook in ("auth-plain", "auth-login", "auth-cram-md5"):
            registry.register(hook, self, self.authenticate)

    def authenticate(self, transaction, method, user, clear, digest, ticket):
        if clear is None and digest is None:
            return DENY, "authflat - missing password"
        user = user.lower()
        if "@" not in user:
            self.log(LOGINFO, "fail: missing domain", transaction)
            return DECLINED
        try:    # not self.config: its previous lines would outlive a revoked password
            lines = self.server.config.get("flat_auth_pw")
        except ConfigError as e:
            self.log_once("flat_auth_pw", LOGERROR,
                          "no login accepted, flat_auth_pw cannot be read: %s" % e, transaction)
            return DECLINED     # (not DENYSOFT: that would end the other auth plugins' turn)
        self.problem_over("flat_auth_pw")
        stored = None
        for line in lines:
            name, sep, password = line.partition(":")
            if sep and name.lower() == user:
                stored = password
                break
        if stored is None:
            self.log(LOGINFO, "fail: no such user: %s" % user, transaction)
            return DECLINED
        return validate_password("auth_flat_file", method, clear=clear, digest=digest,
                                 ticket=ticket, src_clear=stored)
