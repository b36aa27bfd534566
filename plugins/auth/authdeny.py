"""auth/authdeny — refuses every AUTH attempt (qpsmtpd's proof of concept of the auth hooks).

It checks nothing and fails every user, whatever the password: useful to see the AUTH
exchange work, never in production. It hooks the generic ``auth`` hook, so PLAIN, LOGIN and
CRAM-MD5 are all offered; it answers DECLINED, so an auth plugin listed before it in
``plugins`` (whose mechanism hooks run first) still decides.

Arguments: none. Config files: none.

Replies (through the core): ``535 5.7.8 Authentication credentials invalid`` (after the
core's ``auth_failure_delay``). It logs ``fail: cannot authenticate`` at LOGWARN.

Intended differences from qpsmtpd 0.94: its text ``USER is not free to abuse my relay`` goes
to the log only (0.94 sent it after ``535 ... authentication failed for USER - ``), as the
core never tells the client why an AUTH failed.
"""

from qpsmtpd_tx.codes import DECLINED, LOGWARN
from qpsmtpd_tx.plugin import Plugin


class AuthDeny(Plugin):
    """Fail every AUTH attempt."""

    def hook_auth(self, transaction, method, user, clear, digest, ticket):
        self.log(LOGWARN, "fail: cannot authenticate", transaction)
        return DECLINED, "%s is not free to abuse my relay" % user
