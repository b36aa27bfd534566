"""A private PostgreSQL server for the tests (Debian package ``postgresql``), one per test run.

``postgres_server()`` starts it on first use and returns the same :class:`Postgres` after that;
it raises SkipTest (with the reason, remembered for later calls) when it cannot run here.
Nothing of /etc/postgresql or /var/lib/postgresql is used: ``initdb`` makes a new cluster in
a fresh directory under /tmp, and the ``postgres`` binary runs in the foreground on it
(``-D DIR``), listening on 127.0.0.1 (a free port) and on a unix socket in that directory
only. Authentication: ``trust`` on the unix socket, a password (scram-sha-256) on TCP.

The server is stopped by its PID (SIGINT: PostgreSQL's "fast" shutdown, which disconnects
the clients) and its directory removed by :func:`stop_postgres` — called by the test module's
suite once its tests have run (see ``tests.plugins.test_rcpt_notes_sql.testSuite``), and at
interpreter exit in case a test was run on its own.

As root (CI), ``initdb`` and ``postgres`` run as the ``postgres`` user (PostgreSQL refuses to
run as root) and the directory is given to it; as another user they run as that user.

Requires psycopg2 in the test environment (``pip install -e '.[postgres]'``) to talk to it.
"""

import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from twisted.trial.unittest import SkipTest

from tests.support.daemon import PrivateDaemon, spawn
from tests.support.processes import release_port, reserve_port
from tests.support.shared import SharedDaemon

#: seconds the whole start (initdb + start-up) may take before the tests are skipped
START_TIMEOUT = 60.0
#: password of the roles created by :meth:`Postgres.create_role`
PASSWORD = "s3cret-pw"

class Postgres(PrivateDaemon):
    """A running private PostgreSQL: ``port``, ``socket_dir``, ``dir``, ``process``;
    ``startup_seconds`` counts from initdb to the first accepted connection."""

    log_files = ("postgres.log",)
    # SIGINT is PostgreSQL's fast shutdown: clients are disconnected
    stop_signal = signal.SIGINT
    stop_timeout = 15.0

    def __init__(self, directory, port, process, startup_seconds=None):
        super().__init__(directory, port, process, startup_seconds)
        self.socket_dir = os.path.join(directory, "run")

    def url(self, database="postgres", user="postgres", password=None, tcp=False):
        """A libpq URL for the plugin: over the unix socket, or TCP 127.0.0.1 with a password."""
        if tcp:
            auth = "%s:%s@" % (user, password) if password else "%s@" % user
            return "postgresql://%s127.0.0.1:%d/%s" % (auth, self.port, database)
        return "postgresql:///%s?host=%s&port=%d&user=%s" % (database, self.socket_dir,
                                                               self.port, user)

    def connect(self, database="postgres"):
        """A psycopg2 connection as the superuser over the unix socket (autocommit)."""
        import psycopg2
        conn = psycopg2.connect(host=self.socket_dir, port=self.port, user="postgres",
                                dbname=database, connect_timeout=5)
        conn.autocommit = True
        return conn

    def execute(self, sql, args=None, database="postgres"):
        """Run one statement as the superuser; return the rows (None if it returns none)."""
        conn = self.connect(database)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, args)
                return cursor.fetchall() if cursor.description else None
        finally:
            conn.close()

    def create_database(self, name, owner="postgres"):
        """Create database ``name`` (dropping an older one of that name)."""
        self.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        self.execute('CREATE DATABASE "%s" OWNER "%s"' % (name, owner))

    def create_role(self, name, password=PASSWORD):
        """A login role that authenticates with ``password`` over TCP."""
        self.execute('DROP ROLE IF EXISTS "%s"' % name)
        self.execute('CREATE ROLE "%s" LOGIN PASSWORD %%s' % name, (password,))


def _binaries():
    """The bin directory of the newest PostgreSQL installed from Debian's packages, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")[4].split(".")])
    return os.path.dirname(found[-1]) if found else None


def _start():
    try:
        import psycopg2
    except ImportError:
        raise SkipTest("psycopg2 is not installed: pip install -e '.[postgres]' (psycopg2-binary)")
    bindir = _binaries()
    if bindir is None:
        raise SkipTest("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise SkipTest("running as root and there is no postgres user to run PostgreSQL as")

    started = time.monotonic()
    directory = tempfile.mkdtemp(prefix="qptx-pg-")
    atexit.register(shutil.rmtree, directory, True)
    data = os.path.join(directory, "data")
    run = os.path.join(directory, "run")
    os.mkdir(run)
    if user is not None:
        for path in (directory, run):
            os.chown(path, user.pw_uid, user.pw_gid)
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C"}

    pwfile = os.path.join(directory, "pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    if user is not None:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    init = subprocess.run(
        [os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--pwfile", pwfile,
         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale",
         "--no-sync"],
        cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=START_TIMEOUT, **as_user)
    if init.returncode != 0:
        raise RuntimeError("initdb failed (status %d): %s"
                           % (init.returncode, init.stdout.decode("utf-8", "replace")[-2000:]))

    port = reserve_port()
    process, _ = spawn(
        [os.path.join(bindir, "postgres"), "-D", data, "-p", str(port), "-k", run,
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=40",
         "-c", "logging_collector=off", "-c", "log_min_messages=warning"],
        directory, "postgres.log", cwd=directory, env=env, **as_user)
    server = Postgres(directory, port, process)
    deadline = started + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError("postgres exited with status %s: %s"
                               % (process.returncode, server.log()[-2000:]))
        try:
            server.connect().close()
            release_port(port)
            break
        except psycopg2.OperationalError as e:
            if time.monotonic() > deadline:
                server.stop()
                raise SkipTest("PostgreSQL did not accept connections within %.0f s (%s)"
                               % (START_TIMEOUT, str(e).strip()))
            time.sleep(0.05)
    server.startup_seconds = time.monotonic() - started
    return server


_shared = SharedDaemon("PostgreSQL", _start, skip_on_failure=True)
#: ``postgres_server()``: the private PostgreSQL of this test run (started on first use), or
#: SkipTest; stopped at exit
postgres_server = _shared.get
#: stop the private PostgreSQL if it was started (by its PID); the next use starts anew
stop_postgres = _shared.stop
