"""``qpsmtpd-tx karma``: qpsmtpd's ``karma_tool`` — list and edit karma's database.

    qpsmtpd-tx karma [--config DIR | --db-dir DIR | --redis-url URL] COMMAND [ARG]

Commands (as karma_tool's):
  ``list``                  every client: IP, penalty start, naughty, nice, connects; totals
  ``search naughty|nice|both|IP``  the clients with naughty, nice or both counts, or one IP
  ``capture IP``            into the penalty box from now (one more naughty)
  ``release IP``            out of the penalty box (naughty count cleared)
  ``prune [DAYS]``          remove the clients not penalized within DAYS (default 7), as
                            karma_tool does (clients never penalized included)

The database: ``--db-dir`` (the file ``karma.sqlite`` there) or ``--redis-url``; else what
the ``karma`` line of the config's ``plugins`` file says (its ``db_dir`` / ``redis_url``
arguments, or the config file ``redis_server``), else qpsmtpd's default directories. The
file database may be used while the server runs. Run it as the server's user: SQLite makes its
``-wal`` and ``-shm`` files beside the database with the owner of the process that opens it
first. Exit status 1 with a message when the
database cannot be used or an argument is wrong; 2 for a usage error.
"""

import time

from twisted.internet import defer, task

from qpsmtpd_tx import karma_db
from qpsmtpd_tx.config import Config, ConfigError
from qpsmtpd_tx.karma_db import DAY, Record
from qpsmtpd_tx.kvstore import StoreError, qpsmtpd_db_dirs
from qpsmtpd_tx.kvstore.choose import describe, open_store, plugin_store
from qpsmtpd_tx.paths import program_dir
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.plugins_file import read_plugins_file

COMMANDS = ("list", "search", "capture", "release", "prune")
HEADER = "      IP Address                 Penalty        Naughty  Nice  Connects"


class UsageError(Exception):
    """A wrong command line: the text says why."""


def add_arguments(parser):
    """The subcommand's options and arguments, on its argparse parser."""
    parser.add_argument("--config", metavar="DIR",
                        help="the config whose karma line names the database "
                             "(default: $QPSMTPD_CONFIG)")
    parser.add_argument("--db-dir", metavar="DIR", help="the directory of karma.sqlite")
    parser.add_argument("--redis-url", metavar="URL", help="the Redis server (redis://HOST:PORT/DB)")
    parser.add_argument("karma_command", metavar="COMMAND", choices=COMMANDS,
                        help=" | ".join(COMMANDS))
    parser.add_argument("argument", nargs="?", help="naughty|nice|both|IP, an IP, or DAYS")


def karma_arguments(config_dir):
    """The ``key value`` arguments of the config's ``karma`` line ({} if none), and the
    config (for ``redis_server``)."""
    config = Config(config_dir=config_dir, program_dir=program_dir())
    arguments = {}
    try:
        lines = read_plugins_file(config)
    except ConfigError:
        lines = []
    for line in lines:
        if line.name == "karma":
            args = list(line.args)
            arguments = dict(zip(args[::2], args[1::2]))
            break
    return arguments, config


def choose_store(options):
    """The store the options name; PluginError if an argument is bad."""
    arguments, config = karma_arguments(options.config)
    if options.db_dir:
        arguments = {"db_dir": options.db_dir}
    if options.redis_url:
        arguments = {"redis_url": options.redis_url}
    scalar = config.get_scalar if not (options.db_dir or options.redis_url) else lambda name: None
    store = plugin_store(scalar, arguments, "karma.sqlite", qpsmtpd_db_dirs("karma"))
    open_store(store, check_only=False)
    return store


def _ip(argument):
    if not argument:
        raise UsageError("give an IP address")
    try:
        return karma_db.key(argument)
    except ValueError:
        raise UsageError("not an IP: %s" % argument)


def _when(timestamp):
    return time.strftime("%a %b %e %H:%M", time.localtime(timestamp)) if timestamp else ""


def _row(ip, record):
    return " %-18s  %24s    %3s     %3s     %3s" % (
        ip, _when(record.penalty_start), record.naughty or "", record.nice or "",
        record.connects or "")


async def execute(store, command, argument, out):
    """Run one command on ``store``; returns the exit status. UsageError for a bad argument."""
    if command in ("capture", "release"):
        key = _ip(argument)
        edit = karma_db.capture if command == "capture" else karma_db.release
        penalty_days = 1

        def change(old, now):
            """The edited record, kept as long as karma would keep it."""
            record = edit(Record.parse(old), now)
            return record.format(), karma_db.ttl(record, now, karma_db.DEFAULT_EXPIRE_DAYS,
                                                 penalty_days), record
        record = await store.update(key, change)
        out.write("%s %s: %s naughty, %s nice, %s connects\n" % (
            "captured" if command == "capture" else "released", argument, record.naughty,
            record.nice, record.connects))
        return 0
    if command == "prune":
        try:
            days = float(argument or 7)
        except ValueError:
            raise UsageError("prune takes a number of days, got %r" % (argument,))
        rows = await store.scan(karma_db.KEY_PREFIX)
        now = store.now()
        pruned = 0
        for key, value, _ in rows:
            if (now - Record.parse(value).penalty_start) / DAY >= days:
                await store.delete(key)
                pruned += 1
        out.write("pruned %d of %d DB entries\n" % (pruned, len(rows)))
        return 0
    wanted = _search_filter(command, argument)
    out.write(HEADER + "\n")
    totals = {"naughty": 0, "nice": 0, "connects": 0}
    for key, value, _ in await store.scan(karma_db.KEY_PREFIX):
        ip, record = karma_db.ip_of(key), Record.parse(value)
        if not wanted(ip, record):
            continue
        out.write(_row(ip, record) + "\n")
        for name in totals:
            totals[name] += getattr(record, name)
    out.write("totals: %(naughty)d naughty, %(nice)d nice, %(connects)d connects\n" % totals)
    return 0


def _search_filter(command, argument):
    """Which rows ``list`` / ``search ARG`` shows."""
    if command == "list":
        return lambda ip, record: True
    if argument == "naughty":
        return lambda ip, record: record.naughty
    if argument == "nice":
        return lambda ip, record: record.nice
    if argument == "both":
        return lambda ip, record: record.naughty and record.nice
    key = _ip(argument)
    return lambda ip, record: karma_db.key(ip) == key


def main(options, out, err):
    """``qpsmtpd-tx karma``: runs the reactor until the command is done; the exit status."""
    try:
        store = choose_store(options)
    except PluginError as e:
        err.write("qpsmtpd-tx karma: %s\n" % (e,))
        return 1
    out.write("using karma db at %s\n" % describe(store))
    status = []

    async def run(reactor):
        """The command, its errors turned into a status; the store closed after."""
        try:
            status.append(await execute(store, options.karma_command, options.argument, out))
        except UsageError as e:
            err.write("qpsmtpd-tx karma: %s\n" % (e,))
            status.append(2)
        except StoreError as e:
            err.write("qpsmtpd-tx karma: %s: %s\n" % (describe(store), e))
            status.append(1)
        finally:
            await store.close()

    try:
        task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    except SystemExit:
        pass
    return status[0] if status else 1
