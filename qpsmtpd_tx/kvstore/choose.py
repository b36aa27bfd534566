"""Choosing a plugin's store from its arguments: Redis when asked for, else the file store.

- argument ``redis_url redis://HOST[:PORT][/DB]`` (ours), else the first line of the config
  file ``redis_server`` (a URL or ``HOST[:PORT]``): the shared Redis store;
- otherwise the SQLite file ``<db_dir>/<file_name>``, ``db_dir`` being the argument or the
  first existing directory of qpsmtpd's candidates; ``nfslock 1`` makes it use SQLite's
  rollback journal instead of WAL (see :mod:`qpsmtpd_tx.kvstore.sqlite`).
"""

import os

from qpsmtpd_tx.kvstore import StoreError, default_db_dir
from qpsmtpd_tx.kvstore.redis import DEFAULT_TIMEOUT, RedisStore, parse_url
from qpsmtpd_tx.kvstore.sqlite import SQLiteStore
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.plugin_args import boolean, positive

#: the arguments this module reads, for a plugin's list of known ones
ARGUMENTS = {"db_dir", "nfslock", "redis_url", "redis_timeout"}


def plugin_store(config_scalar, arguments, file_name, candidate_dirs):
    """The store a plugin's ``arguments`` ask for (not opened yet); PluginError for a bad
    argument. ``config_scalar(name)`` reads a config file (``redis_server``)."""
    url = arguments.get("redis_url") or config_scalar("redis_server")
    timeout = positive("redis_timeout", arguments.get("redis_timeout", str(DEFAULT_TIMEOUT)))
    if url:
        try:
            parse_url(url)
        except ValueError as e:
            raise PluginError(str(e))
        return RedisStore(url, timeout=timeout)
    nfs = boolean("nfslock", arguments.get("nfslock", "0"))
    db_dir = arguments.get("db_dir")
    if db_dir is not None and not os.path.isdir(db_dir):
        raise PluginError("db_dir %s is not a directory" % (db_dir,))
    directory = db_dir or default_db_dir(candidate_dirs)
    return SQLiteStore(os.path.join(directory, file_name), journal="delete" if nfs else "wal")


def open_store(store, check_only):
    """At start-up: check that a file store can be used (PluginError naming the file if
    not); nothing for Redis, nor in check-only mode (which creates nothing)."""
    if check_only or not isinstance(store, SQLiteStore):
        return
    try:
        store.check()
    except StoreError as e:
        raise PluginError("cannot use the database %s" % (e,))


def describe(store):
    """``redis://host:port/db`` or the file's path, for logs."""
    return store.describe() if isinstance(store, RedisStore) else store.path
