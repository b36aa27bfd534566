"""Listening on the endpoints, and running extra worker processes on the same sockets.

One Python process uses one core. With ``--workers N`` the twistd process binds every
``--listen`` endpoint as usual (as root, before ``--uid`` takes effect), serves on it, and
after the privilege drop starts N-1 worker processes (:mod:`qpsmtpd_tx.worker`) that inherit
the listening sockets: the kernel hands each new connection to whichever process accepts it
first. A worker that dies is started again after a second; SIGHUP is passed on to the
workers (each reloads its plugins); when the service stops, the workers get SIGTERM and drain
their sessions as the main process does, which waits for them.

Each process has its own plugins and state: per-IP connection counts (``hosts_allow``,
``-m``) and anything a plugin keeps in memory are per process.
"""

import os
import socket
import sys

from twisted.application import service
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from qpsmtpd_tx import paths
from qpsmtpd_tx.server import StartupError

log = Logger(namespace="qpsmtpd_tx.workers")


#: the listen queue of our TCP and UNIX endpoints unless the endpoint says ``backlog=N``.
#: Twisted's default is 50: a burst of clients beyond it overflows the kernel's queue, and
#: with SYN cookies a connection the client already thinks open is then lost on our side
#: (the client waits for a greeting that never comes). qpsmtpd-forkserver listens with
#: SOMAXCONN; the kernel caps this at net.core.somaxconn.
DEFAULT_BACKLOG = 1024
_BACKLOG_TYPES = ("tcp", "tcp6", "unix", "ssl")


def with_default_backlog(description):
    """Endpoint string ``description`` with ``backlog=`` :data:`DEFAULT_BACKLOG` added if it
    is a TCP, UNIX or SSL endpoint that does not set one."""
    kind = description.split(":", 1)[0].lower()
    if kind not in _BACKLOG_TYPES or ":" not in description:
        return description
    if any(part.strip().lower().startswith("backlog=") for part in description.split(":")[1:]):
        return description
    return "%s:backlog=%d" % (description, DEFAULT_BACKLOG)


class ListeningService(service.Service):
    """Listens on endpoint strings in privilegedStartService (so port 25 works before --uid)."""

    def __init__(self, endpoints, factory):
        self.endpoints = endpoints
        self.factory = factory
        self.ports = []

    def privilegedStartService(self):
        """Listen on every endpoint; raise StartupError naming each one that cannot listen."""
        service.Service.privilegedStartService(self)
        problems = []
        for description in self.endpoints:
            d = serverFromString(reactor, with_default_backlog(description)).listen(self.factory)
            d.addCallback(self.ports.append)
            if d.called:
                failures = []
                d.addErrback(failures.append)
                problems += ["cannot listen on %s: %s" % (description, f.getErrorMessage())
                             for f in failures]
            else:
                d.addErrback(self._failed_later, description)
        if problems:
            raise StartupError(problems)

    @staticmethod
    def _failed_later(failure, description):
        # Our endpoints listen at once; one that fails later cannot stop the start any more.
        sys.stderr.write("qpsmtpd-tx: cannot listen on %s: %s\n"
                         % (description, failure.getErrorMessage()))
        sys.stderr.flush()
        os._exit(1)

    def stopService(self):
        service.Service.stopService(self)
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])


def _family(port):
    host = port.getHost()
    kind = type(host).__name__
    return {"IPv4Address": socket.AF_INET, "IPv6Address": socket.AF_INET6}.get(kind, socket.AF_UNIX)


class _WorkerProtocol(protocol.ProcessProtocol):
    """Copies a worker's output into our log and reports its end."""

    def __init__(self, pool, number):
        self.pool = pool
        self.number = number
        self.ended = defer.Deferred()
        self._partial = b""

    def outReceived(self, data):
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            log.info("worker {n}: {line}", n=self.number, line=line.decode("utf-8", "replace"))

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(None)
        self.pool.worker_ended(self.number, reason)


class WorkerPool(service.Service):
    """Runs ``count`` worker processes on the listening sockets of ``listening`` (and the
    SMTPS ones of ``tls_listening``, the PROXY ones of ``proxy_listening``, if given)."""

    #: seconds before a worker that ended is started again; doubled, up to
    #: ``max_restart_delay``, each time a worker ends within ``quick_failure`` seconds of its
    #: start (one that cannot start at all is not restarted every second forever)
    restart_delay = 1.0
    max_restart_delay = 60.0
    quick_failure = 10.0
    clock = reactor

    def __init__(self, count, listening, worker_args, tls_listening=None, proxy_listening=None):
        self.count = count
        self.listening = listening
        self.tls_listening = tls_listening
        self.proxy_listening = proxy_listening
        self.worker_args = list(worker_args)
        self.workers = {}
        self._started_at = {}
        self._delays = {}

    def startService(self):
        service.Service.startService(self)
        for number in range(1, self.count + 1):
            self._spawn(number)

    def _spawn(self, number):
        fds = {0: "w", 1: "r", 2: "r"}
        argv = [sys.executable, "-m", "qpsmtpd_tx.worker", "--worker", str(number)]
        tls_ports = self.tls_listening.ports if self.tls_listening is not None else []
        proxy_ports = self.proxy_listening.ports if self.proxy_listening is not None else []
        ports = [("--fd", p) for p in self.listening.ports] + [("--tls-fd", p) for p in tls_ports]
        ports += [("--proxy-fd", p) for p in proxy_ports]
        for n, (option, port) in enumerate(ports):
            child_fd = 3 + n
            fds[child_fd] = port.fileno()
            argv += [option, "%d:%d" % (child_fd, int(_family(port)))]
        argv += self.worker_args
        env = dict(os.environ)
        # the worker must import the same qpsmtpd_tx as we do (a checkout is not installed)
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(paths.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        worker = _WorkerProtocol(self, number)
        self.workers[number] = (worker, reactor.spawnProcess(
            worker, sys.executable, argv, env=env, childFDs=fds))
        self._started_at[number] = self.clock.seconds()
        log.info("started worker {n}", n=number)

    def worker_ended(self, number, reason):
        self.workers.pop(number, None)
        if not self.running:
            return
        delay = self.next_restart_delay(number)
        log.error("worker {n} ended ({why}); starting it again in {delay:g} s", n=number,
                  why=reason.getErrorMessage(), delay=delay)
        self.clock.callLater(delay, self._respawn, number)

    def next_restart_delay(self, number):
        """Seconds to wait before starting worker ``number`` again, now that it has ended."""
        lived = self.clock.seconds() - self._started_at.get(number, self.clock.seconds())
        if lived >= self.quick_failure:
            delay = self.restart_delay
        else:
            delay = min(self._delays.get(number, self.restart_delay / 2) * 2,
                        self.max_restart_delay)
        self._delays[number] = delay
        return delay

    def _respawn(self, number):
        if self.running and number not in self.workers:
            self._spawn(number)

    def signal_all(self, name):
        """Send a signal (``"HUP"``…) to every worker."""
        for _, transport in list(self.workers.values()):
            try:
                transport.signalProcess(name)
            except Exception:
                pass

    def stopService(self):
        service.Service.stopService(self)
        ended = []
        for worker, transport in list(self.workers.values()):
            ended.append(worker.ended)
            try:
                transport.closeStdin()
                transport.signalProcess("TERM")
            except Exception:
                pass
        return defer.DeferredList(ended)
