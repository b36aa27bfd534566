"""auth/auth_vpopmail_sql — SMTP AUTH against vpopmail's SQL table (PostgreSQL here).

Reads the ``vpopmail`` table that vpopmail's SQL back ends keep (one row per mailbox,
``pw_name`` and ``pw_domain`` in lower case, ``pw_passwd`` a crypt(3) hash,
``pw_clear_passwd`` the clear password when vpopmail was built with
``--enable-clear-passwd``): ``SELECT pw_passwd, pw_clear_passwd FROM vpopmail WHERE
pw_name = … AND pw_domain = …``. Users log in with their full address. Each AUTH opens a
connection, runs the query and closes it in a thread (psycopg2), so the server goes on
serving meanwhile; the session is read-only.

Mechanisms: PLAIN, LOGIN, and CRAM-MD5 (which needs ``pw_clear_passwd``: a user without it
fails CRAM-MD5).

Arguments: ``[timeout SECONDS] [loglevel LEVEL]``
  ``timeout``  seconds one check may take, connecting included (default 10); PostgreSQL
               gets it as ``connect_timeout`` and four fifths of it as ``statement_timeout``.

Config files (qpsmtpd's; the names keep "mysql"):
  ``vpopmail_mysql_dsn``   the database as a Perl DBI data source, default
                           ``dbi:mysql:dbname=vpopmail;host=127.0.0.1``. Supported:
                           ``dbi:Pg:dbname=vpopmail;host=HOST;port=PORT`` (DBD::Pg's
                           form; ``database``/``db`` for ``dbname``; without ``host`` the
                           local unix socket) and a ``postgresql://…`` URL (libpq's).
  ``vpopmail_mysql_user``  the database user (default ``vpopmailuser``).
  ``vpopmail_mysql_pass``  its password (default ``vpoppasswd``).
Read at start-up and again after SIGHUP. ``dbi:mysql:`` stops start-up: there is no MySQL
driver here (it would need PyMySQL); copy the table to PostgreSQL, or use
``auth/auth_vpopmaild``, or ``auth/auth_checkpassword`` with vpopmail's ``vchkpw``.

Replies (through the core): ``235 PLAIN authentication successful for USER -
auth_vpopmail_sql``; a wrong password, a row without any password, or a user without a
domain or without a row: ``535 5.7.8 Authentication credentials invalid``; the database
unreachable or failing, or no answer within ``timeout``: ``454 4.7.0 Temporary
authentication failure`` (the error is logged, without the password).

Intended differences from qpsmtpd 0.94: PostgreSQL instead of MySQL (above); a database
failure is 454 (0.94 declined, 535); ``timeout`` is new.
"""

import math
import re

from twisted.internet import threads

from qpsmtpd_tx.auth import validate_password
from qpsmtpd_tx.auth_backend import AuthBackend, BackendUnavailable
from qpsmtpd_tx.codes import DECLINED, DENY, LOGINFO
from qpsmtpd_tx.plugin import PluginError

DEFAULT_DSN = "dbi:mysql:dbname=vpopmail;host=127.0.0.1"
DEFAULT_USER = "vpopmailuser"
DEFAULT_PASSWORD = "vpoppasswd"
QUERY = "SELECT pw_passwd, pw_clear_passwd FROM vpopmail WHERE pw_name = %s AND pw_domain = %s"
#: DBD::Pg's attribute names and libpq's
_PG_KEYS = {"dbname": "dbname", "database": "dbname", "db": "dbname", "host": "host",
            "port": "port", "sslmode": "sslmode"}


def pg_connect_args(dsn, user, password):
    """psycopg2.connect's arguments for a DBI ``dbi:Pg:…`` data source or a PostgreSQL URL
    (``(dsn,)`` and keywords); PluginError for anything else."""
    if re.match(r"postgres(ql)?://", dsn):
        return (dsn,), {"user": user, "password": password}
    match = re.match(r"dbi:(\w+):(.*)\Z", dsn, re.IGNORECASE)
    if not match:
        raise PluginError("vpopmail_mysql_dsn %r is neither a DBI data source (dbi:Pg:dbname="
                          "vpopmail;host=HOST) nor a postgresql:// URL" % dsn)
    driver, attributes = match.groups()
    if driver.lower() == "mysql":
        raise PluginError(
            "vpopmail_mysql_dsn %r: MySQL is not supported (no MySQL driver here; it would "
            "need PyMySQL): put the vpopmail table in PostgreSQL (dbi:Pg:dbname=vpopmail;"
            "host=HOST), or use auth/auth_vpopmaild, or auth/auth_checkpassword with vchkpw"
            % dsn)
    if driver != "Pg":
        raise PluginError("vpopmail_mysql_dsn %r: driver %s is not supported (dbi:Pg: is)"
                          % (dsn, driver))
    kwargs = {"user": user, "password": password}
    for item in filter(None, attributes.split(";")):
        key, eq, value = item.partition("=")
        if not eq or key.strip().lower() not in _PG_KEYS:
            raise PluginError("vpopmail_mysql_dsn: %r is not one of %s=VALUE"
                              % (item, "|".join(sorted(_PG_KEYS))))
        kwargs[_PG_KEYS[key.strip().lower()]] = value.strip()
    return (), kwargs


def _fetch(connect_args, kwargs, name, domain):
    """In a thread: the user's ``(pw_passwd, pw_clear_passwd)`` row, or None."""
    import psycopg2
    conn = psycopg2.connect(*connect_args, **kwargs)
    try:
        conn.set_session(readonly=True, autocommit=True)
        with conn.cursor() as cursor:
            cursor.execute(QUERY, (name, domain))
            return cursor.fetchone()
    finally:
        conn.close()


class AuthVpopmailSql(AuthBackend):
    """Check PLAIN, LOGIN and CRAM-MD5 credentials against vpopmail's SQL table."""

    mechanisms = ("plain", "login", "cram-md5")

    def init(self, args):
        options = self.parse_kv_args(args, {"timeout"})
        self.set_timeout(options.get("timeout"))
        try:
            import psycopg2  # noqa: F401 (checked at start-up, used in a thread)
        except ImportError:
            raise PluginError("PostgreSQL needs psycopg2: pip install 'qpsmtpd-tx[postgres]' "
                              "(psycopg2-binary)")
        self._database()

    def _database(self):
        """psycopg2.connect's arguments from the config files (checked again after SIGHUP)."""
        def parse(_):
            args, kwargs = pg_connect_args(
                self.config_scalar("vpopmail_mysql_dsn", DEFAULT_DSN),
                self.config_scalar("vpopmail_mysql_user", DEFAULT_USER),
                self.config_scalar("vpopmail_mysql_pass", DEFAULT_PASSWORD))
            kwargs["connect_timeout"] = max(2, math.ceil(self.timeout))
            kwargs["options"] = "-c statement_timeout=%d" % math.ceil(self.timeout * 800)
            kwargs.setdefault("application_name", "qpsmtpd-tx")
            return args, kwargs

        return self.parsed_config("vpopmail_mysql_dsn", parse)

    async def check(self, transaction, method, user, clear, digest, ticket):
        name, at, domain = user.lower().partition("@")
        if not at or not domain:
            self.log(LOGINFO, "skip: missing domain", transaction)
            return DECLINED
        args, kwargs = self._database()
        try:
            row = await threads.deferToThread(_fetch, args, kwargs, name, domain)
        except Exception as e:
            raise BackendUnavailable("database query failed: %s: %s" % (
                type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else ""))
        if row is None:
            self.log(LOGINFO, "fail: no such user", transaction)
            return DECLINED
        crypted, clear_stored = row
        if not crypted and not clear_stored:
            self.log(LOGINFO, "fail: no such user", transaction)
            return DENY, "auth_vmysql - no such user"
        return validate_password("auth_vpopmail_sql", method, clear=clear, digest=digest,
                                 ticket=ticket, src_clear=clear_stored, src_crypt=crypted)
