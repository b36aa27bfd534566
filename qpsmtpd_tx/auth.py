"""SMTP AUTH (RFC 4954): the PLAIN, LOGIN and CRAM-MD5 exchanges and the auth hooks.

The exchange only gathers credentials; plugins decide. For mechanism ``M`` the ``auth-m`` hooks
run first, then, if all declined, the generic ``auth`` hooks, each called as
``hook(transaction, mechanism, user, clear_password, hashed_password, ticket)``. OK answers
``235 M authentication successful for USER`` and makes the client a relay client. AUTH is
offered (and accepted) only after an EHLO that advertised it, as in qpsmtpd.

Intended differences from qpsmtpd 0.94, against password guessing and reply injection:

* every failed check is answered ``535 5.7.8 Authentication credentials invalid`` (RFC 4954),
  whatever the plugins said: qpsmtpd's ``535 M authentication failed for USER - <plugin text>``
  told an unknown user (no text) from a wrong password. The plugins' text is logged instead;
* a failure (also a malformed or over-long answer) is answered only after ``auth_failure_delay``
  seconds (default 1), on the reactor's clock; the ``auth_max_failures``-th (default 3) of a
  connection is answered ``421 4.7.0`` and the connection closed. ``*`` cancels any exchange
  with ``501`` and does not count;
* AUTH during a mail transaction is ``503 5.5.1 MAIL transaction in progress`` (RFC 4954 §4);
* an answer longer than the core's AUTH line limit ends the exchange with
  ``500 5.5.6 Authentication Exchange line is too long`` (RFC 4954 §6), instead of taking the
  next line as the answer;
* a user name with control characters fails without asking the plugins (it would reach the
  Authentication-Results field), and client text in replies is escaped and cut short.
"""

import base64
import binascii
import os
import time

from twisted.internet import reactor
from twisted.internet.task import deferLater

from qpsmtpd_tx import codes
from qpsmtpd_tx.crypt_hash import crypt_matches
from qpsmtpd_tx.printable import is_printable, printable

MECHANISM_HOOKS = {"PLAIN": "auth-plain", "LOGIN": "auth-login", "CRAM-MD5": "auth-cram-md5"}
CREDENTIALS_INVALID = "5.7.8 Authentication credentials invalid"
#: RFC 4954: the auth back end failed; the client may try again later
TEMPORARY_FAILURE = "4.7.0 Temporary authentication failure"
#: RFC 4422: a SASL mechanism name has at most 20 characters
MAX_MECHANISM = 20
#: the most of a client's user name repeated in a reply or a log line
MAX_USER_ECHO = 100


class Authenticator:
    """Offers the mechanisms that auth plugins registered, and runs exchanges."""

    #: the clock of the delay after a failure (tests put a ``task.Clock`` here)
    clock = reactor

    def __init__(self, server, hooks=None):
        """``hooks``: the registry whose auth hooks count (default ``server.hooks``)."""
        self.server = server
        self.hooks = server.hooks if hooks is None else hooks

    def mechanisms(self):
        """Mechanisms to advertise: all three with a generic ``auth`` hook, else those hooked."""
        hooks = self.hooks
        if hooks.has("auth"):
            return ["PLAIN", "LOGIN", "CRAM-MD5"]
        return [m for m, hook in MECHANISM_HOOKS.items() if hooks.has(hook)]

    def start(self, session, rest):
        """Handle an ``AUTH MECH [initial-response]`` line."""
        refusal = session.core.refusal("auth")
        if refusal is not None:
            return session.respond(503, refusal)
        words = rest.split()
        mechanism = words[0].upper() if words else ""
        if mechanism not in self.mechanisms():
            return session.respond(504, "Unimplemented authentification mechanism: %s"
                                   % printable(mechanism.lower(), limit=MAX_MECHANISM))
        exchange = Exchange(self, session, mechanism)
        return exchange.begin(words[1] if len(words) > 1 else None)


def _b64decode(text):
    return base64.b64decode(text.strip().encode("ascii"), validate=True)


def _b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class Exchange:
    """One AUTH exchange: prompts, answers, then the hooks.

    The core is in its AUTH state from :meth:`begin` until the exchange ends (:meth:`_end`):
    success, a failure, a cancel, or an error in a hook.
    """

    def __init__(self, authenticator, session, mechanism):
        self.authenticator = authenticator
        self.server = authenticator.server
        self.session = session
        self.mechanism = mechanism
        self.user = None
        self.ticket = None
        self._next = None

    def begin(self, initial):
        """Start the exchange: use the initial response if the client sent one, else prompt."""
        self.session.core.auth(self)
        if self.mechanism == "PLAIN":
            if initial is not None and initial != "=":
                return self._plain(initial)
            return self._prompt("", self._plain)
        if self.mechanism == "LOGIN":
            if initial is not None:
                return self._login_user(initial)
            return self._prompt(_b64("Username:"), self._login_user)
        self.ticket = "<%s.%d@%s>" % (binascii.hexlify(os.urandom(8)).decode(), int(time.time()),
                                      self.server.me)
        return self._prompt(_b64(self.ticket), self._cram)

    def _prompt(self, challenge, then):
        self._next = then
        self.session.respond(334, [challenge or " "])

    def _end(self, success=False):
        """The exchange is over: the session reads commands again.

        A plugin may have closed the connection meanwhile (the core is CLOSED then, for good,
        and holds no exchange).
        """
        if self.session.core.auth_exchange is self:
            self.session.core.auth_end(success)

    def abort(self):
        """End the exchange without a reply (a hook failed; the session answers 451)."""
        self._end()

    def answer(self, line):
        """A line from the client while the exchange waits for an answer."""
        if line.strip() == "*":
            self._end()
            return self.session.respond(501, "Authentication cancelled")
        return self._next(line)

    def line_too_long(self):
        """The answer was longer than the core accepts (it dropped it): the exchange ends."""
        return self._fail(500, "5.5.6 Authentication Exchange line is too long")

    def _fail(self, code, text):
        """End the exchange unsuccessfully: count the failure, answer after the delay.

        The ``auth_max_failures``-th failure of the connection (connection note
        ``auth_failures``) is answered ``421`` instead, and the connection is closed.
        """
        self._end()
        session = self.session
        notes = session.connection.notes
        failures = notes["auth_failures"] = notes.get("auth_failures", 0) + 1
        limit = self.server.auth_max_failures

        def reply(_=None):
            if limit and failures >= limit:
                session.log(codes.LOGNOTICE, "%d failed AUTH attempts from %s: disconnecting"
                            % (failures, session.connection.remote_ip))
                session.respond(421, "4.7.0 %s Too many failed authentication attempts, "
                                "closing connection" % self.server.me)
                return session.disconnect()
            return session.respond(code, text)

        delay = self.server.auth_failure_delay
        if not delay:
            return reply()
        return deferLater(self.authenticator.clock, delay, reply)

    def _plain(self, data):
        try:
            authzid, user, password = _b64decode(data).decode("utf-8").split("\0")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self._fail(501, "Invalid base64 data or PLAIN response")
        if not user:
            return self._fail(535, "Authentication invalid" + (
                " (%s)" % printable(authzid, limit=MAX_USER_ECHO) if authzid else ""))
        if authzid and authzid != user:
            return self._fail(535, "Authentication invalid for %s"
                              % printable(user, limit=MAX_USER_ECHO))
        return self._check(user, password, None)

    def _login_user(self, data):
        try:
            self.user = _b64decode(data).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self._fail(501, "Invalid base64 data")
        return self._prompt(_b64("Password:"), self._login_password)

    def _login_password(self, data):
        try:
            password = _b64decode(data).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self._fail(501, "Invalid base64 data")
        return self._check(self.user, password, None)

    def _cram(self, data):
        try:
            user, digest = _b64decode(data).decode("utf-8").rsplit(" ", 1)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self._fail(504, "Invalid authentication string")
        return self._check(user, None, digest)

    def _check(self, user, password, digest):
        session = self.session
        if not is_printable(user):
            # No plugin is asked: such a name would reach the Authentication-Results field.
            session.log(codes.LOGNOTICE, "authentication failed for %s from %s: control "
                        "characters in the user name" % (printable(user, limit=MAX_USER_ECHO),
                                                         session.connection.remote_ip))
            return self._fail(535, CREDENTIALS_INVALID)
        args = (self.mechanism.lower(), user, password, digest, self.ticket)
        d = session.hooks.run(MECHANISM_HOOKS[self.mechanism], session.transaction, *args)

        def generic(result):
            if result.code in (0, codes.DECLINED) and session.hooks.has("auth"):
                return session.hooks.run("auth", session.transaction, *args)
            return result

        d.addCallback(generic)
        d.addCallback(self._respond, user)
        return d

    def _respond(self, result, user):
        session = self.session
        detail = (" - " + result.text) if result.lines else ""
        if result.code == codes.OK:
            self._end(success=True)
            conn = session.connection
            conn.auth_user = user
            conn.auth_mechanism = self.mechanism
            session.relay_from_auth = not conn.relay_client
            conn.relay_client = True
            conn.notes.pop("naughty", None)
            return session.respond(235, "%s authentication successful for %s%s"
                                   % (self.mechanism, printable(user, limit=MAX_USER_ECHO), detail))
        if result.code in (codes.DENYSOFT, codes.DENYSOFT_DISCONNECT):
            # The back end could not answer (down, or the hook timed out): not the client's
            # fault, so neither counted nor delayed (RFC 4954's 454).
            self._end()
            session.log(codes.LOGWARN, "%s authentication for %s from %s could not be checked%s"
                        % (self.mechanism, printable(user, limit=MAX_USER_ECHO),
                           session.connection.remote_ip, printable(detail)))
            return session.respond(454, TEMPORARY_FAILURE)
        # The plugins' text (no such user, wrong password) is for the log only.
        session.log(codes.LOGNOTICE, "%s authentication failed for %s from %s%s" % (
            self.mechanism, printable(user, limit=MAX_USER_ECHO), session.connection.remote_ip,
            printable(detail)))
        return self._fail(535, CREDENTIALS_INVALID)


def forget(session):
    """Undo a successful AUTH (STARTTLS after it, RFC 3207 4.2): no user, no mechanism, and
    no relaying unless the connection was a relay client before AUTH (the ``relay`` plugin)."""
    conn = session.connection
    conn.auth_user = conn.auth_mechanism = None
    if session.relay_from_auth:
        conn.relay_client = False
        session.relay_from_auth = False


def validate_password(source, method, clear=None, digest=None, ticket=None, src_clear=None,
                      src_crypt=None, deny=codes.DENY):
    """Check an attempt against a stored password, for auth plugins (as qpsmtpd's helper).

    ``src_clear`` is the stored clear-text password, ``src_crypt`` a crypt(3) hash; ``clear``
    the attempt from PLAIN/LOGIN, ``digest`` the CRAM-MD5 answer for ``ticket``. Returns
    ``(OK, source)``, ``(deny, source + " - wrong password")``, or DECLINED when the method
    cannot be checked with what is stored (CRAM-MD5 needs the clear password).
    """
    import hashlib
    import hmac

    if not src_clear and not src_crypt:
        return deny, "%s - no such user" % source
    if not src_clear and method.upper() == "CRAM-MD5":
        return codes.DECLINED, source
    if clear is not None:
        if src_clear and hmac.compare_digest(src_clear.encode(), clear.encode()):
            return codes.OK, source
        if src_crypt and crypt_matches(clear, src_crypt):
            return codes.OK, source
    if digest is not None and src_clear:
        if not ticket:
            return codes.DECLINED, source
        expected = hmac.new(src_clear.encode(), ticket.encode(), hashlib.md5).hexdigest()
        # as bytes: compare_digest refuses str with non-ASCII (a client's digest may hold any)
        if hmac.compare_digest(expected.encode(), digest.lower().encode()):
            return codes.OK, source
    return deny, "%s - wrong password" % source
