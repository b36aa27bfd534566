"""``twistd qpsmtpd-tx``: command-line options and the service they build."""

import grp
import os
import pwd
import signal

from twisted.application import service
from twisted.internet import defer, reactor
from twisted.python import usage

from qpsmtpd_tx import heap
from qpsmtpd_tx.codes import LOGINFO
from qpsmtpd_tx.config import Config
from qpsmtpd_tx.paths import program_dir
from qpsmtpd_tx.protocol import SMTPFactory, proxy_factory, proxy_tls_factory, smtps_factory
from qpsmtpd_tx.server import SMTPServer, StartupError, config_problems
from qpsmtpd_tx.signals import chain_signal, stop_on_sigterm
from qpsmtpd_tx.startup import (StartupReporter, config_dir_problem, privilege_problem,
                                switches_user)
from qpsmtpd_tx.worker_liveness import DEFAULT_TIMEOUT
from qpsmtpd_tx.workers import HAVE_REUSEPORT, ListeningService, WorkerPool, worker_count

DEFAULT_LISTEN = "tcp:2525:interface=127.0.0.1"


class Options(usage.Options):
    """Options of ``twistd qpsmtpd-tx``."""

    synopsis = "[options]"
    longdesc = ("An SMTP server that reads a qpsmtpd config directory and runs its plugins. "
                "Config lookup per file: --config (or $QPSMTPD_CONFIG), then config/ beside "
                "the program, then $QMAIL/control.")
    optParameters = [
        ["config", None, None, "qpsmtpd config directory (default: $QPSMTPD_CONFIG)"],
        ["max-from-ip", "m", "5", "concurrent connections per client IP; more get 451 (0: no limit)"],
        ["workers", "w", "1", "processes serving the listening sockets, or auto: one per core "
         "(see README)"],
        ["worker-timeout", None, str(DEFAULT_TIMEOUT), "with --workers: seconds a worker may "
         "leave the main process's liveness check unanswered before it is killed and started "
         "again (0: no check)"],
        ["limit-connections", None, "500",
         "concurrent clients per process; more get 421 and are closed (0: no limit)"],
        ["metrics", None, None, "serve Prometheus metrics at /metrics on this Twisted endpoint, "
         "e.g. tcp:9125:interface=127.0.0.1 (default: off)"],
    ]
    optFlags = [
        ["no-rdns", "H", "do not look up the client's host name (remote_host is then Unknown)"],
        ["reuseport", None, "with --workers: a listening socket per process on each TCP "
         "endpoint (SO_REUSEPORT), so the kernel spreads connections evenly"],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["listen"] = []
        self["listen-tls"] = []
        self["listen-proxy"] = []
        self["listen-proxy-tls"] = []

    def opt_listen_proxy(self, endpoint):
        """Listen on a Twisted endpoint (repeatable) where proxies (HAProxy send-proxy or send-proxy-v2) connect: a PROXY header first, only from proxy_trusted"""
        self["listen-proxy"].append(endpoint)

    def opt_listen_proxy_tls(self, endpoint):
        """As --listen-proxy, but SMTPS: the client's TLS handshake follows the PROXY header (HAProxy in TCP mode passing port 465 through); needs the tls plugin"""
        self["listen-proxy-tls"].append(endpoint)

    def opt_listen_tls(self, endpoint):
        """SMTPS (implicit TLS, RFC 8314) on a Twisted endpoint (repeatable), e.g. tcp:465; needs the tls plugin"""
        self["listen-tls"].append(endpoint)

    def opt_listen(self, endpoint):
        """Listen on a Twisted endpoint (repeatable), e.g. tcp:25, tcp6:25, systemd:domain=INET:index=0"""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_c(self, value):
        """Not an option: qpsmtpd-forkserver's -c is a connection limit, ours was --config"""
        raise usage.UsageError(
            "-c is not an option of twistd qpsmtpd-tx: write --config DIR for the config "
            "directory, or --limit-connections N for qpsmtpd-forkserver's -c N "
            "(`qpsmtpd-tx forkserver` takes qpsmtpd-forkserver's options)")

    def postOptions(self):
        if not any(self[name] for name in ("listen", "listen-tls", "listen-proxy",
                                           "listen-proxy-tls")):
            self["listen"] = [DEFAULT_LISTEN]
        for name in ("max-from-ip", "limit-connections", "worker-timeout"):
            try:
                self[name] = int(self[name])
            except ValueError:
                raise usage.UsageError("--%s takes a number" % name)
        if self["worker-timeout"] < 0:
            raise usage.UsageError("--worker-timeout takes a number of seconds, 0 for no check")
        try:
            self["workers"] = worker_count(str(self["workers"]))
        except ValueError as e:
            raise usage.UsageError("--workers takes a number of at least 1 or auto"
                                   if "invalid literal" in str(e) else str(e))
        if self["reuseport"] and not HAVE_REUSEPORT:
            raise usage.UsageError("--reuseport: this system has no SO_REUSEPORT")
        problem = config_dir_problem(self["config"])
        if problem:
            raise usage.UsageError("--config: " + problem)


class SMTPService(service.MultiService):
    """Listens on the endpoints; initialises the plugins when started.

    ``twistd`` binds the ports (privilegedStartService) as root, drops privileges (--uid/--gid)
    and only then calls startService: plugins create their files as the unprivileged user.
    Without a user switch the plugins start before the ports are bound, so that a failure
    leaves nothing listening. No connection is accepted before startService is done (the
    reactor is not running yet). A failure goes to ``reporter`` (the terminal, the log,
    exit status 1).
    """

    #: the option of an SMTPS endpoint, if one is configured: the tls plugin must be loaded
    needs_tls = None

    def __init__(self, server, reporter=None):
        service.MultiService.__init__(self)
        self.server = server
        self.reporter = reporter or StartupReporter()
        self._plugins_loaded = False

    def privilegedStartService(self):
        if not switches_user(self.reporter.options):
            self._load_plugins()
        try:
            service.MultiService.privilegedStartService(self)
        except StartupError as e:
            self.reporter.fail(e.problems)

    def _load_plugins(self):
        try:
            self.server.load_plugins()
        except StartupError as e:
            self.reporter.fail(e.problems)
        if self.needs_tls and self.server.chain.tls is None:
            self.reporter.fail(["%s needs the tls plugin (its certificate) in plugins"
                                % self.needs_tls])
        self._plugins_loaded = True

    def startService(self):
        if not self._plugins_loaded:
            self._load_plugins()
        service.MultiService.startService(self)
        self._log_started()
        self._install_sighup()
        reactor.callWhenRunning(stop_on_sigterm)
        self.reporter.started()
        heap.freeze_started()

    def _log_started(self):
        """qpsmtpd-forkserver's ``Listening on ADDR:PORT`` and ``Running as user U, group G``."""
        for child in self:
            if isinstance(child, ListeningService):
                for port in child.ports:
                    self.server.log(LOGINFO, "Listening on %s" % _address(port.getHost()))
        self.server.log(LOGINFO, "Running as user %s, group %s" % _user_and_group())

    def _install_sighup(self):
        """SIGHUP reloads the config and the plugins (as qpsmtpd) and is passed to the workers."""
        chain_signal(signal.SIGHUP, self._reload)

    def _reload(self):
        # the workers first: each reloads in its own process while this one does (this
        # reload blocks the reactor, so passing the signal on after it made them wait)
        for child in self:
            if isinstance(child, WorkerPool):
                child.reload()
        self.server.reload()

    def stopService(self):
        """SIGTERM: stop listening and stop the workers while the sessions drain
        (:meth:`SMTPServer.drain`), then stop the plugins."""
        return defer.gatherResults([service.MultiService.stopService(self),
                                    self.server.shut_down()])


def _address(address):
    """``127.0.0.1:25``, ``[::1]:25`` (as qpsmtpd-forkserver names what it listens on)."""
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None or port is None:
        name = getattr(address, "name", None) or address
        return os.fsdecode(name) if isinstance(name, bytes) else str(name)
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def _user_and_group():
    """The names (else numbers) of the effective user and group, after any --uid/--gid."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = uid
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = gid
    return user, group


def build_server(options, reporter):
    """The SMTPServer for these options, its plugins not started yet.

    The whole config is checked first (:func:`config_problems`: every plugin initialised in
    check-only mode), before twistd daemonizes or binds a port; any problem goes to
    ``reporter``, all of them at once.
    """
    def new_config():
        return Config(config_dir=options["config"], program_dir=program_dir())

    server_args = dict(max_conn_ip=options["max-from-ip"], reverse_dns=not options["no-rdns"],
                       max_connections=options["limit-connections"])
    problems = config_problems(new_config(), **server_args)
    problem = privilege_problem(options.parent or {})
    if problem:
        problems.append(problem)
    if problems:
        reporter.fail(problems)
    return SMTPServer(new_config(), load=False, **server_args)


def makeService(options):
    """The service listening on every --listen endpoint (and the extra workers, if any)."""
    reporter = StartupReporter(options.parent)
    server = build_server(options, reporter)
    top = SMTPService(server, reporter)
    own_sockets = options["workers"] - 1 if options["reuseport"] else 0
    listening = ListeningService(options["listen"], SMTPFactory(server), own_sockets)
    listening.setServiceParent(top)
    tls_listening = None
    if options["listen-tls"]:
        top.needs_tls = "--listen-tls"
        tls_listening = ListeningService(options["listen-tls"], smtps_factory(server), own_sockets)
        tls_listening.setServiceParent(top)
    proxy_listening = None
    if options["listen-proxy"]:
        proxy_listening = ListeningService(options["listen-proxy"], proxy_factory(server))
        proxy_listening.setServiceParent(top)
    proxy_tls_listening = None
    if options["listen-proxy-tls"]:
        top.needs_tls = top.needs_tls or "--listen-proxy-tls"
        proxy_tls_listening = ListeningService(options["listen-proxy-tls"],
                                               proxy_tls_factory(server))
        proxy_tls_listening.setServiceParent(top)
    if options["metrics"]:
        from qpsmtpd_tx.metrics_http import MetricsService
        MetricsService(options["metrics"], server, options["workers"] > 1).setServiceParent(top)
    if options["workers"] > 1:
        args = ["--max-from-ip", str(options["max-from-ip"]),
                "--limit-connections", str(options["limit-connections"])]
        if options["config"]:
            args += ["--config", options["config"]]
        if options["no-rdns"]:
            args.append("--no-rdns")
        if options["metrics"]:
            args.append("--metrics")
        WorkerPool(options["workers"] - 1, listening, args, tls_listening,
                   proxy_listening, proxy_tls_listening,
                   timeout=options["worker-timeout"]).setServiceParent(top)
    return top
