"""The file store: one SQLite database, for one host and any number of processes on it.

Why SQLite: it is in Python's standard library, its transactions are atomic across processes
(the ``--workers`` of one server, ``qpsmtpd-tx karma`` beside them) without a lock file of
ours, it survives a crash in the middle of a write, and expiry and scans are indexed queries.
WAL mode lets readers go on while one process writes. A dbm file with fcntl locks (qpsmtpd's
way) would need a whole-file lock per access and has no expiry. Each store runs its queries in
one thread of its own, so the reactor never waits for the disk (a write costs a few hundred
microseconds on a local disk; see bench/greylisting_bench.py).

Table ``kv(key TEXT PRIMARY KEY, value TEXT, expires REAL)``; ``expires`` is seconds since the
epoch; a row past it counts as absent and is deleted by :meth:`prune` (run when the store
opens and after every 1000 writes).

``journal="delete"`` uses SQLite's rollback journal instead of WAL, for a file on NFS (WAL
needs shared memory between the processes; qpsmtpd's ``nfslock`` argument selects this).
"""

import os
import sqlite3

from twisted.internet import defer, reactor
from twisted.python.threadpool import ThreadPool
from twisted.internet.threads import deferToThreadPool

from qpsmtpd_tx.kvstore import Store, StoreError

SCHEMA = ("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
          " expires REAL NOT NULL)",
          "CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires)")
#: writes between two prunes
PRUNE_EVERY = 1000
#: milliseconds a process waits for another one's write lock before giving up
BUSY_TIMEOUT_MS = 10000


def _connect(path, journal):
    """A connection to ``path`` with the table made and the journal mode set. A new file is
    made mode 0600, as qpsmtpd's databases (it holds client addresses and senders); SQLite
    gives its journal files the same mode."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000.0, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = %d" % BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA journal_mode = %s" % ("WAL" if journal == "wal" else "DELETE"))
        conn.execute("PRAGMA synchronous = NORMAL")
        for statement in SCHEMA:
            conn.execute(statement)
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _read(conn, key, now):
    row = conn.execute("SELECT value FROM kv WHERE key = ? AND expires > ?", (key, now)).fetchone()
    return row[0] if row else None


def _write(conn, key, value, ttl, now):
    conn.execute("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                 (key, value, now + ttl))


class SQLiteStore(Store):
    """A :class:`~qpsmtpd_tx.kvstore.Store` in the SQLite file ``path``."""

    def __init__(self, path, journal="wal", clock=None):
        self.path = path
        self.journal = journal
        if clock is not None:
            self.clock = clock
        self._conn = None
        self._pool = None
        self._trigger = None
        self._writes = 0

    def check(self):
        """Open the file now, blocking (start-up): make the table, prune it; raise StoreError
        naming the file if it cannot be used. The connection is closed again (the store's
        thread opens its own, after any fork of ``--workers``)."""
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            conn = _connect(self.path, self.journal)
            try:
                with conn:
                    conn.execute("DELETE FROM kv WHERE expires <= ?", (self.now(),))
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as e:
            raise StoreError("%s: %s" % (self.path, e))

    # -- the thread ----------------------------------------------------------------------------

    def _run(self, func, *args):
        """``func(conn, *args)`` in the store's thread; sqlite errors become StoreError."""
        if self._pool is None:
            self._pool = ThreadPool(minthreads=1, maxthreads=1, name="kvstore " + self.path)
            self._pool.start()
            self._trigger = reactor.addSystemEventTrigger("during", "shutdown", self._stop_pool)
        return deferToThreadPool(reactor, self._pool, self._call, func, args).addErrback(
            self._error)

    def _call(self, func, args):
        if self._conn is None:
            self._conn = _connect(self.path, self.journal)
        return func(self._conn, *args)

    def _error(self, failure):
        failure.trap(sqlite3.Error, OSError)
        raise StoreError("%s: %s" % (self.path, failure.value))

    def _stop_pool(self):
        pool, self._pool = self._pool, None
        self._trigger = None
        if pool is not None:
            pool.callInThread(self._close_conn)
            pool.stop()

    def _close_conn(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- the operations ------------------------------------------------------------------------

    def get(self, key):
        """See :meth:`qpsmtpd_tx.kvstore.Store.get`."""
        return self._run(_read, key, self.now())

    def check_and_set(self, key, expected, value, ttl):
        """See :meth:`qpsmtpd_tx.kvstore.Store.check_and_set`."""
        return self._run(self._check_and_set, key, expected, value, ttl, self.now())

    def _check_and_set(self, conn, key, expected, value, ttl, now):
        with _Transaction(conn):
            if _read(conn, key, now) != expected:
                return False
            _write(conn, key, value, ttl, now)
        self._count_write(conn, now)
        return True

    def update(self, key, change):
        """One transaction in the store's thread (``change`` runs there, once)."""
        return self._run(self._update, key, change, self.now())

    def _update(self, conn, key, change, now):
        with _Transaction(conn):
            old = _read(conn, key, now)
            new, ttl, result = change(old, now)
            if new is not None:
                _write(conn, key, new, ttl, now)
        if new is not None:
            self._count_write(conn, now)
        return result

    def _count_write(self, conn, now):
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            _prune(conn, now)

    def delete(self, key):
        """See :meth:`qpsmtpd_tx.kvstore.Store.delete`."""
        return self._run(lambda conn: conn.execute("DELETE FROM kv WHERE key = ?", (key,)) and None)

    def scan(self, prefix):
        """See :meth:`qpsmtpd_tx.kvstore.Store.scan`."""
        return self._run(_scan, prefix, self.now())

    def prune(self):
        """See :meth:`qpsmtpd_tx.kvstore.Store.prune`."""
        return self._run(_prune, self.now())

    def close(self):
        """See :meth:`qpsmtpd_tx.kvstore.Store.close`."""
        if self._trigger is not None:
            reactor.removeSystemEventTrigger(self._trigger)
        pool = self._pool
        if pool is None:
            return defer.succeed(None)
        done = deferToThreadPool(reactor, pool, self._close_conn)
        done.addBoth(lambda result: self._stop_pool())
        return done


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an error): the write lock is taken
    before the read, so no other process writes between them."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback):
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def _scan(conn, prefix, now):
    rows = conn.execute("SELECT key, value, expires FROM kv WHERE key >= ? AND key < ?"
                        " AND expires > ? ORDER BY key", (prefix, prefix + "\U0010ffff", now))
    return [tuple(row) for row in rows]


def _prune(conn, now):
    with conn:
        return conn.execute("DELETE FROM kv WHERE expires <= ?", (now,)).rowcount
