"""rcpt_notes/sql — per-recipient settings and alias targets from an SQL database, at RCPT time.

The ``aliases`` plugin's data (see ``qpsmtpd-tx plugins doc aliases``) kept in an SQL table
instead of a file: for each recipient, one query fetches the rows of every pattern that can
match it, and their ``key=value`` settings go into the recipient's notes, where content
filters read them (``spamassassin_reject_threshold``, ``virus_action``…; README, "Per-recipient
policy"); a row may also give alias targets. SQLite (Python's own ``sqlite3``) is the
embedded default; PostgreSQL works with the same plugin and the same table. The query runs
in a thread of a ``twisted.enterprise.adbapi`` pool, so the server keeps serving meanwhile.

Answers DECLINED (after setting the notes): put it ABOVE ``rcpt_ok`` (and above any other
plugin that may accept a recipient), which still decides whether the recipient is accepted.
If the database cannot answer, the recipient gets a temporary failure (below).

Arguments: ``[database DB] [query NAME] [timeout SECONDS] [pool N] [fail_open 0|1]
[loglevel LEVEL]``
  ``database``   where the table is:
                   ``postgresql://USER:PASSWORD@HOST:PORT/DBNAME`` — PostgreSQL, any libpq
                   URL (``postgresql:///mail?host=/run/postgresql`` for a unix socket; a
                   password may also come from ``~/.pgpass``). Needs psycopg2:
                   ``pip install 'qpsmtpd-tx[postgres]'`` (psycopg2-binary).
                   ``sqlite:PATH``, or a PATH with a ``/`` — an SQLite file (relative to the
                   current directory), opened read-only; it must exist at start-up.
                   A bare NAME — an SQLite file found like a config file (``--config``
                   directory, then ``config/`` beside the program, then ``$QMAIL/control``).
                 Default: the config item ``rcpt_notes.sqlite``.
  ``query``      a config item (or a path, with a ``/``) holding the query, one or more
                 lines (lines starting with ``#`` are dropped). Default: the query below.
  ``timeout``    seconds one lookup may take, connecting included (default 5). Past it the
                 recipient gets the failure answer. The database gets four fifths of it as
                 PostgreSQL's ``statement_timeout`` (and the whole as ``connect_timeout``,
                 2 s at least), or as SQLite's wait for a locked database, so that its own
                 error is usually what is logged, and a slow query does not go on.
  ``pool``       at most this many connections (and threads) at once (default 3).
  ``fail_open``  ``0`` (default): when the lookup fails, answer ``450 4.3.0 Recipient
                 settings are unavailable, try again later`` (DENYSOFT), so the client
                 retries later. ``1``: accept the recipient without notes (the filters use
                 their arguments and defaults), and log it.
  ``loglevel``   per-plugin log level (``6``, ``LOGINFO``, ``+1``, ``-2``).

The table (the default query reads this one)::

    CREATE TABLE rcpt_notes (
        pattern   VARCHAR(320) PRIMARY KEY,  -- lower case: user@domain, @domain, @.domain, *
        settings  TEXT,                      -- key=value words, as in the aliases file
        targets   TEXT                       -- alias targets, separated by commas or spaces
    );
    INSERT INTO rcpt_notes VALUES
        ('*',                 'spamassassin_reject_threshold=10', NULL),
        ('@example.com',      'spamassassin_reject_threshold=6 virus_action=reject', NULL),
        ('@.example.com',     'spamassassin_reject_threshold=8', NULL),
        ('alice@example.com', 'spamassassin_reject_threshold=3', NULL),
        ('bob@example.com',   'virus_action=', NULL),
        ('sales@example.com', NULL, 'bob@example.com, carol@example.net'),
        ('@old-name.example', NULL, '@example.com');

A row is a line of the aliases file: ``pattern`` its PATTERN, ``settings`` its ``key=value``
words (``key=`` removes an inherited setting), ``targets`` what follows its ``->``. NULL or
an empty text: none. Patterns are stored in lower case (the lookup sends lower case).
Precedence is the aliases plugin's: every matching pattern applies, ``*`` first, then
``@.domain`` from the farthest parent, then ``@domain``, then the address; settings merge,
targets come from the most specific row only, ``*`` takes no targets.

The query. The default::

    SELECT pattern, settings, targets FROM rcpt_notes WHERE pattern IN ({patterns})

It must return rows of two or three columns: the pattern, the settings, and optionally the
targets. Several rows with the same pattern add up (their settings and targets joined), so
a table of one setting per row works too::

    -- CREATE TABLE mail_settings (pattern TEXT, name TEXT, value TEXT);
    SELECT pattern, name || '=' || value FROM mail_settings WHERE pattern IN ({patterns})

Placeholders, bound as query parameters (never pasted into the SQL text):
  ``{patterns}``  the patterns that can match the recipient, as a list (``IN ({patterns})``):
                  ``*``, ``@.com``, ``@.example.com``, ``@example.com``,
                  ``alice@example.com`` for ``<Alice@Example.COM>``;
  ``{address}``   the address (``alice@example.com``); ``{user}`` its local part
                  (``alice``); ``{domain}`` its domain (``example.com``; empty for
                  ``<postmaster>``) — all in lower case.
A query on a table of your own may return the address as the pattern, e.g.
``SELECT email, settings FROM users WHERE lower(email) = {address}``. A returned pattern
that cannot match the recipient is ignored (logged as LOGWARN). A query in a config item
is read again after a SIGHUP (a file named by its path only at start-up; one that cannot be
read then keeps the query before, logged once at LOGERROR). With SQLite the
query is run once at start-up, so a mistake stops the server there, naming it; the
connections are read-only (SQLite's ``mode=ro``, PostgreSQL's read-only sessions).

One query per RCPT, no cache: a change in the table applies to the next recipient, and
memory does not grow with the table. The lookup is by primary key (use an index on the
pattern column of your own tables): well under a millisecond in SQLite or PostgreSQL.
After a lost PostgreSQL connection (a server restart) the query is tried once more on a
new connection before it counts as failed.

Failures: an unreachable or failing database, a lookup taking longer than ``timeout``,
and a row that cannot be read (a bad setting word, a word starting with ``#``, a pattern
that is not one, ``*`` with targets, a setting given twice for one pattern) are logged as
LOGERROR, naming the database and the pattern, and answered as ``fail_open`` says. Values
that a loaded filter cannot use are logged as LOGWARN (once per pattern and value) and
ignored by that filter, as with the aliases plugin.

Config files: the SQLite file (by default ``rcpt_notes.sqlite``), the ``query`` item if given.

Notes: as the aliases plugin: the merged settings on the recipient; with targets also
``alias_targets`` and ``original_recipient``. With several notes sources in ``plugins``,
each runs in turn and a later one overrides the keys (and targets) an earlier one set.

Replies: ``450 4.3.0 Recipient settings are unavailable, try again later`` when the lookup
fails (not with ``fail_open 1``); otherwise none (DECLINED).
"""

import math
import os
import re
import urllib.parse

from twisted.enterprise import adbapi
from twisted.internet import defer, reactor

from qpsmtpd_tx import policy
from qpsmtpd_tx.codes import DECLINED, DENYSOFT, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd_tx.extend import plugin_module
from qpsmtpd_tx.plugin import Plugin, PluginError

# The data model (patterns, settings syntax, precedence) is the aliases plugin's: use its code.
aliases = plugin_module("aliases")

DEFAULT_DATABASE = "rcpt_notes.sqlite"
DEFAULT_QUERY = "SELECT pattern, settings, targets FROM rcpt_notes WHERE pattern IN ({patterns})"
DEFAULT_TIMEOUT = 5.0
DEFAULT_POOL = 3
TEMPORARY_FAILURE = "4.3.0 Recipient settings are unavailable, try again later"
#: distinct (pattern, key, value) warnings remembered, so each is logged once
MAX_REMEMBERED_WARNINGS = 10000


class NotesDataError(Exception):
    """A row or entry that cannot be read as notes (the message names the pattern)."""


def candidate_patterns(recipient):
    """The patterns that can match ``recipient``, least specific first (lower case).

    ``*``, then ``@.parent`` from the farthest parent to the nearest, then ``@domain``,
    then the address; ``<postmaster>`` (no domain) has only ``*`` and ``postmaster``.
    """
    found = [aliases.CATCH_ALL]
    host = (recipient.host or "").lower()
    if host:
        if not host.startswith("["):        # an address literal has no parent domains
            labels = host.split(".")
            for i in range(len(labels) - 1, 0, -1):
                found.append("@." + ".".join(labels[i:]))
        found.append("@" + host)
    found.append(recipient.address.lower())
    return found


def _words(value, what, origin):
    """The words of a settings or targets value (str, bytes, None, or a list of them)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [word for item in value for word in _words(item, what, origin)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise NotesDataError("%s: %s are not valid UTF-8" % (origin, what))
    words = str(value).split()
    for word in words:
        # the aliases syntax would take these for a comment or for the '->' of targets
        if word.startswith("#"):
            raise NotesDataError("%s: %s word %r starts with '#'" % (origin, what, word))
        if word == aliases.ARROW and what == "settings":
            raise NotesDataError("%s: '->' in the settings (targets have their own column)"
                                 % (origin,))
    return words


def notes_table(rows, source):
    """An aliases AliasTable of ``rows``: ``(pattern, settings, targets[, origin])`` each.

    ``settings`` and ``targets`` are texts (or lists of texts, or None) in the aliases file
    syntax; rows of the same pattern add up. ``origin`` names the row in error messages
    (default: the pattern). Raises NotesDataError.
    """
    merged = {}
    for row in rows:
        pattern, settings, targets = row[0], row[1], row[2]
        origin = row[3] if len(row) > 3 else None
        if isinstance(pattern, bytes):
            pattern = pattern.decode("utf-8", "replace")
        pattern = "" if pattern is None else str(pattern)
        origin = origin or "pattern %r" % pattern
        if len(pattern.split()) != 1 or pattern.split()[0] != pattern or pattern[0] == "#":
            raise NotesDataError("%s: not a pattern" % origin)
        key = pattern.lower()
        entry = merged.get(key)
        if entry is None:
            entry = merged[key] = [origin, [], []]
        entry[1].extend(_words(settings, "settings", origin))
        entry[2].extend(_words(targets, "targets", origin))
    lines, origins = [], []
    for pattern, (origin, settings, targets) in merged.items():
        line = " ".join([pattern] + settings)
        if targets:
            line += " %s %s" % (aliases.ARROW, " ".join(targets))
        lines.append(line)
        origins.append(origin)
    try:
        table, _ = aliases.parse_aliases("\n".join(lines), source)
    except aliases.AliasesError as e:
        if not e.lineno:
            raise NotesDataError(str(e))
        prefix = "%s:%d: " % (source, e.lineno)
        message = str(e)[len(prefix):] if str(e).startswith(prefix) else str(e)
        raise NotesDataError("%s: %s" % (origins[e.lineno - 1], message))
    return table


class RecipientNotesSource:
    """What every remote notes source shares: the RCPT hook, timeout, failure answer, notes.

    A mixin for a Plugin (``rcpt_notes/sql`` and ``rcpt_notes/ldap``); the plugin sets
    ``source`` (a name for logs, without passwords), ``timeout`` and ``fail_open``
    (see :meth:`source_options`) and implements :meth:`fetch_rows`.
    """

    #: sets recipient notes at RCPT (``qpsmtpd-tx notes`` asks it)
    notes_source = True
    #: the clock of the lookup timeout (tests replace it with a task.Clock)
    clock = reactor
    source = "?"
    timeout = DEFAULT_TIMEOUT
    fail_open = False

    def source_options(self, options):
        """Read the ``timeout`` and ``fail_open`` arguments; PluginError if bad."""
        try:
            self.timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
            if not self.timeout > 0 or math.isinf(self.timeout):
                raise ValueError
        except ValueError:
            raise PluginError("timeout must be a number of seconds > 0, got %r"
                              % options["timeout"])
        fail_open = options.get("fail_open", "0")
        if fail_open not in ("0", "1"):
            raise PluginError("fail_open must be 0 or 1, got %r" % fail_open)
        self.fail_open = fail_open == "1"
        self._warned = set()

    def fetch_rows(self, recipient, patterns):
        """A Deferred (or coroutine) of the rows for ``recipient``: ``(pattern, settings,
        targets[, origin])`` as :func:`notes_table` takes them. ``patterns`` are the
        candidates (:func:`candidate_patterns`)."""
        raise NotImplementedError

    def lookup_failed(self, error):
        """Called with the exception of a failed lookup (a source may drop its connection)."""

    async def hook_rcpt(self, transaction, recipient, params):
        patterns = candidate_patterns(recipient)
        try:
            lookup = defer.ensureDeferred(self.fetch_rows(recipient, patterns))
            rows = await lookup.addTimeout(self.timeout, self.clock)
            table = notes_table(rows, self.source)
        except Exception as e:
            return self._failed(e, transaction, recipient)
        notes, targets, matched = table.lookup(recipient)
        self._check_rows(table, patterns, transaction, recipient)
        if not matched:
            self.log(LOGINFO, "%s: no entry" % recipient.format(), transaction)
            return DECLINED
        aliases.apply_match(self, transaction, recipient, notes, targets, matched)
        return DECLINED

    def _failed(self, error, transaction, recipient):
        if isinstance(error, defer.TimeoutError):
            why = "no answer within %g s" % self.timeout
        elif isinstance(error, NotesDataError):
            why = str(error)
        else:
            why = "%s: %s" % (type(error).__name__, str(error).strip() or repr(error))
        self.lookup_failed(error)
        if self.fail_open:
            self.log(LOGERROR, "%s: lookup in %s failed (%s); fail_open: no settings for it"
                     % (recipient.format(), self.source, why), transaction)
            return DECLINED
        self.log(LOGERROR, "%s: lookup in %s failed (%s); answering with a temporary failure"
                 % (recipient.format(), self.source, why), transaction)
        return DENYSOFT, TEMPORARY_FAILURE

    def _check_rows(self, table, patterns, transaction, recipient):
        """Log rows that cannot match, and values the loaded filters cannot use (once each)."""
        candidates = set(patterns)
        shown = {"exact": "%s", "domains": "@%s", "subdomains": "@.%s"}
        found = [(shown[kind] % key, entry)
                 for kind, entries in (("exact", table.exact), ("domains", table.domains),
                                       ("subdomains", table.subdomains))
                 for key, entry in entries.items()]
        if table.default is not None:
            found.append((aliases.CATCH_ALL, table.default))
        declared = policy.declared_settings(self.server)
        for pattern, (settings, _) in found:
            if pattern not in candidates:
                self.log(LOGWARN, "%s: %s returned pattern %r, which cannot match it; ignored"
                         % (recipient.format(), self.source, pattern), transaction)
                continue
            for key, value in settings:
                for plugin_path, setting in declared.get(key, ()) if value is not None else ():
                    try:
                        setting.convert(value)
                    except (TypeError, ValueError) as e:
                        warning = ("%s: pattern %s: %s=%s is not a valid value for plugin %s "
                                   "(%s); it gets the plugin's argument or default instead"
                                   % (self.source, pattern, key, value, plugin_path, e))
                        if warning not in self._warned:
                            if len(self._warned) >= MAX_REMEMBERED_WARNINGS:
                                self._warned.clear()
                            self._warned.add(warning)
                            self.log(LOGWARN, warning, transaction)


# -- SQL -----------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(patterns|address|user|domain)\}")


def compile_query(query, paramstyle):
    """``make(values) -> (sql, parameters)`` for ``query`` with ``{…}`` placeholders.

    ``values`` maps ``patterns`` to a list and ``address``, ``user``, ``domain`` to str.
    The placeholders become the driver's (``?`` for qmark, ``%s`` for format and pyformat,
    where a literal ``%`` is doubled). Raises PluginError for a query without placeholder
    or a paramstyle it does not know.
    """
    if paramstyle == "qmark":
        mark, literal = "?", lambda text: text
    elif paramstyle in ("format", "pyformat"):
        mark, literal = "%s", lambda text: text.replace("%", "%%")
    else:
        raise PluginError("database driver paramstyle %r is not supported" % paramstyle)
    parts = _PLACEHOLDER.split(query)
    if len(parts) == 1:
        raise PluginError("the query uses none of {patterns}, {address}, {user}, {domain}")

    def make(values):
        sql, parameters = [], []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                sql.append(literal(part))
            elif part == "patterns":
                sql.append(", ".join([mark] * len(values["patterns"])))
                parameters.extend(values["patterns"])
            else:
                sql.append(mark)
                parameters.append(values[part])
        return "".join(sql), parameters

    return make


def query_values(recipient, patterns):
    """The values of the query placeholders for ``recipient``."""
    return {"patterns": patterns, "address": recipient.address.lower(),
            "user": (recipient.user or "").lower(), "domain": (recipient.host or "").lower()}


class _Connection(adbapi.Connection):
    """adbapi's pooled connection, quiet about connections the server has closed.

    adbapi rolls back after a failed query; on a connection the server closed that fails,
    and adbapi logs tracebacks. Here such a connection is just dropped from the pool (the
    next use of the thread connects anew), and :meth:`reconnect` leaves no dead connection
    behind when connecting fails.
    """

    def rollback(self):
        conn = self._connection
        if conn is None or getattr(conn, "closed", 0):
            self._forget()
            return
        return adbapi.Connection.rollback(self)

    def reconnect(self):
        self._forget()
        self._connection = self._pool.connect()

    def _forget(self):
        conn, self._connection = self._connection, None
        pool = self._pool
        if conn is not None and pool.connections.get(pool.threadID()) is conn:
            pool.disconnect(conn)


def _run_query(conn, sql, parameters):
    """Run in a pool thread: the rows of the query; once more on a new connection if the
    server closed the old one (PostgreSQL restarted, an idle connection cut)."""
    for attempt in (1, 2):
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, parameters)
                return cursor.fetchall()
            finally:
                try:
                    cursor.close()
                except Exception:
                    pass
        except Exception:
            if attempt == 2 or not getattr(conn, "closed", 0):
                raise
        conn.reconnect()


class SqlNotes(RecipientNotesSource, Plugin):
    """Fill recipient notes (and alias targets) from an SQL table."""

    def init(self, args):
        options = self.parse_kv_args(
            args, {"database", "query", "timeout", "pool", "fail_open"},
            {"database": DEFAULT_DATABASE})
        self.source_options(options)
        try:
            pool_size = int(options.get("pool", DEFAULT_POOL))
            if pool_size < 1:
                raise ValueError
        except ValueError:
            raise PluginError("pool must be a number of connections >= 1, got %r"
                              % options["pool"])
        self.query_item = options.get("query")
        query = self._read_query() if self.query_item else DEFAULT_QUERY
        database = options["database"]
        if re.match(r"postgres(ql)?://", database):
            self._init_postgresql(database, pool_size)
        else:
            self._init_sqlite(database, pool_size)
        self._make_query = compile_query(query, self.dbapi.paramstyle)
        self._query_text = query
        self._current_query()   # kept: a query item broken after start-up keeps this one
        if self.dbapi_name == "sqlite3":
            self._check_sqlite_query()

    # -- databases ----------------------------------------------------------------------------

    def _init_sqlite(self, database, pool_size):
        import sqlite3
        path = database[len("sqlite:"):] if database.startswith("sqlite:") else database
        if "/" not in path:
            found = self.server.config.path_of(path)
            if found is None:
                raise PluginError("database: config item %r not found (looked in %s)"
                                  % (path, ", ".join(self.server.config.search_dirs())))
            path = found
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise PluginError("database: no SQLite file %s" % path)
        self.dbapi, self.dbapi_name = sqlite3, "sqlite3"
        self.source = "sqlite:" + path
        self._uri = "file:%s?mode=ro" % urllib.parse.quote(path)
        # read-only; any thread may close a connection (the pool closes them all at the end)
        self._connect_args = ((self._uri,), {"uri": True, "timeout": self.timeout * 0.8,
                                             "check_same_thread": False})
        self.pool = self._make_pool(pool_size, None)

    def _init_postgresql(self, database, pool_size):
        try:
            import psycopg2
            import psycopg2.extensions
        except ImportError:
            raise PluginError("PostgreSQL needs psycopg2: pip install 'qpsmtpd-tx[postgres]' "
                              "(psycopg2-binary)")
        try:
            parsed = psycopg2.extensions.parse_dsn(database)
        except psycopg2.ProgrammingError as e:
            raise PluginError("database: not a PostgreSQL URL: %s" % str(e).strip())
        self.dbapi, self.dbapi_name = psycopg2, "psycopg2"
        self.source = _without_password(database)
        options = ("%s -c statement_timeout=%d" % (parsed.get("options", ""),
                                                   math.ceil(self.timeout * 800))).strip()
        kwargs = {"connect_timeout": max(2, math.ceil(self.timeout)), "options": options}
        if "application_name" not in parsed:
            kwargs["application_name"] = "qpsmtpd-tx"
        self._connect_args = ((database,), kwargs)

        def prepare(conn):
            conn.set_session(readonly=True, autocommit=True)

        self.pool = self._make_pool(pool_size, prepare)

    def _make_pool(self, size, openfun):
        args, kwargs = self._connect_args
        pool = adbapi.ConnectionPool(self.dbapi_name, *args, cp_min=1, cp_max=size,
                                     cp_noisy=False, cp_reconnect=True, cp_openfun=openfun,
                                     **kwargs)
        pool.connectionFactory = _Connection
        return pool

    def _check_sqlite_query(self):
        """Run the query once (start-up): a mistake stops the server, naming it."""
        from qpsmtpd_tx.address import Address
        sample = Address.parse("<postmaster@example.invalid>")
        sql, parameters = self._make_query(
            query_values(sample, candidate_patterns(sample)))
        args, kwargs = self._connect_args
        try:
            conn = self.dbapi.connect(*args, **kwargs)
            try:
                rows = conn.execute(sql, parameters).fetchall()
            finally:
                conn.close()
        except self.dbapi.Error as e:
            raise PluginError("%s: the query fails: %s (query: %s)" % (self.source, e, sql))
        try:
            notes_table(self._check_columns(rows), self.source)
        except NotesDataError as e:
            raise PluginError("%s: %s" % (self.source, e))

    # -- the query ------------------------------------------------------------------------------

    def _read_query(self):
        name = self.query_item
        if "/" in name:
            try:
                with open(name, encoding="utf-8") as f:
                    lines = [line.strip() for line in f if line.strip()
                             and not line.lstrip().startswith("#")]
            except OSError as e:
                raise PluginError("query: cannot read %s: %s" % (name, e.strerror or e))
        else:
            if self.server.config.path_of(name) is None:
                raise PluginError("query: config item %r not found" % name)
            lines = self.config(name)
        if not lines:
            raise PluginError("query: %s is empty" % name)
        return "\n".join(lines)

    def _current_query(self):
        """The query builder, read again after the config changed (SIGHUP) for a config item."""
        if not self.query_item or "/" in self.query_item:
            return self._make_query

        def parse(lines):
            text = "\n".join(line.text for line in lines)
            if not text.strip():
                raise PluginError("query: %s is empty" % self.query_item)
            return compile_query(text, self.dbapi.paramstyle)

        return self.parsed_config(self.query_item, parse)

    def fetch_rows(self, recipient, patterns):
        sql, parameters = self._current_query()(query_values(recipient, patterns))
        if not self.pool.running:
            self.pool.start()
        d = self.pool.runWithConnection(_run_query, sql, parameters)
        d.addCallback(self._check_columns)
        return d

    def _check_columns(self, rows):
        for row in rows:
            if len(row) not in (2, 3):
                raise NotesDataError("the query returned %d columns (pattern, settings[, "
                                     "targets] expected)" % len(row))
        return [row if len(row) == 3 else (row[0], row[1], None) for row in rows]

    def stop(self):
        self.pool.close()


def _without_password(url):
    """``url`` with its password (if any) replaced by ``***``, for logs."""
    url = re.sub(r"^(postgres(?:ql)?://[^:/@?]*:)[^@/?]*@", r"\1***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)
