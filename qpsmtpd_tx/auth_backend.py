"""What the AUTH back end plugins (``auth/*``) share: their hooks, a time limit, and the answer
when the back end cannot be asked.

A back end plugin derives from :class:`AuthBackend`, lists the mechanisms it can check in
``mechanisms`` and implements :meth:`AuthBackend.check` (may be ``async``). The core's rules
then apply (:mod:`qpsmtpd_tx.auth`): OK is ``235``; DENY or DECLINED (from every auth plugin)
is the one ``535 5.7.8 Authentication credentials invalid``; DENYSOFT is ``454 4.7.0
Temporary authentication failure``, neither delayed nor counted as a failure.

A check that raises :class:`BackendUnavailable`, or takes longer than the plugin's
``timeout``, answers DENYSOFT, with the reason logged (never the user's secret).
"""

from twisted.internet import defer, reactor

from qpsmtpd_tx.codes import DECLINED, DENYSOFT, LOGERROR
from qpsmtpd_tx.plugin import Plugin
from qpsmtpd_tx.plugin_args import positive

#: seconds a back end may take to answer one AUTH, unless the plugin's ``timeout`` says
DEFAULT_TIMEOUT = 10.0


class BackendUnavailable(Exception):
    """The back end could not answer (down, unreachable, a garbled answer); the text says why."""


class AuthBackend(Plugin):
    """Base of the AUTH back end plugins: registers ``auth-<mechanism>`` for each of
    ``mechanisms`` and turns an unavailable back end into a temporary failure."""

    #: the SASL mechanisms (lower case) the back end can check
    mechanisms = ("plain", "login")
    #: seconds one check may take (the plugins set it from a ``timeout`` argument)
    timeout = DEFAULT_TIMEOUT
    #: the clock of the time limit (tests may put a ``task.Clock`` here)
    clock = reactor

    def set_timeout(self, value):
        """Set :attr:`timeout` from a ``timeout`` argument's text (PluginError if bad)."""
        if value is not None:
            self.timeout = positive("timeout", value)

    def register(self, registry):
        for mechanism in self.mechanisms:
            registry.register("auth-" + mechanism, self, self.authenticate)

    def check(self, transaction, method, user, clear, digest, ticket):
        """The back end's verdict: a code or ``(code, text)``, or a Deferred/coroutine of one.

        ``clear`` is the password (PLAIN, LOGIN), ``digest`` and ``ticket`` the CRAM-MD5
        answer and challenge. Raise :class:`BackendUnavailable` when the back end cannot say.
        """
        raise NotImplementedError

    async def authenticate(self, transaction, method, user, clear, digest, ticket):
        """The hook: :meth:`check` within :attr:`timeout`; DENYSOFT if the back end cannot say."""
        if clear is None and digest is None:
            return DECLINED
        checking = defer.maybeDeferred(self.check, transaction, method, user, clear, digest,
                                       ticket)
        checking.addTimeout(self.timeout, self.clock)
        try:
            return await checking
        except defer.TimeoutError:
            return self.unavailable(transaction, "no answer within %g s" % self.timeout)
        except BackendUnavailable as e:
            return self.unavailable(transaction, str(e))

    def unavailable(self, transaction, why):
        """Log ``why`` and answer DENYSOFT (the client gets 454 and may try again later)."""
        self.log(LOGERROR, "skip: %s" % why, transaction)
        return DENYSOFT, "%s - temporary auth error" % (self.path or "").rsplit("/", 1)[-1]
