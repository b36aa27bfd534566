"""rcpt_notes/ldap — per-recipient settings and alias targets from an LDAP directory, at RCPT time.

The ``aliases`` plugin's data (see ``qpsmtpd-tx plugins doc aliases``) kept in LDAP entries:
for each recipient, the directory is searched for the entries of every pattern that can
match it (the address, its ``@domain``, ``@.parent`` domains and ``*``); LDAP attributes
become the recipient's notes, where content filters read them
(``spamassassin_reject_threshold``, ``virus_action``…; README, "Per-recipient policy"), and
an attribute such as ``mailForwardingAddress`` may give alias targets. Uses ldaptor
(Twisted's LDAP library) over one connection kept open, so the server keeps serving while
it waits.

Answers DECLINED (after setting the notes): put it ABOVE ``rcpt_ok`` (and above any other
plugin that may accept a recipient), which still decides whether the recipient is accepted.
If the directory cannot answer, the recipient gets a temporary failure (below).

Arguments: ``url URL base DN [filter FILTER] [bind_dn DN] [bind_password PASSWORD |
bind_password_file PATH] [map ATTR=NOTE,…] [settings ATTR] [targets ATTR]
[match KINDS] [scope sub|one] [timeout SECONDS] [fail_open 0|1] [loglevel LEVEL]``
  ``url``            the server: ``ldap://HOST[:PORT]`` (default port 389; ``[::1]`` for
                     IPv6) or ``ldapi://%2Frun%2Fslapd%2Fldapi`` (a unix socket, its path
                     URL-encoded). No TLS: use a server on this host or a private network.
  ``base``           the DN searched below (``dc=example,dc=com``).
  ``filter``         the search filter, ``%s`` standing for the pattern (default
                     ``(mail=%s)``), e.g. ``(&(objectClass=inetOrgPerson)(mail=%s))``. The
                     pattern is escaped as RFC 4515 asks (``*`` ``(`` ``)`` ``\\``), so a
                     recipient ``a*b@example.com`` finds only that address.
  ``bind_dn``        bind as this DN (simple bind) after connecting; default: anonymous.
  ``bind_password``  its password; or ``bind_password_file``: a file whose first line is it
                     (keeps it out of ``plugins``).
  ``map``            attributes to notes, comma-separated ``ATTR=NOTE`` pairs:
                     ``map spamThreshold=spamassassin_reject_threshold,virusAction=virus_action``.
                     Each value is one word (the note's value); a second value for the same
                     note is an error.
  ``settings``       an attribute whose values are ``key=value`` words as in the aliases file
                     (``key=`` removes an inherited setting), e.g. ``settings mailSettings``.
  ``targets``        an attribute whose values are alias targets (addresses or ``@domain``;
                     several values, or several targets in one value separated by commas or
                     spaces), e.g. ``targets mailForwardingAddress``.
  ``match``          which patterns are searched, comma-separated among ``address``,
                     ``domain``, ``subdomains``, ``default`` (default: all four). A
                     directory holding only mailboxes needs ``match address``: one search
                     per RCPT instead of four or more.
  ``scope``          ``sub`` (default: the whole subtree below ``base``) or ``one``.
  ``timeout``        seconds one lookup may take, connecting and binding included
                     (default 5); also sent as each search's time limit.
  ``fail_open``      ``0`` (default): when the lookup fails, answer ``450 4.3.0 Recipient
                     settings are unavailable, try again later`` (DENYSOFT), so the client
                     retries later. ``1``: accept the recipient without notes, and log it.
  ``loglevel``       per-plugin log level.
At least one of ``map``, ``settings`` and ``targets`` is needed. A value in the ``plugins``
file cannot hold spaces: write a space in a DN as ``\\20`` (``ou=Mail\\20Users,…``).

Entries. An entry belongs to the pattern its search was for, whatever else it holds: with
the default filter, ``mail: alice@example.com`` for an address, ``mail: @example.com`` for
a domain, ``mail: @.example.com`` for its subdomains, ``mail: *`` for everyone (patterns in
lower case, as in the aliases file). Example (``mailForwardingAddress`` as in the
qmail-ldap schema; the other attributes are your schema's)::

    dn: uid=alice,ou=people,dc=example,dc=com
    mail: alice@example.com
    spamThreshold: 3

    dn: cn=example.com,ou=domains,dc=example,dc=com
    mail: @example.com
    mailSettings: spamassassin_reject_threshold=6 virus_action=reject

    dn: cn=sales,ou=lists,dc=example,dc=com
    mail: sales@example.com
    mailForwardingAddress: bob@example.com
    mailForwardingAddress: carol@example.net

Precedence is the aliases plugin's: every matching pattern applies, ``*`` first, then
``@.domain`` from the farthest parent, then ``@domain``, then the address; settings merge
(mapped attributes and ``settings`` values alike), targets come from the most specific
entry only, ``*`` takes no targets. Several entries found for one pattern add up.

Lookups. The searches of one RCPT (one per pattern kind in ``match``) go out together on
one connection, which stays open for the next RCPTs. It is opened (and bound) at the first
RCPT and again after it was lost; a search that fails because the server had closed an idle
connection is tried once more on a new one. No cache: a change in the directory applies to
the next recipient.

Failures: an unreachable server, a failed bind, a failed search (a missing ``base`` among
them), no answer within ``timeout`` (the connection is then dropped and opened anew at the
next RCPT), and an entry that cannot be read (a value with a space in a mapped attribute, a
bad ``key=value`` word, two values for one note, targets on ``*``) are logged as LOGERROR,
naming the server and the entry, and answered as ``fail_open`` says. Values that a loaded
filter cannot use are logged as LOGWARN (once each) and ignored by that filter.

Config files: the ``bind_password_file`` if given.

Notes: as the aliases plugin: the merged settings on the recipient; with targets also
``alias_targets`` and ``original_recipient``.

Replies: ``450 4.3.0 Recipient settings are unavailable, try again later`` when the lookup
fails (not with ``fail_open 1``); otherwise none (DECLINED).
"""

import math
import urllib.parse

from ldaptor import ldapfilter
from ldaptor.protocols import pureldap
from ldaptor.protocols.ldap import ldapclient, ldaperrors
from twisted.internet import defer
from twisted.internet.endpoints import connectProtocol
from twisted.python.failure import Failure

from qpsmtpd_tx.endpoints import ServerAddress
from qpsmtpd_tx.extend import plugin_module
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.policy import ALIAS_TARGETS, ORIGINAL_RECIPIENT

# The shared notes-source machinery (RCPT hook, precedence via the aliases plugin, failures).
_sql = plugin_module("rcpt_notes/sql")
NotesDataError = _sql.NotesDataError
aliases = _sql.aliases

DEFAULT_FILTER = "(mail=%s)"
DEFAULT_PORT = 389
MATCH_KINDS = ("address", "domain", "subdomains", "default")
#: entries one search may return before it counts as failed
SIZE_LIMIT = 20


def escape_filter_value(value):
    """``value`` escaped for an LDAP filter (RFC 4515): ``*`` ``(`` ``)`` ``\\`` and NUL."""
    return "".join("\\%02x" % ord(c) if c in "*()\\\0" else c for c in value)


def pattern_kind(pattern):
    """``address``, ``domain``, ``subdomains`` or ``default`` for a candidate pattern."""
    if pattern == aliases.CATCH_ALL:
        return "default"
    if pattern.startswith("@."):
        return "subdomains"
    if pattern.startswith("@"):
        return "domain"
    return "address"


def parse_url(url):
    """The :class:`ServerAddress` of an ldap:// or ldapi:// URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "ldap":
        if not parts.hostname:
            raise PluginError("url: no host in %r" % url)
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise PluginError("url: bad port in %r" % url)
        return ServerAddress(host=parts.hostname, port=port)
    if parts.scheme == "ldapi":
        path = urllib.parse.unquote(parts.netloc)
        if not path.startswith("/"):
            raise PluginError("url: ldapi:// needs an absolute socket path, URL-encoded "
                              "(ldapi://%%2Frun%%2Fslapd%%2Fldapi), got %r" % url)
        return ServerAddress(path=path)
    raise PluginError("url: %r is not ldap://HOST[:PORT] or ldapi://PATH (ldaps:// is not "
                      "supported)" % url)


class _Client(ldapclient.LDAPClient):
    """ldaptor's client, telling when its connection is gone."""

    def __init__(self):
        ldapclient.LDAPClient.__init__(self)
        self.lost = defer.Deferred()

    def connectionLost(self, reason):
        ldapclient.LDAPClient.connectionLost(self, reason)
        if not self.lost.called:
            self.lost.callback(None)


class _ConnectionGone(Exception):
    """The connection closed before the search was answered."""


class LdapNotes(_sql.RecipientNotesSource, Plugin):
    """Fill recipient notes (and alias targets) from LDAP entries."""

    def init(self, args):
        options = self.parse_kv_args(
            args, {"url", "base", "filter", "bind_dn", "bind_password", "bind_password_file",
                   "map", "settings", "targets", "match", "scope", "timeout", "fail_open"},
            {"filter": DEFAULT_FILTER, "match": ",".join(MATCH_KINDS), "scope": "sub"})
        self.source_options(options)
        for required in ("url", "base"):
            if not options.get(required):
                raise PluginError("argument %s is required" % required)
        self.url = options["url"]
        self._where = parse_url(self.url)
        self.source = self.url
        self.base = options["base"]
        self.filter_template = options["filter"]
        if "%s" not in self.filter_template:
            raise PluginError("filter: %r has no %%s for the pattern" % self.filter_template)
        try:
            ldapfilter.parseFilter(self._filter_text("x@example.com"))
        except Exception as e:
            raise PluginError("filter: %r is not an LDAP filter (%s)"
                              % (self.filter_template, e))
        self.scope = {"sub": pureldap.LDAP_SCOPE_wholeSubtree,
                      "one": pureldap.LDAP_SCOPE_singleLevel}.get(options["scope"])
        if self.scope is None:
            raise PluginError("scope must be sub or one, got %r" % options["scope"])
        self.match = set(options["match"].split(","))
        if not self.match or not self.match <= set(MATCH_KINDS):
            raise PluginError("match: %r is not a list of %s" % (options["match"],
                                                               ", ".join(MATCH_KINDS)))
        self.bind_dn = options.get("bind_dn")
        self.bind_password = self._password(options)
        self.note_of = {}           # lower-case attribute -> (attribute as given, note)
        for pair in (options.get("map") or "").split(","):
            if not pair:
                continue
            attribute, eq, note = pair.partition("=")
            if not eq or not attribute or not note:
                raise PluginError("map: %r is not ATTRIBUTE=NOTE" % pair)
            if note in (ALIAS_TARGETS, ORIGINAL_RECIPIENT):
                raise PluginError("map: %s is set by the plugin itself (use targets)" % note)
            try:
                aliases.parse_aliases("* %s=x" % note)
            except aliases.AliasesError:
                raise PluginError("map: %r is not a note name (letters, digits, _ . -)" % note)
            self.note_of[attribute.lower()] = (attribute, note)
        self.settings_attribute = (options.get("settings") or "").lower() or None
        self.targets_attribute = (options.get("targets") or "").lower() or None
        self.attributes = sorted(set(self.note_of) | {self.settings_attribute,
                                                      self.targets_attribute} - {None})
        if not self.attributes:
            raise PluginError("nothing to read: give map, settings or targets")
        self._client = None          # the connected (and bound) _Client
        self._connecting = None      # the Deferred of a connection being made
        self._waiters = []

    def _password(self, options):
        if options.get("bind_password") is not None and options.get("bind_password_file"):
            raise PluginError("give bind_password or bind_password_file, not both")
        path = options.get("bind_password_file")
        if path:
            try:
                with open(path, encoding="utf-8") as f:
                    return f.readline().rstrip("\r\n")
            except OSError as e:
                raise PluginError("bind_password_file: cannot read %s: %s"
                                  % (path, e.strerror or e))
        password = options.get("bind_password")
        if password is not None and not options.get("bind_dn"):
            raise PluginError("bind_password without bind_dn")
        return password or ""

    def _filter_text(self, pattern):
        return self.filter_template.replace("%s", escape_filter_value(pattern))

    # -- the connection ---------------------------------------------------------------------------

    def _endpoint(self):
        return self._where.endpoint(self.timeout)

    def _get_client(self):
        """A Deferred of a connected, bound client (one connection shared by every RCPT)."""
        if self._client is not None and self._client.connected:
            return defer.succeed(self._client)
        self._client = None
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        if self._connecting is None:
            # a server that accepts but never answers the bind must not hold every RCPT
            self._connecting = defer.ensureDeferred(self._connect())
            self._connecting.addTimeout(self.timeout, self.clock)
            self._connecting.addBoth(self._connected)
        return waiter

    async def _connect(self):
        client = await connectProtocol(self._endpoint(), _Client())
        if self.bind_dn is not None:
            try:
                response = await client.send(pureldap.LDAPBindRequest(
                    dn=self.bind_dn, auth=self.bind_password))
                if response.resultCode != 0:
                    raise ldaperrors.get(response.resultCode, response.errorMessage)
            except BaseException:
                client.transport.abortConnection()
                raise
        return client

    def _connected(self, result):
        self._connecting = None
        if not isinstance(result, Failure):
            self._client = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:
                (waiter.errback if isinstance(result, Failure) else waiter.callback)(result)
        return None

    def _drop(self):
        """Close the connection (a hung server): the next RCPT connects anew."""
        client, self._client = self._client, None
        if client is not None and client.connected:
            client.transport.abortConnection()

    def lookup_failed(self, error):
        if isinstance(error, defer.TimeoutError):
            self._drop()

    def stop(self):
        if self._connecting is not None:
            self._connecting.cancel()
        client, self._client = self._client, None
        if client is None or not client.connected:
            return None
        try:
            client.send_noResponse(pureldap.LDAPUnbindRequest())
        except Exception:
            pass
        client.transport.loseConnection()
        return client.lost

    # -- searching ------------------------------------------------------------------------------

    async def fetch_rows(self, recipient, patterns):
        patterns = [p for p in patterns if pattern_kind(p) in self.match]
        for attempt in (1, 2):
            fresh = self._client is None or not self._client.connected
            client = await self._get_client()
            try:
                results = await defer.gatherResults(
                    [self._search(client, pattern) for pattern in patterns],
                    consumeErrors=True)
                break
            except defer.FirstError as e:
                failure = e.subFailure
                # an idle connection the server had closed: once more on a new one
                if attempt == 1 and not fresh and failure.check(_ConnectionGone):
                    self._client = None
                    continue
                failure.raiseException()
        rows = []
        for pattern, entries in zip(patterns, results):
            for entry in entries:
                rows.append(self._row(pattern, entry))
        return rows

    def _search(self, client, pattern):
        """A Deferred of the entries (``(dn, {attribute: [values]})``) found for ``pattern``."""
        request = pureldap.LDAPSearchRequest(
            baseObject=self.base, scope=self.scope,
            derefAliases=pureldap.LDAP_DEREF_neverDerefAliases, sizeLimit=SIZE_LIMIT,
            timeLimit=max(1, math.ceil(self.timeout)), typesOnly=0,
            filter=ldapfilter.parseFilter(self._filter_text(pattern)),
            attributes=self.attributes)
        found = defer.Deferred()
        entries = []

        def handle(message):
            if isinstance(message, pureldap.LDAPSearchResultEntry):
                attributes = {}
                for name, values in message.attributes:
                    attributes.setdefault(_text(name).lower(), []).extend(values)
                entries.append((_text(message.objectName), attributes))
                return False
            if isinstance(message, pureldap.LDAPSearchResultDone):
                if found.called:
                    pass
                elif message.resultCode != 0:
                    problem = ldaperrors.get(message.resultCode, message.errorMessage)
                    found.errback(Failure(LookupError("search %s below %s: %s" % (
                        self._filter_text(pattern), self.base, _ldap_error(problem)))))
                elif not found.called:
                    found.callback(entries)
                return True
            return False        # references are not followed

        try:
            sent = client.send_multiResponse(request, handle)
        except ldapclient.LDAPClientConnectionLostException:
            return defer.fail(_ConnectionGone("not connected"))

        def lost(failure):
            if not found.called:
                found.errback(_ConnectionGone("the server closed the connection"))

        sent.addErrback(lost)
        return found

    def _row(self, pattern, entry):
        """``(pattern, settings words, targets, origin)`` of one entry."""
        dn, attributes = entry
        origin = "entry %s" % dn
        settings = []
        for key, (attribute, note) in self.note_of.items():
            for value in attributes.get(key, ()):
                value = _value(value, origin, attribute)
                if not value or len(value.split()) != 1:
                    raise NotesDataError("%s: %s value %r is not one word" % (origin, attribute,
                                                                             value))
                settings.append("%s=%s" % (note, value))
        if self.settings_attribute:
            settings.extend(_value(v, origin, self.settings_attribute)
                            for v in attributes.get(self.settings_attribute, ()))
        targets = []
        if self.targets_attribute:
            targets = [_value(v, origin, self.targets_attribute)
                       for v in attributes.get(self.targets_attribute, ())]
        return pattern, settings, targets, origin


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _value(value, origin, attribute):
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise NotesDataError("%s: %s value is not UTF-8" % (origin, attribute))
    return str(value)


def _ldap_error(problem):
    try:
        return str(problem)
    except Exception:
        return repr(problem)
