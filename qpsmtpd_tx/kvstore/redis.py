"""The Redis store: for several processes or hosts sharing one history.

Through txredisapi (Twisted's Redis client). Each process keeps **one** connection pool per
Redis server and database (:func:`shared_pool`), made at first use (so each ``--workers``
process makes its own) and shared by every plugin and store that names that server; it is
disconnected when the last store using it is closed.

Every write sets a TTL (``SET … PX``). The check-and-set is one Lua script run with
``EVALSHA`` (loaded with ``EVAL`` the first time, and again if Redis forgot it), so two
processes updating one key cannot both win. Every command has a time limit (``timeout``): a
Redis that is down or does not answer gives :class:`~qpsmtpd_tx.kvstore.StoreError` within
it; once a command has failed so, the pool counts as down and later commands fail at once
until it has a connection again (txredisapi reconnects by itself), so an outage costs one
``timeout``, not one per message.

The URL: ``redis://[:PASSWORD@]HOST[:PORT][/DB]`` (port 6379, database 0 by default).
"""

import hashlib
from urllib.parse import unquote, urlsplit

from twisted.internet import defer, endpoints, error, reactor

from qpsmtpd_tx.kvstore import Store, StoreError

#: KEYS[1]; ARGV: 1 if a value is expected (else the key must be absent), the expected
#: value, the new value, its TTL in milliseconds. Returns 1 if written, 0 if not.
CHECK_AND_SET = b"""\
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
"""
CHECK_AND_SET_SHA = hashlib.sha1(CHECK_AND_SET).hexdigest()

DEFAULT_PORT = 6379
DEFAULT_TIMEOUT = 3.0
#: connections per pool
POOL_SIZE = 5
#: keys per SCAN step
SCAN_COUNT = 500

_pools = {}


def parse_url(url):
    """``(host, port, db, password)`` of a ``redis://`` URL, or of ``HOST[:PORT]``; ValueError
    for anything else."""
    if "://" not in url:
        url = "redis://" + url
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError("not a redis://HOST[:PORT][/DB] URL: %r" % (url,))
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the database in %r must be a number" % (url,))
    port = parts.port or DEFAULT_PORT
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, int(path or 0), password


class _Pool:
    """One txredisapi pool and how many stores use it."""

    def __init__(self, address, timeout):
        self.connection = _connect_pool(address, timeout)
        self.users = 0
        #: a command failed for want of a connection, and none has come back since
        self.down = False

    def connected(self):
        """True if the pool holds at least one live connection."""
        factory = getattr(self.connection, "_factory", None)
        if factory is None:
            return True
        return any(getattr(conn, "connected", 0) for conn in getattr(factory, "pool", ()))


def _connect_pool(address, timeout):
    """A txredisapi pool handler for ``address``, whose connections never stop reconnecting.

    txredisapi sends AUTH and SELECT on each new connection and, when one of them fails or
    is not answered within the reply timeout (a Redis that has just restarted, on a loaded
    host), stops reconnecting every connection of the pool for good: the store would stay
    "not connected" until the server restarts. Here such a connection is only dropped, and
    its slot tries again with its back-off (at most about 11 s apart), also after a refused
    password (logged at each attempt), so mending Redis's side is enough."""
    import txredisapi

    class KeepTrying(txredisapi.RedisFactory):
        """txredisapi's pool factory without its own stopTrying."""

        def stopTrying(self):
            # called by txredisapi's connection set-up (and by quit/shutdown, not used here)
            return defer.succeed(None)

    host, port, db, password = address
    factory = KeepTrying("%s:%d" % (host, port), db, POOL_SIZE, isLazy=True,
                         password=password, replyTimeout=timeout, convertNumbers=False)
    # fails when a connection's set-up fails before the pool was full: txredisapi has logged
    # it and commands report it; unconsumed, it would be an "Unhandled error in Deferred"
    factory.deferred.addErrback(lambda failure: None)
    factory.startConnecting(endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout))
    return factory.handler


def shared_pool(address, timeout):
    """This process's pool for ``address`` (made at first use); counts one more user."""
    pool = _pools.get(address)
    if pool is None:
        pool = _pools[address] = _Pool(address, timeout)
    pool.users += 1
    return pool


def release_pool(address):
    """One user less; the last one disconnects the pool. A Deferred."""
    pool = _pools.get(address)
    if pool is None:
        return defer.succeed(None)
    pool.users -= 1
    if pool.users > 0:
        return defer.succeed(None)
    del _pools[address]
    return defer.maybeDeferred(pool.connection.disconnect).addErrback(lambda failure: None)


class RedisStore(Store):
    """A :class:`~qpsmtpd_tx.kvstore.Store` on the Redis server of ``url``; keys are used as
    given (the plugins prefix theirs: ``greylist:``, ``karma:``)."""

    def __init__(self, url, timeout=DEFAULT_TIMEOUT, clock=None):
        self.url = url
        self.address = parse_url(url)
        self.timeout = timeout
        if clock is not None:
            self.clock = clock
        self._pool = None

    def describe(self):
        """``redis://host:port/db`` (no password), for logs and errors."""
        host, port, db, _ = self.address
        return "redis://%s:%d/%d" % (host, port, db)

    @property
    def redis(self):
        """The txredisapi pool of this process for the URL (made at first use)."""
        if self._pool is None:
            self._pool = shared_pool(self.address, self.timeout)
        return self._pool.connection

    def _call(self, method, *args, **kwargs):
        """A command with the store's time limit; failures become StoreError."""
        connection = self.redis
        pool = self._pool
        if pool.down:
            if not pool.connected():
                return defer.fail(StoreError("%s: not connected (Redis did not answer before)"
                                             % self.describe()))
            pool.down = False
        try:
            d = defer.maybeDeferred(getattr(connection, method), *args, **kwargs)
        except Exception as e:
            return defer.fail(StoreError("%s: %s" % (self.describe(), e)))
        d.addTimeout(self.timeout, reactor)
        d.addErrback(self._failed, method, pool)
        return d

    def _failed(self, failure, method, pool):
        import txredisapi
        if failure.check(defer.TimeoutError, defer.CancelledError, error.TimeoutError,
                         error.ConnectError, error.ConnectionLost, error.ConnectionDone,
                         txredisapi.ConnectionError):
            pool.down = True
        if failure.check(defer.TimeoutError, defer.CancelledError, error.TimeoutError):
            raise StoreError("%s: no answer to %s within %g s" % (self.describe(), method.upper(),
                                                                  self.timeout))
        if failure.check(StoreError):
            return failure
        raise StoreError("%s: %s: %s" % (self.describe(), method.upper(),
                                         failure.getErrorMessage() or failure.type.__name__))

    def command(self, method, *args):
        """Any other command (a txredisapi method name, e.g. ``zrem``), with the store's time
        limit; StoreError as for every command."""
        return self._call(method, *args)

    def get(self, key):
        """See :meth:`qpsmtpd_tx.kvstore.Store.get`."""
        return self._call("get", key)

    @defer.inlineCallbacks
    def run_script(self, script, sha, keys, args):
        """The answer of Lua ``script`` (bytes; ``sha`` its SHA-1 in hex) run on ``keys`` and
        ``args``: ``EVALSHA``, and ``EVAL`` when Redis does not know the script (yet, or
        again). StoreError as for every command."""
        try:
            answer = yield self._call("evalsha", sha, keys, args)
        except StoreError as e:
            if "NOSCRIPT" not in str(e) and "No script matching" not in str(e):
                raise
            # Redis restarted or SCRIPT FLUSH: send the script itself, which loads it again
            answer = yield self._call("eval", script, keys, args)
        return answer

    @defer.inlineCallbacks
    def check_and_set(self, key, expected, value, ttl):
        """See :meth:`qpsmtpd_tx.kvstore.Store.check_and_set`."""
        args = ["0" if expected is None else "1", expected or "", value,
                str(max(1, int(ttl * 1000)))]
        written = yield self.run_script(CHECK_AND_SET, CHECK_AND_SET_SHA, [key], args)
        return int(written) == 1

    def delete(self, key):
        """See :meth:`qpsmtpd_tx.kvstore.Store.delete`."""
        return self._call("delete", key).addCallback(lambda result: None)

    @defer.inlineCallbacks
    def scan(self, prefix):
        """See :meth:`qpsmtpd_tx.kvstore.Store.scan`."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        keys, cursor = set(), "0"
        while True:
            cursor, found = yield self._call("scan", cursor, pattern, SCAN_COUNT)
            keys.update(found)
            if str(cursor) == "0":
                break
        rows = []
        now = self.now()
        for key in sorted(keys):
            value = yield self.get(key)
            ttl = yield self._call("execute_command", "PTTL", key)
            if value is not None and int(ttl) > 0:
                rows.append((key, value, now + int(ttl) / 1000.0))
        return rows

    def close(self):
        """See :meth:`qpsmtpd_tx.kvstore.Store.close`."""
        if self._pool is None:
            return defer.succeed(None)
        self._pool = None
        return release_pool(self.address)
