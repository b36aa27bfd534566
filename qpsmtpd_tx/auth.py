"""SMTP AUTH (RFC 4954): the PLAIN, LOGIN and CRAM-MD5 exchanges and the auth hooks.

The exchange only gathers credentials; plugins decide. For mechanism ``M`` the ``auth-m`` hooks
run first, then, if all declined, the generic ``auth`` hooks, each called as
``hook(transaction, mechanism, user, clear_password, hashed_password, ticket)``. OK answers
``235 M authentication successful for USER`` and makes the client a relay client; anything else
``535 M authentication failed for USER``. AUTH is offered (and accepted) only after an EHLO that
advertised it, as in qpsmtpd. Unlike qpsmtpd, ``*`` cancels any exchange with ``501``.
"""

import base64
import binascii
import os
import time

from qpsmtpd_tx import codes

MECHANISM_HOOKS = {"PLAIN": "auth-plain", "LOGIN": "auth-login", "CRAM-MD5": "auth-cram-md5"}


class Authenticator:
    """Offers the mechanisms that auth plugins registered, and runs exchanges."""

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
        if session.connection.auth_user:
            return session.respond(503, "but you already said AUTH ...")
        words = rest.split()
        mechanism = words[0].upper() if words else ""
        if mechanism not in self.mechanisms():
            return session.respond(504, "Unimplemented authentification mechanism: %s"
                                   % mechanism.lower())
        exchange = Exchange(self, session, mechanism)
        return exchange.begin(words[1] if len(words) > 1 else None)


def _b64decode(text):
    return base64.b64decode(text.strip().encode("ascii"), validate=True)


def _b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class Exchange:
    """One AUTH exchange: prompts, answers, then the hooks."""

    def __init__(self, authenticator, session, mechanism):
        self.server = authenticator.server
        self.session = session
        self.mechanism = mechanism
        self.user = None
        self.ticket = None
        self._next = None

    def begin(self, initial):
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
        self.session._auth = self
        self.session.core.expect_auth_line = True
        self.session.respond(334, [challenge or " "])

    def answer(self, line):
        """A line from the client while the exchange waits for an answer."""
        self.session._auth = None
        self.session.core.expect_auth_line = False
        if line.strip() == "*":
            return self.session.respond(501, "Authentication cancelled")
        return self._next(line)

    def _plain(self, data):
        try:
            authzid, user, password = _b64decode(data).decode("utf-8").split("\0")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self.session.respond(501, "Invalid base64 data or PLAIN response")
        if not user:
            return self.session.respond(535, "Authentication invalid" + (
                " (%s)" % authzid if authzid else ""))
        if authzid and authzid != user:
            return self.session.respond(535, "Authentication invalid for %s" % user)
        return self._check(user, password, None)

    def _login_user(self, data):
        try:
            self.user = _b64decode(data).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self.session.respond(501, "Invalid base64 data")
        return self._prompt(_b64("Password:"), self._login_password)

    def _login_password(self, data):
        try:
            password = _b64decode(data).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self.session.respond(501, "Invalid base64 data")
        return self._check(self.user, password, None)

    def _cram(self, data):
        try:
            user, digest = _b64decode(data).decode("utf-8").rsplit(" ", 1)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self.session.respond(504, "Invalid authentication string")
        return self._check(user, None, digest)

    def _check(self, user, password, digest):
        session = self.session
        user = user.replace("\r", "").replace("\n", "")
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
            conn = session.connection
            conn.auth_user = user
            conn.auth_mechanism = self.mechanism
            conn.relay_client = True
            conn.notes.pop("naughty", None)
            session.respond(235, "%s authentication successful for %s%s"
                            % (self.mechanism, user, detail))
        else:
            session.log(codes.LOGNOTICE, "authentication failed for %s from %s"
                        % (user, session.connection.remote_ip))
            session.respond(535, "%s authentication failed for %s%s" % (self.mechanism, user, detail))


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
        if src_crypt and _crypt_matches(clear, src_crypt):
            return codes.OK, source
    if digest is not None and src_clear:
        if not ticket:
            return codes.DECLINED, source
        expected = hmac.new(src_clear.encode(), ticket.encode(), hashlib.md5).hexdigest()
        if hmac.compare_digest(expected, digest.lower()):
            return codes.OK, source
    return deny, "%s - wrong password" % source


def _crypt_matches(clear, hashed):
    try:
        import crypt  # deprecated in 3.11, gone in 3.13: then crypt hashes cannot be checked
    except ImportError:
        return False
    return crypt.crypt(clear, hashed) == hashed
