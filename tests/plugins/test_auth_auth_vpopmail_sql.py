"""auth/auth_vpopmail_sql end to end: smtplib AUTH to our server, which reads vpopmail's table
from the suite's private PostgreSQL (tests/support/postgres.py, a real server started for
this module), over TCP with a password, as qpsmtpd's DBI data source would name it.
"""

from twisted.trial import unittest

from qpsmtpd_tx.crypt_hash import crypt
from tests.support.auth_client import NO_DELAY, auth
from tests.support.harness import assertStartupError, capture_log
from tests.support.postgres import PASSWORD, postgres_server, stop_postgres
from tests.support.processes import free_port
from tests.support.rcpt_notes_cases import module_suite
from tests.support.server import start_server

SCHEMA = """CREATE TABLE vpopmail (
    pw_name varchar(32) NOT NULL, pw_domain varchar(96) NOT NULL, pw_passwd varchar(40),
    pw_uid int, pw_gid int, pw_gecos varchar(48), pw_dir varchar(160), pw_shell varchar(20),
    pw_clear_passwd varchar(16), PRIMARY KEY (pw_name, pw_domain))"""
ROWS = [("alice", "example.com", crypt("s3cret pw", "$1$abcdefgh$"), "s3cret pw"),
        ("bob", "example.com", crypt("bobpw", "$1$saltsalt$"), ""),
        ("nopass", "example.com", "", None)]
PLUGIN = "auth/auth_vpopmail_sql"
FAILED = (535, "5.7.8 Authentication credentials invalid")
TEMPORARY = (454, "4.7.0 Temporary authentication failure")

_prepared = False


def database():
    """The private PostgreSQL, with database vpopmail_t (the vpopmail table) and role vpopuser
    (SELECT only)."""
    global _prepared
    server = postgres_server()
    if not _prepared:
        server.create_role("vpopuser")
        server.create_database("vpopmail_t")
        server.execute(SCHEMA, database="vpopmail_t")
        for row in ROWS:
            server.execute("INSERT INTO vpopmail (pw_name, pw_domain, pw_passwd, "
                           "pw_clear_passwd) VALUES (%s, %s, %s, %s)", row, database="vpopmail_t")
        server.execute("GRANT SELECT ON vpopmail TO vpopuser", database="vpopmail_t")
        _prepared = True
    return server


class VpopmailSqlTests(unittest.TestCase):
    def setUp(self):
        self.pg = database()

    def files(self, port=None, dsn=None):
        dsn = dsn or "dbi:Pg:dbname=vpopmail_t;host=127.0.0.1;port=%d" % (port or self.pg.port)
        return dict(NO_DELAY, vpopmail_mysql_dsn=dsn, vpopmail_mysql_user="vpopuser",
                    vpopmail_mysql_pass=PASSWORD)

    async def test_right_passwords(self):
        server, port = start_server(self, [PLUGIN], self.files())
        log = capture_log(self, server)
        advertised = []
        self.assertEqual(await auth(port, "alice@example.com", "s3cret pw", "PLAIN", advertised),
                         (235, "PLAIN authentication successful for alice@example.com - "
                               "auth_vpopmail_sql"))
        self.assertEqual(sorted(advertised), ["CRAM-MD5", "LOGIN", "PLAIN"])
        self.assertEqual((await auth(port, "Alice@Example.com", "s3cret pw", "CRAM-MD5"))[0], 235)
        self.assertEqual((await auth(port, "bob@example.com", "bobpw", "LOGIN"))[0], 235)
        self.assertFalse([m for _, m in log if "s3cret" in m or "bobpw" in m], log)

    async def test_failures(self):
        _, port = start_server(self, [PLUGIN], self.files())
        self.assertEqual(await auth(port, "alice@example.com", "guess"), FAILED)
        self.assertEqual(await auth(port, "alice@example.com", "guess", "CRAM-MD5"), FAILED)
        # bob has no clear password: CRAM-MD5 cannot be checked
        self.assertEqual(await auth(port, "bob@example.com", "bobpw", "CRAM-MD5"), FAILED)
        self.assertEqual(await auth(port, "carol@example.com", "x"), FAILED)
        self.assertEqual(await auth(port, "alice", "s3cret pw"), FAILED)
        self.assertEqual(await auth(port, "nopass@example.com", ""), FAILED)

    async def test_postgresql_url(self):
        url = "postgresql://127.0.0.1:%d/vpopmail_t" % self.pg.port
        _, port = start_server(self, [PLUGIN], self.files(dsn=url))
        self.assertEqual((await auth(port, "alice@example.com", "s3cret pw"))[0], 235)

    async def test_database_down_is_temporary(self):
        server, port = start_server(self, [PLUGIN], self.files(port=free_port()))
        log = capture_log(self, server)
        self.assertEqual(await auth(port, "alice@example.com", "s3cret pw"), TEMPORARY)
        self.assertIn("skip: database query failed: OperationalError",
                      " ".join(m for _, m in log))

    def test_data_sources_that_cannot_work_stop_start_up(self):
        assertStartupError(self, [PLUGIN], ["MySQL is not supported", "PyMySQL",
                                            "auth/auth_vpopmaild"])
        assertStartupError(self, [PLUGIN], "driver SQLite is not supported",
                           {"vpopmail_mysql_dsn": "dbi:SQLite:dbname=x"})
        assertStartupError(self, [PLUGIN], "'hots=x' is not one of",
                           {"vpopmail_mysql_dsn": "dbi:Pg:dbname=x;hots=x"})
        assertStartupError(self, [PLUGIN], "is neither a DBI data source",
                           {"vpopmail_mysql_dsn": "vpopmail"})


def testSuite():
    """This module's tests, the private PostgreSQL stopped once they have run."""
    return module_suite(__name__, stop_postgres)
