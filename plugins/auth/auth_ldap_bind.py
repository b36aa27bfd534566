"""auth/auth_ldap_bind — SMTP AUTH by binding to an LDAP directory as the user.

For each AUTH it connects to the directory, searches below ``ldap_base`` for the entry whose
``ldap_auth_filter_attr`` (default ``uid``) equals the user name's local part (in lower
case: ``Alice@example.com`` looks for ``uid=alice``), then binds as that entry's DN with the
password: a successful bind is a successful AUTH. One connection per AUTH, through ldaptor,
so the server goes on serving meanwhile.

Mechanisms: PLAIN and LOGIN (a bind needs the clear password; as in 0.94).

Settings, from the config file ``ldap`` (one ``KEY VALUE`` per line) and from the
arguments (``KEY VALUE`` pairs, which override the file):
  ``ldap_base``              the DN searched below (required), e.g. ``dc=example,dc=com``.
  ``ldap_host``              the server's host name or address (default ``127.0.0.1``).
  ``ldap_port``              its port (default 389). No TLS: use a server on this host or a
                             private network.
  ``ldap_timeout``           seconds one AUTH may take, connecting, searching and binding
                             (default 5); also sent as the search's time limit.
  ``ldap_auth_filter_attr``  the attribute holding the user name (default ``uid``).
  ``ldap_bind_dn``, ``ldap_bind_password``  (new) search as this DN instead of anonymously,
                             for directories that do not let anonymous clients search.
The argument ``loglevel`` is accepted too.

Replies (through the core): ``235 PLAIN authentication successful for USER - authldap``;
no entry, several entries, an empty password or a refused bind (invalid credentials):
``535 5.7.8 Authentication credentials invalid``; the directory unreachable, a failing
search or search bind, a busy or unavailable server, no answer within ``ldap_timeout``:
``454 4.7.0 Temporary authentication failure``. The DN and the reason are logged, the
password never.

Start-up fails (naming the ``plugins`` line, or the ``ldap`` file and line) without
``ldap_base``, with an unknown key, a bad port or timeout, or ``ldap_bind_dn`` and
``ldap_bind_password`` not given together.

Intended differences from qpsmtpd 0.94:
* 0.94 never let anyone in: a typo (``or $lduserdn = …``) made every user found count as
  "user not found". Here a found user with the right password is accepted.
* an empty password is refused without asking: LDAP takes a bind with a DN and no
  password as an anonymous ("unauthenticated") bind, which succeeds.
* the user name is matched as a value (``*``, ``(`` and ``)`` are not filter syntax);
  0.94 pasted it into the filter text.
* 0.94 took each argument as a whole ``KEY VALUE`` string (so only a quoted pair worked,
  and each replaced the others); here arguments are ``KEY VALUE`` pairs.
* without ``ldap_base`` 0.94 started and failed every AUTH; here start-up fails.
* directory trouble is 454 (0.94 declined, 535); ``ldap_bind_dn`` and
  ``ldap_bind_password`` are new.
"""

import math

from ldaptor.protocols import pureldap
from ldaptor.protocols.ldap import ldapclient
from twisted.internet import defer
from twisted.internet.endpoints import connectProtocol

from qpsmtpd_tx.auth_backend import AuthBackend, BackendUnavailable
from qpsmtpd_tx.codes import DECLINED, LOGINFO, LOGNOTICE, OK
from qpsmtpd_tx.endpoints import ServerAddress, describe_failure
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.printable import printable

CONFIG_FILE = "ldap"
KEYS = ("ldap_base", "ldap_host", "ldap_port", "ldap_timeout", "ldap_auth_filter_attr",
        "ldap_bind_dn", "ldap_bind_password")
DEFAULTS = {"ldap_host": "127.0.0.1", "ldap_port": "389", "ldap_timeout": "5",
            "ldap_auth_filter_attr": "uid"}
#: LDAP result codes that say the server cannot answer now (RFC 4511: timeLimitExceeded,
#: adminLimitExceeded, busy, unavailable, other)
TEMPORARY_CODES = {3: "timeLimitExceeded", 11: "adminLimitExceeded", 51: "busy",
                   52: "unavailable", 80: "other"}
SIZE_LIMIT_EXCEEDED = 4


class AuthLdapBind(AuthBackend):
    """Check PLAIN and LOGIN credentials by an LDAP simple bind as the user's entry."""

    def init(self, args):
        settings = dict(DEFAULTS)
        for line in self.server.config.get_lines(CONFIG_FILE):
            key, _, value = line.text.strip().partition(" ")
            if key not in KEYS:
                raise PluginError("%s:%d: unknown key %r (known: %s)"
                                  % (line.path, line.lineno, key, ", ".join(KEYS)))
            settings[key] = value.strip()
        settings.update(self.parse_kv_args(args, set(KEYS)))
        if not settings.get("ldap_base"):
            raise PluginError("ldap_base is required (an argument, or a line of the config "
                              "file %s)" % CONFIG_FILE)
        self.base = settings["ldap_base"]
        port = settings["ldap_port"]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise PluginError("ldap_port must be a TCP port number, got %r" % port)
        self.address = ServerAddress(host=settings["ldap_host"], port=int(port))
        try:
            self.set_timeout(settings["ldap_timeout"])
        except PluginError:
            raise PluginError("ldap_timeout must be a positive number of seconds, got %r"
                              % settings["ldap_timeout"])
        self.attribute = settings["ldap_auth_filter_attr"]
        self.bind_dn = settings.get("ldap_bind_dn")
        self.bind_password = settings.get("ldap_bind_password")
        if (self.bind_dn is None) != (self.bind_password is None):
            raise PluginError("give ldap_bind_dn and ldap_bind_password together")

    async def check(self, transaction, method, user, clear, digest, ticket):
        if clear is None:
            return DECLINED
        if not clear:
            self.log(LOGINFO, "fail: empty password", transaction)
            return DECLINED, "authldap - wrong username or password"
        name = user.lower().split("@", 1)[0]
        client = await self._connect()
        try:
            if self.bind_dn is not None:
                code, text = await self._bind(client, self.bind_dn, self.bind_password)
                if code != 0:
                    raise BackendUnavailable("bind as %s failed: %s" % (self.bind_dn, text))
            dns = await self._search(client, name)
            if len(dns) != 1:
                self.log(LOGNOTICE, "fail: %s" % ("user not found" if not dns else
                                                   "more than one entry for the user"),
                         transaction)
                return DECLINED, "authldap - wrong username or password"
            code, text = await self._bind(client, dns[0], clear)
        finally:
            _close(client)
        if code == 0:
            self.log(LOGINFO, "pass: bound as %s" % dns[0], transaction)
            return OK, "authldap"
        if code in TEMPORARY_CODES:
            raise BackendUnavailable("bind as %s: %s" % (dns[0], text))
        self.log(LOGNOTICE, "fail: bind as %s refused: %s" % (dns[0], text), transaction)
        return DECLINED, "authldap - wrong username or password"

    async def _connect(self):
        try:
            return await connectProtocol(self.address.endpoint(self.timeout),
                                         ldapclient.LDAPClient())
        except defer.CancelledError:
            raise
        except Exception as e:
            raise BackendUnavailable("cannot connect to LDAP server %s: %s"
                                     % (self.address, describe_failure(e)))

    async def _bind(self, client, dn, password):
        """``(result code, text)`` of a simple bind."""
        response = await self._send(client.send, pureldap.LDAPBindRequest(dn=dn, auth=password))
        return response.resultCode, _result_text(response)

    async def _search(self, client, name):
        """The DNs of the entries whose attribute equals ``name`` (at most two)."""
        request = pureldap.LDAPSearchRequest(
            baseObject=self.base, scope=pureldap.LDAP_SCOPE_wholeSubtree,
            derefAliases=pureldap.LDAP_DEREF_neverDerefAliases, sizeLimit=2,
            timeLimit=max(1, math.ceil(self.timeout)), typesOnly=0,
            filter=pureldap.LDAPFilter_equalityMatch(
                attributeDesc=pureldap.LDAPAttributeDescription(self.attribute),
                assertionValue=pureldap.LDAPAssertionValue(name)),
            attributes=["1.1"])
        dns = []
        done = defer.Deferred()

        def handle(message):
            if isinstance(message, pureldap.LDAPSearchResultEntry):
                dns.append(_text(message.objectName))
                return False
            if isinstance(message, pureldap.LDAPSearchResultDone):
                if not done.called:
                    done.callback(message)
                return True
            return False        # references are not followed

        def send(request):
            # with a handler, ldaptor's Deferred only ever fails (the connection lost)
            client.send_multiResponse(request, handle).addErrback(
                lambda failure: done.called or done.errback(failure))
            return done

        result = await self._send(send, request)
        if result.resultCode not in (0, SIZE_LIMIT_EXCEEDED):
            raise BackendUnavailable("search for %s=%s below %s failed: %s" % (
                self.attribute, printable(name, limit=100), self.base, _result_text(result)))
        return dns

    async def _send(self, send, request):
        try:
            return await send(request)
        except defer.CancelledError:
            raise
        except Exception as e:
            raise BackendUnavailable("LDAP server %s: %s" % (self.address, describe_failure(e)))


def _close(client):
    if client.connected:
        try:
            client.send_noResponse(pureldap.LDAPUnbindRequest())
        except Exception:
            pass
        client.transport.loseConnection()


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _result_text(response):
    name = TEMPORARY_CODES.get(response.resultCode, "code %d" % response.resultCode)
    message = _text(response.errorMessage or "")
    return "%s%s" % (name, " (%s)" % printable(message, limit=200) if message else "")
