"""The server: configuration, loaded plugins and the live sessions.

Its log is :mod:`qpsmtpd_tx.server_log`, its shutdown :mod:`qpsmtpd_tx.drain` (both mixins).

One :class:`SMTPServer` is built at start-up from a config directory; it loads the ``logging``
plugins first and then the ``plugins`` file, and fails with :class:`StartupError` if anything is
wrong, listing every problem found (each naming its file and line). :func:`config_problems`
checks a config without starting anything. The Twisted side (``protocol.py``) asks the server
for sessions.
"""

import os
import pwd

from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from qpsmtpd_tx import codes, config_items, heap
from qpsmtpd_tx.chain import PluginChain
from qpsmtpd_tx.dns.budget import DNSBudget
from qpsmtpd_tx.drain import Draining
from qpsmtpd_tx.ip_index import SessionsByIP
from qpsmtpd_tx.loader import load_plugin_lines
from qpsmtpd_tx.message import remove_stale_spool_files
from qpsmtpd_tx.metrics import NO_METRICS
from qpsmtpd_tx.paths import default_plugin_dirs
from qpsmtpd_tx.plugins_file import plugin_lines_and_problems
from qpsmtpd_tx.server_log import ServerLog

#: config items kept under another attribute name, the public one being resolved from them
_RESOLVED_ITEMS = {"spool_dir": "_spool_dir", "plugin_dirs": "_extra_plugin_dirs"}


class StartupError(Exception):
    """The server cannot start; ``problems`` lists every reason, each naming its file and line.

    The message is the problems, one per line.
    """

    def __init__(self, problems):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def config_problems(config, plugin_dirs=None, **server_args):
    """Every problem that would stop a server on ``config`` from starting; ``[]`` if none.

    Each is a ``file:line: message`` string (or ``file: message`` when no line is at fault).
    Reads the core config items and the ``logging`` and ``plugins`` files, then finds and
    initialises every plugin, so that bad arguments and broken config files of plugins are
    found too, in check-only mode (:attr:`SMTPServer.check_only`): nothing is created (spool
    directory, Maildirs), nothing listens, nothing is logged, and the plugins are stopped again.
    ``server_args`` go to :class:`SMTPServer`.
    """
    server = SMTPServer(config, plugin_dirs=plugin_dirs, load=False, check_only=True,
                        **server_args)
    try:
        server.load_plugins()
    except StartupError as e:
        return e.problems
    finally:
        server.stop_plugins()
    return []


class SMTPServer(ServerLog, Draining):
    """Configuration, hook registry and log shared by all sessions."""

    #: set for :func:`config_problems`: plugins initialise but create nothing (see that function)
    check_only = False
    #: what sessions report their events to (:mod:`qpsmtpd_tx.metrics`); see use_metrics
    metrics = NO_METRICS

    def __init__(self, config, plugin_dirs=None, max_conn_ip=5, auth=None, load=True,
                 reverse_dns=False, max_connections=0, check_only=False):
        """Read ``config``; with ``load``, load the plugins too (:meth:`load_plugins`).

        Without ``load`` nothing is raised yet: problems of the config found here are raised,
        with those of the plugins, by :meth:`load_plugins`.
        """
        self.config = config
        #: the plugin chain new sessions start on (replaced by :meth:`reload`)
        self.chain = PluginChain(self.log, self.log_enabled)
        self._loading = None
        #: replaced chains that sessions still use
        self._retired_chains = []
        self._refreeze_call = None      # heap.refreeze, scheduled after a reload
        self.check_only = check_only
        self.sessions = set()
        #: the same sessions by client address (the protocol adds and discards them in both)
        self.sessions_by_ip = SessionsByIP()
        self.max_conn_ip = max_conn_ip
        #: refuse new clients with 421 beyond this many live sessions (0: no limit)
        self.max_connections = max_connections
        self._auth = auth
        self.reverse_dns = reverse_dns
        self._pool = None
        self._resolver = None
        self._resolver_trigger = None
        #: live config items found bad after start-up: the error last logged (config_value)
        self._bad_live_items = {}
        #: what is wrong in the config itself (core items, plugin lines), raised with the rest
        self.config_problems = self._read_core_config()
        # Our own plugins come first: an existing qpsmtpd config's plugin_dirs points at
        # Perl plugins (Debian: /usr/share/qpsmtpd/plugins), which cannot run here.
        self.plugin_dirs = plugin_dirs or default_plugin_dirs() + [
            d for d in self._extra_plugin_dirs if d not in default_plugin_dirs()]
        self._logging_lines, problems = plugin_lines_and_problems(config, "logging")
        self.config_problems += problems
        self._plugin_lines, problems = plugin_lines_and_problems(config, "plugins")
        self.config_problems += problems
        if load:
            self.load_plugins()

    def load_plugins(self):
        """Check the spool dir, then start the logging plugins and the ``plugins`` file's.

        Runs after ``twistd`` dropped privileges, so both happen as the serving user. Every
        plugin line is tried; :class:`StartupError` then lists every problem found.
        """
        problems = list(self.config_problems)
        try:
            self._check_spool_dir()
        except StartupError as e:
            problems += e.problems
        # Plugins loaded after a ``config`` plugin read their config through it (qpsmtpd order).
        self.config.config_hook = self._run_config_hooks
        problems += self._load_chain(self.chain, self._logging_lines, self._plugin_lines)
        if problems:
            raise StartupError(problems)

    def _load_chain(self, chain, logging_lines, plugin_lines):
        """Load the logging plugins, then the others, into ``chain``; return the problems.

        Every line is tried (a list of ``file:line: …`` strings comes back); ``chain`` holds
        the plugins that started, to be stopped if the chain is not used.
        """
        self._loading = chain
        chain.hooks.default_timeout = self.plugin_timeout
        chain.hooks.defer_on_error = self.plugin_errors == "defer"
        chain.hooks.clock = self.chain.hooks.clock
        chain.hooks.observe = self.chain.hooks.observe
        try:
            _, problems = load_plugin_lines(self, logging_lines, self.plugin_dirs, chain.hooks,
                                            chain.logging_plugins)
            if chain is self.chain:
                self._set_log_threshold()   # the plugins' own start-up lines reach the loggers
            problems += load_plugin_lines(self, plugin_lines, self.plugin_dirs, chain.hooks,
                                          chain.plugins)[1]
        finally:
            self._loading = None
        if chain is self.chain:
            self._set_log_threshold()
        chain.policy_plugins = [p for p in chain.plugins if p.recipient_settings]
        chain.recipient_confirmers = [p for p in chain.plugins
                                      if getattr(p, "confirm_recipient", None) is not None]
        #: hosts_allow applies --max-from-ip itself (with karma); else the core does
        chain.core_limits_ip = not any(p.path.split(":")[0] == "hosts_allow" for p in chain.plugins)
        chain.tls = next((p.server_tls for p in chain.plugins
                          if getattr(p, "server_tls", None) is not None), None)
        chain.proxy = next((p.proxy_header for p in chain.plugins
                            if getattr(p, "proxy_header", None) is not None), None)
        # tls_before_auth: as its file says, else on exactly when the tls plugin is loaded
        explicit, line = config_items.read_item(self.config, "tls_before_auth")
        chain.tls_before_auth = explicit if line is not None else chain.tls is not None
        chain.auth = self._auth
        if chain.auth is None and any(chain.hooks.has(h) for h in
                                      ("auth", "auth-plain", "auth-login", "auth-cram-md5")):
            from qpsmtpd_tx.auth import Authenticator
            chain.auth = Authenticator(self, chain.hooks)
        return problems

    # The current chain's parts, as attributes of the server (plugins and tests read them).
    hooks = property(lambda self: self.chain.hooks, doc="The current chain's HookRegistry.")
    plugins = property(lambda self: self.chain.plugins, doc="The current chain's plugins.")
    logging_plugins = property(lambda self: self.chain.logging_plugins,
                               doc="The current chain's logging plugins.")
    policy_plugins = property(lambda self: self.chain.policy_plugins,
                              doc="The current chain's plugins that read recipient settings.")
    auth = property(lambda self: self.chain.auth, doc="The current chain's Authenticator, or None.")
    core_limits_ip = property(lambda self: self.chain.core_limits_ip,
                              doc="True if the core enforces --max-from-ip (no hosts_allow loaded).")

    def _read_core_config(self):
        """Read the server's own config items (:mod:`qpsmtpd_tx.config_items`) into attributes
        of the same names; returns the problems (a bad item gets its default)."""
        values, problems = config_items.read_items(self.config)
        for name, value in values.items():
            setattr(self, _RESOLVED_ITEMS.get(name, name), value)
        self.timeout = self.timeoutsmtpd or self.timeout
        self._log_threshold = self.loglevel
        return problems

    def config_value(self, name):
        """The current value of core config item ``name``, read now (the ``live`` items).

        A bad value (a file made unreadable after start-up, then SIGHUP) gives the item's
        default, logged at LOGERROR once per error, not at each use (once per connection)."""
        value, error = config_items.value_or_default(self.config, name)
        if error is None:
            self._bad_live_items.pop(name, None)
        elif self._bad_live_items.get(name) != str(error):
            self._bad_live_items[name] = str(error)
            self.log(codes.LOGERROR, "using the default %s: %s" % (name, error))
        return value

    def _run_config_hooks(self, name):
        """Values for config item ``name`` from ``config`` hooks, or None (read the file).

        Config lookups are synchronous, so ``hook_config(transaction, name)`` must answer at
        once: ``(OK, [values])`` supplies the item, anything else passes.
        """
        for plugin, method in (self._loading or self.chain).hooks.handlers("config"):
            try:
                result = method(None, name)
            except Exception as e:
                self.log(codes.LOGCRIT, "FATAL PLUGIN ERROR [%s]: %r" % (plugin.name, e), hook="config")
                continue
            if isinstance(result, tuple) and result and result[0] == codes.OK:
                values = result[1] if len(result) > 1 else []
                return [values] if isinstance(values, str) else list(values)
        return None

    @property
    def spool_dir(self):
        """Where large message bodies are spooled: ``spool_dir`` config, else ``~/tmp`` (qpsmtpd's).

        Resolved when first used, from the password database (not $HOME), so that under
        ``twistd --uid`` it is the unprivileged user's home, as with qpsmtpd.
        """
        if self._spool_dir is None:
            try:
                home = pwd.getpwuid(os.getuid()).pw_dir
            except KeyError:
                home = os.path.expanduser("~")
            self._spool_dir = os.path.join(home, "tmp")
        return self._spool_dir

    def _check_spool_dir(self):
        """Create ``spool_dir`` (mode ``spool_perms``, default 0700) or refuse to start, as qpsmtpd.

        A check-only server creates nothing: it only refuses a path that is not a directory.
        """
        path = self.spool_dir
        if self.check_only:
            if os.path.exists(path) and not os.path.isdir(path):
                raise StartupError("cannot use spool_dir %s: not a directory (set spool_dir in %s)"
                                   % (path, self.config.path_of("spool_dir")
                                      or "the config directory"))
            return
        try:
            os.makedirs(path, mode=self.spool_perms, exist_ok=True)
            if not os.access(path, os.W_OK | os.X_OK):
                raise PermissionError(13, "not writable")
        except OSError as e:
            raise StartupError("cannot use spool_dir %s: %s (set spool_dir in %s)"
                               % (path, e.strerror, self.config.path_of("spool_dir")
                                  or "the config directory"))
        removed = remove_stale_spool_files(path)
        if removed:
            self.log(codes.LOGNOTICE, "removed %d spool files of stopped servers from %s: %s"
                     % (len(removed), path, " ".join(sorted(removed))))

    def reload_config(self):
        """Drop every cached config item (qpsmtpd's SIGHUP): files are read again when next used."""
        self.config.clear_cache()
        self.log(codes.LOGNOTICE, "configuration cache cleared; files are read again on next use")

    def reload(self):
        """SIGHUP: clear the config cache and load ``logging`` and ``plugins`` into a new chain.

        New sessions get the new chain; sessions in progress finish on theirs, whose plugins
        are stopped when the last of them ends. If anything is wrong (a bad line, a plugin that
        does not load) the error is logged with its file and line and the chain in use stays.
        Plugin files already loaded are not compiled again (as qpsmtpd). True if swapped.
        """
        heap.thaw()
        self.reload_config()
        chain = PluginChain(self.log, self.log_enabled)
        logging_lines, problems = plugin_lines_and_problems(self.config, "logging")
        plugin_lines, more = plugin_lines_and_problems(self.config, "plugins")
        problems += more
        if not problems:
            problems = self._load_chain(chain, logging_lines, plugin_lines)
        if problems:
            chain.retire()
            # items cached through the failed chain's config hooks must not stay
            self.config.clear_cache()
            for problem in problems:
                self.log(codes.LOGERROR, "reload failed, keeping the plugins in use: %s" % (problem,))
            self._refreeze_when_settled()
            return False
        old, self.chain = self.chain, chain
        self._logging_lines, self._plugin_lines = logging_lines, plugin_lines
        self._set_log_threshold()
        old.retire()
        self._retired_chains = [c for c in self._retired_chains + [old] if c.sessions]
        self.log(codes.LOGNOTICE, "plugins reloaded: %d plugins, %d logging plugins; %d sessions "
                 "finish on the previous ones" % (len(chain.plugins), len(chain.logging_plugins),
                                                  len(old.sessions)))
        self._refreeze_when_settled()
        return True

    def _refreeze_when_settled(self):
        """Once no session uses a replaced chain, freeze the long-lived objects again
        (:func:`heap.refreeze`), from the reactor: the caller's references (the old chain,
        the session that just ended) are gone by then."""
        if not heap.freezing() or self._retired_chains or self._refreeze_call is not None:
            return

        def refreeze():
            self._refreeze_call = None
            if not self._retired_chains:
                heap.refreeze()
        self._refreeze_call = reactor.callLater(0, refreeze)

    def use_metrics(self, metrics):
        """Report to ``metrics`` (``--metrics``) from now on; the hooks of this chain and of
        those SIGHUP loads are timed."""
        self.metrics = metrics
        self.chain.hooks.observe = metrics.observe_hook
        if self._resolver is not None:
            metrics.watch_resolver(self._resolver)

    def attach_session(self, session):
        """A session starts: it uses the current chain to its end (returned)."""
        self.chain.attach(session)
        return self.chain

    def detach_session(self, session):
        """A session has ended (its post-connection hooks ran)."""
        self.release_ip(session)
        chain = session.chain
        chain.detach(session)
        if chain.retired and not chain.sessions and chain in self._retired_chains:
            self._retired_chains.remove(chain)
            self._refreeze_when_settled()
        if self._drained is not None and not self._live_sessions():
            self._drain_done()

    def chains_in_use(self):
        """The chains that sessions still use (replaced by SIGHUP), then that of new ones."""
        return self._retired_chains + [self.chain]

    def stop_plugins(self):
        """Call every plugin's ``stop()`` (of the chains still in use, too); a Deferred firing
        when all are done."""
        return DeferredList([chain.stop() for chain in self.chains_in_use()])

    # -- blocking work -------------------------------------------------------------------------

    def run_blocking(self, func, *args, **kwargs):
        """Run ``func`` in the server's thread pool (for fsync and other blocking I/O).

        Returns a Deferred. The pool (``blocking_threads`` config, default 32) is separate from
        the reactor's, so slow disks cannot starve name resolution.
        """
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=self.blocking_threads,
                                    name="qpsmtpd-tx-io")
            self._pool.start()
            reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        return deferToThreadPool(reactor, self._pool, func, *args, **kwargs)

    # -- sessions ------------------------------------------------------------------------------

    def too_many_from_ip(self, session):
        """The refusal text if ``session``'s IP holds more than ``max_conn_ip`` connections, else None.

        Only when no ``hosts_allow`` plugin does this check (with the same text) itself.
        """
        if not self.max_conn_ip or not self.core_limits_ip:
            return None
        ip = session.connection.remote_ip
        count = self.sessions_by_ip.count(ip, exclude=session)
        if count < self.max_conn_ip:
            return None
        return self._too_many(session, ip, count + 1, "")

    def _too_many(self, session, ip, count, where):
        """Log a refusal for the per-IP limit; the reply text (hosts_allow's)."""
        self.log(codes.LOGINFO, "too many connections from %s%s (%d > %d)"
                 % (ip, where, count, self.max_conn_ip), transaction=session.transaction)
        return "too many connections from %s, try again later" % ip

    #: the count across servers (:mod:`qpsmtpd_tx.shared_ip_count`), made at first use
    _shared_ip_count = None

    def too_many_across_servers(self, session):
        """With ``max_from_ip_redis``: a Deferred firing the refusal text if ``session``'s IP
        holds ``max_conn_ip`` connections on all servers together, else None (and it counts
        from now on, until :meth:`release_ip`). None without it: nothing to wait for.

        Made at first use, so that each ``--workers`` process has its own Redis connections.
        Applies whether or not ``hosts_allow`` is loaded (its own check comes after).
        """
        if not self.max_from_ip_redis or not self.max_conn_ip or self.check_only:
            return None
        if self._shared_ip_count is None:
            from qpsmtpd_tx.shared_ip_count import SharedIPCount
            self._shared_ip_count = SharedIPCount(
                self.max_from_ip_redis, self.max_conn_ip, self.max_from_ip_redis_ttl,
                self.max_from_ip_redis_timeout, self.log)
        ip = session.connection.remote_ip
        d = self._shared_ip_count.acquire(session.connection.id, ip)
        return d.addCallback(lambda answer: None if answer[0] else self._too_many(
            session, ip, answer[1] + 1, " across servers"))

    def release_ip(self, session):
        """``session`` no longer counts for its IP across servers (its final reply is out,
        or it is gone)."""
        if self._shared_ip_count is not None:
            self._shared_ip_count.release(session.connection.id)

    @property
    def resolver(self):
        """The process's DNS resolver (:class:`qpsmtpd_tx.dns.Resolver`), made at first use
        from ``dns_servers``, ``dns_timeout``, ``dns_attempts`` and ``dns_cache_size``.

        Made lazily so that a server without DNS plugins has none, and so that each worker
        process (``--workers``) makes its own after the fork.
        """
        if self._resolver is None:
            from qpsmtpd_tx.dns import Resolver
            self._resolver = Resolver.from_settings(
                reactor, servers=self.dns_servers, timeout=self.dns_timeout or None,
                tries=self.dns_attempts or None, cache_size=self.dns_cache_size)
            self.metrics.watch_resolver(self._resolver)
            self._resolver_trigger = reactor.addSystemEventTrigger(
                "during", "shutdown", self._close_dns_at_shutdown)
        return self._resolver

    def close_dns(self):
        """Close the resolver if one was made (its sockets and timers leave the reactor);
        the next lookup makes a new one."""
        resolver, self._resolver = self._resolver, None
        if resolver is not None:
            resolver.close()
        trigger, self._resolver_trigger = self._resolver_trigger, None
        if trigger is not None:
            # closed before shutdown (tests, a stopped server): the trigger would keep this
            # server alive until the reactor stops
            reactor.removeSystemEventTrigger(trigger)

    def _close_dns_at_shutdown(self):
        self._resolver_trigger = None
        self.close_dns()

    def connection_dns(self):
        """A new connection's view of the resolver, within its ``dns_budget``."""
        return DNSBudget(self._current_resolver, self.dns_budget, reactor)

    def _current_resolver(self):
        return self.resolver

    def peer_ips(self, exclude=None):
        """Remote IPs of the live sessions but ``exclude`` (qpsmtpd's ``child_addrs``).

        A session that has sent its final reply (:attr:`~qpsmtpd_tx.session.SMTPSession.finished`)
        is left out: its connection may take a while to close (a TLS shutdown waits for the
        client), but it serves the client no more.
        """
        return [s.connection.remote_ip for s in self.sessions
                if s is not exclude and not s.finished]
