"""Long-lived connections to one queue back end, reused for many messages.

queue/smtp-forward keeps SMTP connections to its next hop here, queue/exim-bsmtp its
``exim -bs`` processes. A pooled object (a "connection") has ``uses`` (transactions it
carried, counted here), ``usable()`` (can it carry one more now) and ``close()``.

The pool keeps at most ``max_idle`` idle connections, each for at most ``idle_timeout``
seconds and ``max_uses`` transactions, and opens at most ``max_open`` at once (None: no
bound; a caller then waits for one to come back). :meth:`Pool.run` is the one way the
plugins use it: a transaction that fails on a *reused* connection in a way that shows the
connection was broken before the message could have been taken is run once more on a
fresh one (the caller decides what is safe: see ``smtp_client.safe_to_retry``).
"""

from collections import deque

from twisted.internet import defer, reactor

#: the plugins' arguments for a pool: name → (type, lowest value allowed)
SETTINGS = {"pool": (int, 0), "pool_idle": (float, 0.001), "pool_messages": (int, 1)}


def parse_setting(name, text):
    """The value of pool argument ``name`` (``pool``, ``pool_idle``, ``pool_messages``) from
    ``text``; ValueError with a message for the start-up error if it is not valid."""
    kind, lowest = SETTINGS[name]
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value < lowest:
        raise ValueError("%s must be %s >= %s, got %r" % (
            name, "a whole number" if kind is int else "a number of seconds", lowest, text))
    return value


class PoolStopped(Exception):
    """The server is shutting down: no new connection from this pool."""


class Pool:
    """Idle connections to one back end (see the module docstring).

    ``open_new(context)``: a Deferred (or coroutine) firing with a new, ready connection;
    ``context`` is what the caller of :meth:`run` passed (e.g. the transaction, for logs).
    """

    def __init__(self, open_new, max_idle, idle_timeout, max_uses, max_open=None, clock=reactor):
        self.open_new = open_new
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.max_uses = max_uses
        self.max_open = max_open
        self.clock = clock
        self._idle = []                 # [(connection, its idle timer)], most recent last
        self._waiters = deque()
        #: connections open now (in use, idle or being opened)
        self.open_count = 0
        #: connections opened since the start (for logs and tests)
        self.opened = 0
        self.stopped = False

    async def run(self, transaction, retry_ok, on_retry, wait_timeout=None, context=None):
        """``await transaction(connection)`` on a pooled connection and return its result.

        If it raises on a reused connection and ``retry_ok(connection, error)`` says the
        message cannot have been taken, ``on_retry(error)`` is called and the transaction
        runs once more, on a freshly opened connection; its outcome is final.
        """
        connection = await self.acquire(wait_timeout, context=context)
        try:
            return await transaction(connection)
        except Exception as e:
            if not retry_ok(connection, e):
                raise
            on_retry(e)
        finally:
            self.release(connection)
        connection = await self.acquire(wait_timeout, fresh=True, context=context)
        try:
            return await transaction(connection)
        finally:
            self.release(connection)

    async def acquire(self, wait_timeout=None, fresh=False, context=None):
        """An idle usable connection (unless ``fresh``), else a new one; with ``max_open``
        reached, wait up to ``wait_timeout`` seconds for one (``defer.TimeoutError``)."""
        while self._idle and not fresh:
            connection, timer = self._idle.pop()
            timer.cancel()
            if connection.usable():
                return connection
            self._drop(connection)
        if self.stopped:
            raise PoolStopped("the server is shutting down")
        if self.max_open is not None and self.open_count >= self.max_open:
            connection = await self._wait(wait_timeout)
            if connection is not None and not fresh:
                return connection
            if connection is not None:
                self._drop(connection)
        return await self._open(context)

    def _wait(self, timeout):
        """A Deferred firing with a connection handed back, or None when a slot is free."""
        waiter = defer.Deferred(canceller=self._waiters.remove)
        self._waiters.append(waiter)
        if timeout:
            waiter.addTimeout(timeout, self.clock)
        return waiter

    async def _open(self, context):
        self.open_count += 1
        self.opened += 1
        try:
            connection = await self.open_new(context)
        except BaseException:
            self.open_count -= 1
            self._wake()
            raise
        connection.uses = 0
        return connection

    def release(self, connection):
        """Take ``connection`` back after a transaction: kept idle (or handed to a waiter)
        if it is usable and has carried fewer than ``max_uses``; else closed."""
        connection.uses += 1
        if not self.stopped and connection.usable() and connection.uses < self.max_uses:
            if self._waiters:
                self._waiters.popleft().callback(connection)
                return
            if len(self._idle) < self.max_idle:
                timer = self.clock.callLater(self.idle_timeout, self._expire, connection)
                self._idle.append((connection, timer))
                return
        self._drop(connection)

    def _expire(self, connection):
        self._idle = [(c, t) for c, t in self._idle if c is not connection]
        self._drop(connection)

    def _drop(self, connection):
        self.open_count -= 1
        closed = connection.close()
        self._wake()
        return closed

    def _wake(self):
        """A slot is free: the first waiter opens a connection of its own."""
        if self._waiters and (self.max_open is None or self.open_count < self.max_open):
            self._waiters.popleft().callback(None)

    def idle_count(self):
        """How many connections are idle now."""
        return len(self._idle)

    def stop(self):
        """Close the idle connections (the ones in use are closed when they come back); a
        Deferred firing once the idle ones have ended."""
        self.stopped = True
        idle, self._idle = self._idle, []
        closing = []
        for connection, timer in idle:
            timer.cancel()
            closing.append(defer.maybeDeferred(self._drop, connection))
        while self._waiters:
            self._waiters.popleft().errback(PoolStopped("the server is shutting down"))
        return defer.DeferredList(closing)
