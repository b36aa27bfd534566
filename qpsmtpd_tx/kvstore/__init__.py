"""A small asynchronous key-value store for plugins that keep history: greylisting, karma.

Two back ends share one interface (every method returns a Deferred):

- :class:`~qpsmtpd_tx.kvstore.sqlite.SQLiteStore`, a file for one host: SQLite in WAL mode,
  driven from one thread of its own, safe for several processes on one file (``--workers``);
- :class:`~qpsmtpd_tx.kvstore.redis.RedisStore`, for several processes or hosts: txredisapi,
  one connection pool per process and server, the check-and-set one Lua script.

Keys and values are text. Every key has a time to live: a record that is not written again
within its TTL disappears (the SQLite store filters expired rows and prunes them; Redis drops
them itself). The operations:

``get(key)``
    the value, or None (absent or expired).
``check_and_set(key, expected, value, ttl)``
    write ``value`` with ``ttl`` seconds to live if the key holds ``expected`` now (None:
    absent); True if written, False if someone else changed it first. Atomic across processes.
``update(key, change)``
    read, ``change(old, now)`` → ``(new, ttl, result)``, write ``new`` if it is not None, all
    atomic; gives ``result``. The base class builds it from ``get`` and ``check_and_set``
    (retried on a conflict); ``change`` may therefore run more than once, and must not have
    side effects.
``delete(key)``, ``scan(prefix)`` (``[(key, value, expires_at)]``, sorted by key),
``prune()`` (removes expired records; the number), ``close()``.

Times come from ``store.clock`` (the reactor unless a test sets a Clock); ``expires_at`` is
seconds since the epoch.

A store that cannot answer raises :class:`StoreError` through its Deferred (a plugin then fails
open, logged). :func:`plugin_store` chooses the back end from a plugin's arguments.
"""

import ipaddress
import os

from twisted.internet import defer, reactor

#: how often update() reads and writes again when another process changed the key meanwhile
UPDATE_ATTEMPTS = 20


class StoreError(Exception):
    """The store could not be read or written (Redis down, a timeout, a broken file)."""


class UpdateConflict(StoreError):
    """update() lost the race for a key too many times in a row."""


class Store:
    """The interface, with update() built on get() and check_and_set()."""

    clock = reactor

    def now(self):
        """Seconds since the epoch, by this store's clock."""
        return self.clock.seconds()

    def get(self, key):
        """The value of ``key``, or None (absent or expired)."""
        raise NotImplementedError

    def check_and_set(self, key, expected, value, ttl):
        """Write ``value`` for ``ttl`` seconds if ``key`` holds ``expected`` (None: absent);
        True if written."""
        raise NotImplementedError

    def delete(self, key):
        """Remove ``key`` (nothing if it is absent)."""
        raise NotImplementedError

    def scan(self, prefix):
        """``[(key, value, expires_at)]`` of the live keys starting with ``prefix``, sorted."""
        raise NotImplementedError

    def prune(self):
        """Remove expired records (the back end may do it by itself: 0)."""
        return defer.succeed(0)

    def close(self):
        """Release the connection or thread; the store is not used afterwards."""
        return defer.succeed(None)

    @defer.inlineCallbacks
    def update(self, key, change):
        """See the module documentation: an atomic read-modify-write; gives the result."""
        for _ in range(UPDATE_ATTEMPTS):
            old = yield self.get(key)
            new, ttl, result = change(old, self.now())
            if new is None:
                return result
            written = yield self.check_and_set(key, old, new, ttl)
            if written:
                return result
        raise UpdateConflict("%s changed %d times while being updated" % (key, UPDATE_ATTEMPTS))


def ip_key(ip):
    """qpsmtpd's database key of an IP address: its integer value, as text (Net::IP's intip)."""
    return str(int(ipaddress.ip_address(ip)))


def key_ip(key):
    """The address of an :func:`ip_key`: IPv4 below 2**32 (so ``::1`` shows as ``0.0.0.1``)."""
    number = int(key)
    return str(ipaddress.IPv4Address(number) if number < 2 ** 32 else ipaddress.IPv6Address(number))


def qpsmtpd_db_dirs(name):
    """qpsmtpd's places for the database of plugin ``name``, in its order of preference:
    ``/var/lib/qpsmtpd/NAME``, then ``var/db`` and ``config`` beside the program, then ``.``."""
    from qpsmtpd_tx.paths import program_dir
    home = program_dir()
    return ("/var/lib/qpsmtpd/" + name, os.path.join(home, "var", "db"),
            os.path.join(home, "config"), ".")


def default_db_dir(candidates):
    """The first existing directory of ``candidates`` (qpsmtpd's search), else ``.``."""
    for directory in candidates:
        if directory and os.path.isdir(directory):
            return directory
    return "."
