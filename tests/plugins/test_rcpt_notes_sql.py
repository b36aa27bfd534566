"""rcpt_notes/sql: the aliases plugin's per-recipient data from SQLite and from a real
PostgreSQL (started privately, once for this module).

The same data set (:data:`~tests.support.rcpt_notes_cases.ROWS`) and the same tests
(:class:`~tests.support.rcpt_notes_cases.SourceTests`, shared with rcpt_notes/ldap's tests)
run against each database: notes reaching a filter, precedence, alias targets, grouping
(452 4.5.3), a source that is down (450 4.3.0, or fail_open) and one end-to-end session over
a real socket. Then the parts the sources share (no database), and what only one database has.
"""

import importlib.util
import os
import sqlite3
import sys

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.address import Address
from qpsmtpd_tx.config import Config
from qpsmtpd_tx.loader import find_plugin_file, load_plugin_module
from qpsmtpd_tx.paths import default_plugin_dirs
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.server import SMTPServer, StartupError
from tests.support.harness import TEST_PLUGINS, capture_log, eventually, make_server, write_config
from tests.support.postgres import PASSWORD, postgres_server, stop_postgres
from tests.support.processes import free_port
from tests.support.rcpt_notes_cases import (FILTERS, ROWS, SCHEMA, TEMPORARY, SourceTests,
                                            create_sqlite, module_suite)

sql = load_plugin_module(find_plugin_file("rcpt_notes/sql", default_plugin_dirs()))


# -- the parts shared by the sources (no database) ---------------------------------------------


class CandidatePatternTests(unittest.TestCase):
    def test_order_is_least_specific_first(self):
        self.assertEqual(sql.candidate_patterns(Address.parse("<Joe@Mail.Example.COM>")),
                         ["*", "@.com", "@.example.com", "@mail.example.com",
                          "joe@mail.example.com"])

    def test_no_domain_and_address_literal(self):
        self.assertEqual(sql.candidate_patterns(Address.parse("<Postmaster>")),
                         ["*", "postmaster"])
        self.assertEqual(sql.candidate_patterns(Address.parse("<a@[192.0.2.1]>")),
                         ["*", "@[192.0.2.1]", "a@[192.0.2.1]"])


class NotesTableTests(unittest.TestCase):
    def lookup(self, rows, address):
        return sql.notes_table(rows, "S").lookup(Address.parse("<%s>" % address))

    def test_rows_merge_like_aliases_lines(self):
        notes, targets, patterns = self.lookup(ROWS, "team@example.com")
        self.assertEqual((notes, targets, patterns),
                         ({"test_threshold": "4", "test_action": "tag"},
                          ["alice@example.com", "carol@example.com"],
                          ["*", "@example.com", "team@example.com"]))

    def test_rows_of_one_pattern_add_up(self):
        rows = [("a@example.com", "k=1", None), ("A@example.com", "j=2", "b@example.com"),
                ("a@example.com", None, "c@example.com")]
        self.assertEqual(self.lookup(rows, "a@example.com")[:2],
                         ({"k": "1", "j": "2"}, ["b@example.com", "c@example.com"]))

    def test_lists_and_bytes(self):
        rows = [(b"a@example.com", [b"k=1", "j=2 l=3"], [b"b@example.com"])]
        self.assertEqual(self.lookup(rows, "a@example.com")[:2],
                         ({"k": "1", "j": "2", "l": "3"}, ["b@example.com"]))

    def test_errors_name_the_row(self):
        for rows, message in [
            ([("a@example.com", "k", None)], "pattern 'a@example.com': 'k': expected key=value"),
            ([("a@example.com", "k=1 #x=2", None)], "pattern 'a@example.com': settings word "
                                                     "'#x=2' starts with '#'"),
            ([("a@example.com", None, "#b@example.com")], "targets word '#b@example.com'"),
            ([("a@example.com", "k=1 -> b@example.com", None)], "'->' in the settings"),
            ([("a@example.com", "k=1", None), ("a@example.com", "k=2", None)],
             "setting k given twice"),
            ([("*", None, "b@example.com")], "pattern '*': '*' cannot have targets"),
            ([("a b@example.com", "k=1", None)], "pattern 'a b@example.com': not a pattern"),
            ([(None, "k=1", None)], "pattern '': not a pattern"),
            ([("not-an-address", "k=1", None)], "not an address, @domain, @.domain or *"),
            ([("a@example.com", None, "nobody")], "target 'nobody': not an address"),
            ([("a@example.com", "k=\xff".encode("latin-1"), None)], "settings are not valid UTF-8"),
            ([("x@example.com", "k=1", None, "entry uid=x"), ("y@example.com", "j", None)],
             "pattern 'y@example.com': 'j'"),
            ([("x@example.com", "k", None, "entry uid=x,dc=example")], "entry uid=x,dc=example: "),
        ]:
            with self.assertRaises(sql.NotesDataError, msg=rows) as caught:
                sql.notes_table(rows, "S")
            self.assertIn(message, str(caught.exception), rows)


class CompileQueryTests(unittest.TestCase):
    values = {"patterns": ["*", "@example.com", "a@example.com"], "address": "a@example.com",
              "user": "a", "domain": "example.com"}

    def test_qmark(self):
        make = sql.compile_query("SELECT p FROM t WHERE p IN ({patterns}) OR (u = {user} AND "
                                 "d = {domain}) OR a LIKE '%x%' OR b = '{other}'", "qmark")
        self.assertEqual(make(self.values), (
            "SELECT p FROM t WHERE p IN (?, ?, ?) OR (u = ? AND d = ?) OR a LIKE '%x%' "
            "OR b = '{other}'", ["*", "@example.com", "a@example.com", "a", "example.com"]))

    def test_pyformat_doubles_literal_percent_signs(self):
        make = sql.compile_query("SELECT p FROM t WHERE a = {address} AND b LIKE '%x'",
                                 "pyformat")
        self.assertEqual(make(self.values),
                         ("SELECT p FROM t WHERE a = %s AND b LIKE '%%x'", ["a@example.com"]))

    def test_errors(self):
        self.assertRaises(PluginError, sql.compile_query, "SELECT 1", "qmark")
        self.assertRaises(PluginError, sql.compile_query, "SELECT {address}", "numeric")

    def test_values_are_lower_case(self):
        values = sql.query_values(Address.parse("<Joe@Example.COM>"), ["*"])
        self.assertEqual(values, {"patterns": ["*"], "address": "joe@example.com",
                                  "user": "joe", "domain": "example.com"})
        self.assertEqual(sql.query_values(Address.parse("<postmaster>"), [])["domain"], "")

    def test_password_is_not_logged(self):
        self.assertEqual(sql._without_password("postgresql://u:secret@h:5432/db?sslmode=off"),
                         "postgresql://u:***@h:5432/db?sslmode=off")
        self.assertEqual(sql._without_password("postgresql:///db?host=/s&password=secret&a=b"),
                         "postgresql:///db?host=/s&password=***&a=b")


# -- SQLite ----------------------------------------------------------------------------------


class SqliteTests(SourceTests, unittest.TestCase):
    def setUp(self):
        self.db = create_sqlite(os.path.abspath(self.mktemp()))

    def plugin_line(self, **arguments):
        return " ".join(["rcpt_notes/sql database %s" % self.db]
                        + ["%s %s" % item for item in arguments.items()])

    def down_line(self):
        self.gone = create_sqlite(os.path.abspath(self.mktemp()))
        return "rcpt_notes/sql database sqlite:%s" % self.gone

    def after_start(self):
        if getattr(self, "gone", None):
            os.remove(self.gone)      # the file is gone: nothing can be read


class SqliteOnlyTests(unittest.TestCase):
    def setUp(self):
        self.db = create_sqlite(os.path.abspath(self.mktemp()))

    def server(self, arguments="", files=None, db=None):
        server = make_server(self, ["rcpt_notes/sql database %s %s" % (db or self.db, arguments)]
                             + FILTERS, files)
        self.addCleanup(server.stop_plugins)
        self.logs = capture_log(self, server)
        return server, server.plugins[0]

    def update(self, sql_text, *args):
        conn = sqlite3.connect(self.db)
        conn.execute(sql_text, args)
        conn.commit()
        conn.close()

    async def notes(self, plugin, address):
        recipient = Address.parse("<%s>" % address)
        result = await plugin.hook_rcpt(None, recipient, {})
        return result, recipient.notes

    def test_default_database_is_the_config_item(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        create_sqlite(os.path.join(directory, "rcpt_notes.sqlite"))
        write_config(directory, ["rcpt_notes/sql", "rcpt_ok"])
        server = SMTPServer(Config(config_dir=directory, qmail_dir=directory, environ={}),
                            plugin_dirs=[TEST_PLUGINS] + default_plugin_dirs())
        self.addCleanup(server.stop_plugins)
        self.assertEqual(server.plugins[0].source,
                         "sqlite:" + os.path.join(directory, "rcpt_notes.sqlite"))

    def test_bad_arguments(self):
        missing = os.path.abspath("no-such.sqlite")
        for arguments, message in [
            ("", "database: config item 'rcpt_notes.sqlite' not found (looked in "),
            ("database %s" % missing, "database: no SQLite file %s" % missing),
            ("database %s timeout 0" % self.db, "timeout must be a number of seconds > 0"),
            ("database %s timeout soon" % self.db, "timeout must be a number of seconds > 0"),
            ("database %s pool 0" % self.db, "pool must be a number of connections >= 1"),
            ("database %s fail_open yes" % self.db, "fail_open must be 0 or 1, got 'yes'"),
            ("database %s colour blue" % self.db, "unknown argument 'colour'"),
            ("database %s query no_such_item" % self.db,
             "query: config item 'no_such_item' not found"),
            ("database %s query q_none" % self.db, "the query uses none of {patterns}"),
            ("database %s query q_table" % self.db,
             "sqlite:%s: the query fails: no such table: nowhere" % self.db),
            ("database %s query q_columns" % self.db,
             "sqlite:%s: the query returned 1 columns" % self.db),
            ("database %s query q_rows" % self.db,
             "sqlite:%s: pattern '*': 'bad': expected key=value" % self.db),
        ]:
            with self.assertRaises(StartupError, msg=arguments) as caught:
                make_server(self, ["rcpt_notes/sql %s" % arguments, "rcpt_ok"], {
                    "q_none": "SELECT 1, 2",
                    "q_table": "SELECT pattern, settings FROM nowhere\nWHERE pattern IN ({patterns})",
                    "q_columns": "SELECT pattern FROM rcpt_notes WHERE pattern IN ({patterns})",
                    "q_rows": "SELECT '*', 'bad' WHERE {address} IS NOT NULL"})
            self.assertIn("plugins:1: plugin rcpt_notes/sql: " + message, str(caught.exception))

    def test_postgresql_url_errors(self):
        if importlib.util.find_spec("psycopg2") is None:
            raise unittest.SkipTest("psycopg2 is not installed: pip install -e '.[postgres]'")
        with self.assertRaises(StartupError) as caught:
            make_server(self, ["rcpt_notes/sql database postgresql://a:b:c:d/x?nonsense=1",
                               "rcpt_ok"])
        self.assertIn("plugins:1: plugin rcpt_notes/sql: database: not a PostgreSQL URL",
                      str(caught.exception))

    def test_postgresql_without_psycopg2(self):
        for name in [m for m in sys.modules if m == "psycopg2" or m.startswith("psycopg2.")]:
            self.addCleanup(sys.modules.__setitem__, name, sys.modules.pop(name))
        sys.modules["psycopg2"] = None              # import psycopg2 now fails
        self.addCleanup(sys.modules.pop, "psycopg2", None)
        with self.assertRaises(StartupError) as caught:
            make_server(self, ["rcpt_notes/sql database postgresql:///mail", "rcpt_ok"])
        self.assertIn("plugins:1: plugin rcpt_notes/sql: PostgreSQL needs psycopg2: pip install "
                      "'qpsmtpd-tx[postgres]' (psycopg2-binary)", str(caught.exception))

    async def test_one_setting_per_row_with_a_query_of_its_own(self):
        conn = sqlite3.connect(self.db)
        conn.executescript("""
            CREATE TABLE mail_settings (pattern TEXT, name TEXT, value TEXT);
            CREATE INDEX mail_settings_pattern ON mail_settings (pattern);
            INSERT INTO mail_settings VALUES ('@example.com', 'test_threshold', '5'),
                ('@example.com', 'test_action', 'reject'), ('a@example.com', 'test_threshold', '2');
        """)
        conn.close()
        _, plugin = self.server("query settings_query", {"settings_query": (
            "# one row per setting\n"
            "SELECT pattern, name || '=' || value FROM mail_settings\n"
            "WHERE pattern IN ({patterns})")})
        self.assertEqual(await self.notes(plugin, "a@example.com"),
                         (codes.DECLINED, {"test_threshold": "2", "test_action": "reject"}))

    async def test_query_config_item_is_read_again_after_a_config_reload(self):
        server, plugin = self.server("query q", {"q": DEFAULT_WITH("settings")})
        self.assertEqual((await self.notes(plugin, "alice@example.com"))[1]["test_threshold"],
                         "3")
        with open(server.config.path_of("q"), "w") as f:
            f.write("SELECT pattern, 'test_threshold=1' FROM rcpt_notes "
                    "WHERE pattern = {address}\n")
        self.assertEqual((await self.notes(plugin, "alice@example.com"))[1]["test_threshold"],
                         "3")                                  # not yet: no SIGHUP
        server.reload_config()
        self.assertEqual(await self.notes(plugin, "alice@example.com"),
                         (codes.DECLINED, {"test_threshold": "1"}))

    async def test_a_changed_row_applies_to_the_next_recipient(self):
        _, plugin = self.server()
        self.assertEqual((await self.notes(plugin, "alice@example.com"))[1]["test_threshold"], "3")
        self.update("UPDATE rcpt_notes SET settings = 'test_threshold=2' WHERE pattern = ?",
                    "alice@example.com")
        self.assertEqual((await self.notes(plugin, "alice@example.com"))[1]["test_threshold"], "2")

    async def test_a_broken_row_is_a_temporary_failure_naming_it(self):
        self.update("INSERT INTO rcpt_notes VALUES ('broken@example.com', 'test_threshold', NULL)")
        _, plugin = self.server()
        recipient = Address.parse("<broken@example.com>")
        self.assertEqual(await plugin.hook_rcpt(None, recipient, {}),
                         (codes.DENYSOFT, sql.TEMPORARY_FAILURE))
        self.assertEqual(recipient.notes, {})
        self.assertEqual([m for level, m in self.logs if level == codes.LOGERROR], [
            "<broken@example.com>: lookup in sqlite:%s failed (pattern 'broken@example.com': "
            "'test_threshold': expected key=value or '->'); answering with a temporary failure"
            % self.db])
        # other recipients are not concerned
        self.assertEqual((await self.notes(plugin, "alice@example.com"))[0], codes.DECLINED)

    async def test_returned_pattern_that_cannot_match_is_ignored(self):
        _, plugin = self.server("query q", {"q": "SELECT pattern, settings FROM rcpt_notes "
                                                 "WHERE pattern IN ({patterns}, 'high@example.com')"})
        self.assertEqual(await self.notes(plugin, "alice@example.com"),
                         (codes.DECLINED, {"test_threshold": "3", "test_action": "tag"}))
        self.assertEqual([m for level, m in self.logs if level == codes.LOGWARN], [
            "<alice@example.com>: sqlite:%s returned pattern 'high@example.com', which cannot "
            "match it; ignored" % self.db])

    async def test_bad_values_are_reported_once(self):
        self.update("UPDATE rcpt_notes SET settings = 'test_threshold=lots' WHERE pattern = '*'")
        _, plugin = self.server()
        for _ in range(3):
            result, notes = await self.notes(plugin, "x@elsewhere.example")
            self.assertEqual((result, notes), (codes.DECLINED, {"test_threshold": "lots"}))
        warnings = [m for level, m in self.logs if level == codes.LOGWARN]
        self.assertEqual(len(warnings), 1)
        self.assertTrue(warnings[0].startswith(
            "sqlite:%s: pattern *: test_threshold=lots is not a valid value for plugin "
            "threshold_filter (" % self.db), warnings[0])

    async def test_timeout(self):
        _, plugin = self.server("timeout 2")
        clock = Clock()
        self.patch(plugin, "clock", clock)
        self.patch(plugin.pool, "runWithConnection", lambda *a, **kw: defer.Deferred())
        recipient = Address.parse("<alice@example.com>")
        result = defer.ensureDeferred(plugin.hook_rcpt(None, recipient, {}))
        clock.advance(1.9)
        self.assertNoResult(result)
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(result), (codes.DENYSOFT, sql.TEMPORARY_FAILURE))
        self.assertIn("failed (no answer within 2 s)", self.logs[-1][1])

    async def test_a_locked_database_is_a_temporary_failure(self):
        _, plugin = self.server("timeout 0.2")
        # SQLite gives up waiting for the lock after 0.8 x timeout: its error, not the
        # plugin's own limit 40 ms later, which a loaded machine could let fire first (that
        # limit is test_timeout's, on a Clock that is not advanced here either)
        self.patch(plugin, "clock", Clock())
        # journal mode DELETE: a writer holding an exclusive lock keeps every reader out
        lock = sqlite3.connect(self.db, isolation_level=None)
        self.addCleanup(lock.close)
        lock.execute("BEGIN EXCLUSIVE")
        result, notes = await self.notes(plugin, "alice@example.com")
        self.assertEqual((result, notes), ((codes.DENYSOFT, sql.TEMPORARY_FAILURE), {}))
        self.assertIn("database is locked", self.logs[-1][1])
        lock.execute("ROLLBACK")
        self.assertEqual((await self.notes(plugin, "alice@example.com"))[0], codes.DECLINED)

    def test_the_database_is_opened_read_only(self):
        _, plugin = self.server()
        plugin.pool.start()
        result = plugin.pool.runOperation("DELETE FROM rcpt_notes")
        return self.assertFailure(result, sqlite3.OperationalError)

    def test_documented_examples(self):
        """The table and rows of the plugin's documentation work as the aliases file's."""
        doc = sql.__doc__
        block = doc.split("The table (the default query reads this one)::\n\n")[1]
        block = block.split("\n\n")[0]
        path = os.path.abspath(self.mktemp())
        conn = sqlite3.connect(path)
        conn.executescript(block)
        rows = conn.execute(sql.DEFAULT_QUERY.replace("{patterns}", "SELECT pattern FROM "
                                                      "rcpt_notes")).fetchall()
        conn.close()
        table = sql.notes_table(rows, "doc")
        aliases = sql.aliases.parse_aliases(
            "*                    spamassassin_reject_threshold=10\n"
            "@example.com         spamassassin_reject_threshold=6  virus_action=reject\n"
            "@.example.com        spamassassin_reject_threshold=8\n"
            "alice@example.com    spamassassin_reject_threshold=3\n"
            "bob@example.com      virus_action=\n"
            "sales@example.com    -> bob@example.com, carol@example.net\n"
            "@old-name.example    -> @example.com\n", "aliases")[0]
        for address in ("alice@example.com", "bob@example.com", "x@a.example.com",
                        "sales@example.com", "joe@old-name.example", "x@elsewhere.example"):
            recipient = Address.parse("<%s>" % address)
            self.assertEqual(table.lookup(recipient), aliases.lookup(recipient), address)


def DEFAULT_WITH(columns):
    return "SELECT pattern, %s FROM rcpt_notes WHERE pattern IN ({patterns})" % columns


# -- PostgreSQL ----------------------------------------------------------------------------------

_pg_prepared = False


def pg():
    """The private PostgreSQL, with database qptx and role smtpd (SELECT only) ready."""
    global _pg_prepared
    server = postgres_server()
    if not _pg_prepared:
        server.create_role("smtpd")
        server.create_database("qptx")
        server.execute(SCHEMA, database="qptx")
        server.execute("GRANT SELECT ON rcpt_notes TO smtpd", database="qptx")
        _pg_prepared = True
    return server


class PostgresTests(SourceTests, unittest.TestCase):
    def setUp(self):
        self.pg = pg()
        conn = self.pg.connect("qptx")
        try:
            with conn.cursor() as cursor:
                cursor.execute("TRUNCATE rcpt_notes")
                cursor.executemany("INSERT INTO rcpt_notes VALUES (%s, %s, %s)", ROWS)
        finally:
            conn.close()

    def plugin_line(self, **arguments):
        # over TCP with a password, as a remote database would be reached
        return " ".join(["rcpt_notes/sql database %s" % self.pg.url("qptx", "smtpd", PASSWORD,
                                                                      tcp=True)]
                        + ["%s %s" % item for item in arguments.items()])

    def down_line(self):
        return "rcpt_notes/sql database postgresql://smtpd:%s@127.0.0.1:%d/qptx" % (
            PASSWORD, free_port())

    async def test_unix_socket_and_source_name(self):
        server = self.server("rcpt_notes/sql database %s" % self.pg.url("qptx"))
        plugin = server.plugins[0]
        self.assertEqual(plugin.source, self.pg.url("qptx"))
        self.assertEqual((await self.notes_of(plugin, "alice@example.com"))[1],
                         {"test_threshold": "3", "test_action": "tag"})
        self.assertNotIn(PASSWORD, self.server().plugins[0].source)

    async def test_a_restarted_connection_is_used_again_without_failing(self):
        server, client = await self.session()
        self.assertEqual(await self.rcpt(client, "alice@example.com"),
                         "250 <alice@example.com>, recipient ok")
        # the server ends the plugin's connection (as a restart or an idle timeout would)
        killed = self.pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'qpsmtpd-tx' AND usename = 'smtpd'")
        self.assertEqual(killed, [(True,)])
        self.assertEqual(await self.rcpt(client, "Alice@example.com"),
                         "250 <Alice@example.com>, recipient ok")
        self.assertEqual(self.errors(), [])
        notes = await self.send(server, client)
        self.assertEqual(notes["threshold_seen"], [(3.0, "tag")])

    async def test_a_slow_query_is_cancelled(self):
        line = self.plugin_line(timeout="0.5", query="q")
        server, client = await self.session(line, files={"q": (
            "SELECT pattern, settings, targets FROM rcpt_notes, pg_sleep(5)\n"
            "WHERE pattern IN ({patterns})")})
        # pg_sleep(5) would end with the row and a 250: the temporary failure is the timeout.
        self.assertEqual(await self.rcpt(client, "alice@example.com"), TEMPORARY)
        self.assertEqual(len(self.errors()), 1)
        # the statement timeout ends it on the server too: the next lookup is not stuck behind
        def active():
            return self.pg.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                   "'%%pg_sleep%%' AND state = 'active' AND usename = 'smtpd'")
        await eventually(lambda: active() == [(0,)])
        self.assertEqual(active(), [(0,)])

    async def test_literal_percent_signs_in_the_query(self):
        server = self.server(self.plugin_line(query="q"), files={"q": (
            "SELECT pattern, settings, targets FROM rcpt_notes\n"
            "WHERE pattern IN ({patterns}) AND pattern NOT LIKE '%%alice%'")})
        plugin = server.plugins[0]
        self.assertEqual((await self.notes_of(plugin, "alice@example.com"))[1],
                         {"test_threshold": "5", "test_action": "tag"})

    def test_the_connection_is_read_only(self):
        # as the superuser, who may delete anything: the session is read-only all the same
        server = self.server("rcpt_notes/sql database %s" % self.pg.url("qptx"))
        server.plugins[0].pool.start()
        result = server.plugins[0].pool.runOperation("DELETE FROM rcpt_notes")
        import psycopg2.errors
        return self.assertFailure(result, psycopg2.errors.ReadOnlySqlTransaction)


def testSuite():
    """This module's tests, the private PostgreSQL stopped once they have run.

    (trial has no module fixtures; the server is started by the first test that needs it.
    Run one test alone and the server is stopped at interpreter exit instead.)
    """
    return module_suite(__name__, stop_postgres)
