"""Connections per client IP counted across servers in one Redis (config item
``max_from_ip_redis``): ``--max-from-ip`` for several hosts and ``--workers`` processes.

One sorted set per client IP, ``max_from_ip:<ip>``, holds a member per live connection of
every server (``<server id> <connection id>``; the server id is host name, PID and a random
part, so it is new for every process start), scored with the time (Redis's own clock, in
milliseconds, so the servers' clocks do not matter) its server last confirmed it:

- a new connection is checked and added by one Lua script: members older than the TTL are
  dropped, and the member is added only if fewer than the limit remain (else the count is
  the answer and nothing is written);
- each process confirms all its live members every TTL / 3 seconds (one script: ``ZADD`` with
  the current time and a new ``PEXPIRE`` of each key), so a server that dies without saying
  so (SIGKILL, a host that is switched off) stops counting one TTL later;
- a connection that ends removes its member (``ZREM``); if that fails, it expires.

Redis down or not answering within the timeout: the connection is let through (the local
count of ``--max-from-ip``, or ``hosts_allow``'s, still applies) and remembered, so that the
next confirmation once Redis is back counts it; the outage is logged once when it starts
and once when it ends. The connection pool, its time limit and its down state are those of
:class:`~qpsmtpd_tx.kvstore.redis.RedisStore`.
"""

import hashlib
import os
import random
import socket

from twisted.internet import defer, reactor, task

from qpsmtpd_tx.codes import LOGERROR, LOGNOTICE
from qpsmtpd_tx.kvstore import StoreError
from qpsmtpd_tx.kvstore.redis import RedisStore

#: KEYS[1] the IP's set; ARGV: the member, the limit, the TTL in ms. {1, count} if added
#: (count includes it), {0, count} if refused.
ACQUIRE = b"""\
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[2]) then return {0, count} end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, count + 1}
"""
ACQUIRE_SHA = hashlib.sha1(ACQUIRE).hexdigest()

#: KEYS: sets; ARGV[1] the TTL in ms, ARGV[i + 1] the member in KEYS[i]. The number confirmed.
CONFIRM = b"""\
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[i + 1])
  redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS
"""
CONFIRM_SHA = hashlib.sha1(CONFIRM).hexdigest()

KEY_PREFIX = "max_from_ip:"


def server_id():
    """This process's part of its members: host name, PID and a random part."""
    return "%s:%d:%06x" % (socket.gethostname(), os.getpid(), random.getrandbits(24))


class _Entry:
    """One connection's member: its key, and whether the check that adds it is still out."""

    __slots__ = ("key", "member", "pending", "released")

    def __init__(self, key, member):
        self.key, self.member = key, member
        self.pending = True
        self.released = False


class SharedIPCount:
    """The count of one process: :meth:`acquire` a connection, :meth:`release` it when it
    ends. ``log(level, text)`` gets the outage lines."""

    def __init__(self, url, limit, ttl, timeout, log, clock=reactor):
        self.store = RedisStore(url, timeout=timeout)
        self.limit = limit
        self.ttl = ttl
        self.log = log
        self.clock = clock
        self.server_id = server_id()
        self._entries = {}
        #: members sent in the confirmation under way (released ones are removed again after)
        self._confirming = set()
        self._release_after_confirm = []
        self._outage = False
        self._confirm_loop = None

    def describe(self):
        """The Redis URL without a password, for logs."""
        return self.store.describe()

    def acquire(self, connection_id, ip):
        """Count connection ``connection_id`` from ``ip``: a Deferred firing ``(True, count)``
        if it is within the limit (counted now), ``(False, count)`` if not, and ``(True,
        None)`` when Redis cannot say (let through, counted once Redis answers again)."""
        self._start_confirming()
        entry = _Entry(KEY_PREFIX + ip, "%s %s" % (self.server_id, connection_id))
        self._entries[connection_id] = entry
        d = self.store.run_script(ACQUIRE, ACQUIRE_SHA, [entry.key],
                                  [entry.member, str(self.limit), str(self._ttl_ms())])
        d.addCallbacks(self._acquired, self._acquire_failed,
                       callbackArgs=(connection_id, entry), errbackArgs=(entry,))
        return d

    def _acquired(self, answer, connection_id, entry):
        self._answered()
        entry.pending = False
        added, count = int(answer[0]), int(answer[1])
        if not added:
            if self._entries.get(connection_id) is entry:
                del self._entries[connection_id]
            return False, count
        if entry.released:
            self._remove([entry])
        return True, count

    def _acquire_failed(self, failure, entry):
        failure.trap(StoreError)
        self._failed(failure.value)
        entry.pending = False  # not in Redis: the next confirmation adds it
        return True, None

    def release(self, connection_id):
        """Connection ``connection_id`` ended (nothing if it was not counted)."""
        entry = self._entries.pop(connection_id, None)
        if entry is None:
            return
        entry.released = True
        if entry.pending:
            return         # _acquired removes it once Redis has answered
        if entry.member in self._confirming:
            self._release_after_confirm.append(entry)
        self._remove([entry])

    def _remove(self, entries):
        for entry in entries:
            d = self.store.command("zrem", entry.key, entry.member)
            d.addCallbacks(lambda _: self._answered(), self._ignore_failure)

    def confirm(self):
        """Confirm every live member of this process (adding those Redis does not hold);
        a Deferred firing the number confirmed (0 when Redis did not answer)."""
        entries = [e for e in self._entries.values() if not e.pending]
        if not entries or self._confirming:
            return defer.succeed(0)
        self._confirming = {e.member for e in entries}
        d = self.store.run_script(CONFIRM, CONFIRM_SHA, [e.key for e in entries],
                                  [str(self._ttl_ms())] + [e.member for e in entries])
        d.addCallbacks(self._confirmed, self._confirm_failed)
        return d

    def _confirmed(self, count):
        self._answered()
        self._confirm_done()
        return int(count)

    def _confirm_failed(self, failure):
        self._confirm_done()
        return self._ignore_failure(failure)

    def _confirm_done(self):
        self._confirming = set()
        late, self._release_after_confirm = self._release_after_confirm, []
        self._remove(late)

    def _ignore_failure(self, failure):
        failure.trap(StoreError)
        self._failed(failure.value)
        return 0

    def _answered(self):
        if self._outage:
            self._outage = False
            self.log(LOGNOTICE, "max_from_ip_redis %s answers again: connections per IP are "
                     "counted across servers" % self.describe())

    def _failed(self, error):
        if not self._outage:
            self._outage = True
            self.log(LOGERROR, "max_from_ip_redis failed, counting this server's connections "
                     "per IP only until it answers: %s" % (error,))

    def _ttl_ms(self):
        return max(1, int(self.ttl * 1000))

    def _start_confirming(self):
        if self._confirm_loop is None:
            self._confirm_loop = task.LoopingCall(self.confirm)
            self._confirm_loop.clock = self.clock
            self._confirm_loop.start(self.ttl / 3.0, now=False)

    def close(self):
        """Stop confirming and release the Redis pool (members left expire)."""
        if self._confirm_loop is not None and self._confirm_loop.running:
            self._confirm_loop.stop()
        self._confirm_loop = None
        return self.store.close()
