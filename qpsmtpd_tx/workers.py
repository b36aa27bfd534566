"""Listening on the endpoints, and running extra worker processes on the same sockets.

One Python process uses one core. With ``--workers N`` the twistd process binds every
``--listen`` endpoint as usual (as root, before ``--uid`` takes effect), serves on it, and
after the privilege drop starts N-1 worker processes (:mod:`qpsmtpd_tx.worker`) that inherit
the listening sockets: the kernel hands each new connection to whichever process accepts it
first (if the user it runs as after ``--uid`` may not run this interpreter, a warning says so
and it serves alone, as :func:`~qpsmtpd_tx.syncer.child_problem` tells, on the workers' own
sockets too with ``--reuseport``). A worker that dies is
started again after a second; SIGHUP is passed on to the
workers (each reloads its plugins); when the service stops, the workers get SIGTERM and drain
their sessions as the main process does, which waits for them.

With ``--reuseport`` (Linux, BSD: where the platform has ``SO_REUSEPORT``) each TCP endpoint
gets one listening socket per process instead, all bound to the same address, still by the
twistd process before the privilege drop: the kernel then spreads new connections evenly over
the processes (by a hash of the client's address and port), where with one shared socket
whichever process is waiting in ``accept`` first takes the connection, so a busy process gets
fewer and an idle one more. While a worker is down, this process accepts on its sockets
(:meth:`ListeningService.serve_worker_sockets`). Other endpoints (UNIX sockets,
``systemd:``...) stay shared.

With ``--worker-timeout S`` (default 10) a worker that stops answering the main process's
questions for S seconds, with or without ``--reuseport``, is killed and started again
(:mod:`qpsmtpd_tx.worker_liveness`).

Each process has its own plugins and state: per-IP connection counts (``hosts_allow``,
``-m``) and anything a plugin keeps in memory are per process.
"""

import os
import socket
import sys

from twisted.application import service
from twisted.internet import defer, protocol, reactor
from twisted.internet import tcp
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.logger import Logger

from qpsmtpd_tx import paths
from qpsmtpd_tx.server import StartupError
from qpsmtpd_tx.syncer import child_problem
from qpsmtpd_tx.worker_liveness import ALIVE_FD, Liveness

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


def worker_count(value):
    """``--workers``: a number of at least 1, or ``auto`` (one per core this process may use);
    raises ValueError."""
    if value.strip().lower() == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:      # not on Linux
            return max(1, os.cpu_count() or 1)
    count = int(value)
    if count < 1:
        raise ValueError("--workers must be at least 1")
    return count


#: whether this platform can give each process its own listening socket on one address
HAVE_REUSEPORT = hasattr(socket, "SO_REUSEPORT")


class _ReusePort(tcp.Port):
    """A Twisted TCP port whose socket has SO_REUSEPORT set before it is bound."""

    def createInternetSocket(self):
        s = tcp.Port.createInternetSocket(self)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return s


def _reuseport_socket(address, family, backlog):
    """A new listening socket with SO_REUSEPORT on ``address`` (a port's getHost())."""
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((address.host, address.port))
        s.listen(backlog)
        s.setblocking(False)      # as Twisted's own listening sockets (it accepts in a loop)
    except OSError:
        s.close()
        raise
    return s


class ListeningService(service.Service):
    """Listens on endpoint strings in privilegedStartService (so port 25 works before --uid).

    ``own_sockets``: with SO_REUSEPORT, also bind that many more listening sockets for each TCP
    endpoint, one per worker (:meth:`worker_fds`); other endpoints are shared.
    """

    def __init__(self, endpoints, factory, own_sockets=0):
        self.endpoints = endpoints
        self.factory = factory
        self.ports = []
        self.own_sockets = own_sockets
        #: per port (in ``ports`` order): the workers' own sockets, or None (shared)
        self._extra = []
        #: worker number → the ports accepting here on its own sockets while it is down
        self._standins = {}

    def worker_fds(self, number):
        """[(fd, address family)] for worker ``number`` (1-based): its own socket of each
        endpoint that has them, else the shared one."""
        fds = []
        for port, extra in zip(self.ports, self._extra):
            if extra is None:
                fds.append((port.fileno(), _family(port)))
            else:
                sock = extra[number - 1]
                fds.append((sock.fileno(), sock.family))
        return fds

    def serve_worker_sockets(self, number):
        """Accept here on worker ``number``'s own sockets while it is not running: the kernel
        goes on handing each SO_REUSEPORT socket its share of the new connections, which
        would wait unanswered until the worker is back (never, if it cannot start)."""
        if number in self._standins:
            return
        self._standins[number] = [
            reactor.adoptStreamPort(extra[number - 1].fileno(), extra[number - 1].family,
                                    self.factory)
            for extra in self._extra if extra is not None]

    def release_worker_sockets(self, number):
        """Stop accepting on worker ``number``'s own sockets (it starts again); a Deferred."""
        return defer.gatherResults([defer.maybeDeferred(port.stopListening)
                                    for port in self._standins.pop(number, ())])

    def close_worker_sockets(self):
        """Close the workers' own sockets (no worker will accept on them)."""
        for extra in self._extra:
            for sock in extra or ():
                sock.close()

    def _listen(self, description):
        endpoint = serverFromString(reactor, with_default_backlog(description))
        if not (self.own_sockets and isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint))):
            return endpoint.listen(self.factory).addCallback(lambda port: (port, None))
        # the endpoint's parsed settings (Twisted keeps them as these attributes)
        port = _ReusePort(endpoint._port, self.factory, endpoint._backlog, endpoint._interface,
                          reactor)
        extra = []
        try:
            port.startListening()
            for _ in range(self.own_sockets):
                extra.append(_reuseport_socket(port.getHost(), _family(port), endpoint._backlog))
        except Exception:
            failure = defer.fail()
            for sock in extra:
                sock.close()
            if port.connected:
                port.stopListening()
            return failure
        return defer.succeed((port, extra))

    def _listening(self, port_and_extra):
        port, extra = port_and_extra
        self.ports.append(port)
        self._extra.append(extra)

    def privilegedStartService(self):
        """Listen on every endpoint; raise StartupError naming each one that cannot listen."""
        service.Service.privilegedStartService(self)
        problems = []
        for description in self.endpoints:
            d = self._listen(description)
            d.addCallback(self._listening)
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
        standins = [self.release_worker_sockets(number) for number in list(self._standins)]
        self.close_worker_sockets()      # the workers close their copies as they stop
        return defer.gatherResults(standins + [defer.maybeDeferred(p.stopListening)
                                               for p in self.ports])


def _family(port):
    host = port.getHost()
    kind = type(host).__name__
    return {"IPv4Address": socket.AF_INET, "IPv6Address": socket.AF_INET6}.get(kind, socket.AF_UNIX)


class _WorkerProtocol(protocol.ProcessProtocol):
    """Copies a worker's output into our log, passes on its answers to the liveness check
    and reports its end."""

    def __init__(self, pool, number):
        self.pool = pool
        self.number = number
        self.ended = defer.Deferred()
        self._partial = b""
        #: the liveness check's state (:class:`~qpsmtpd_tx.worker_liveness.Liveness`)
        self.asked_at = None
        self.answered = False
        self.reload_allowed_until = None
        self.killing = False

    def childDataReceived(self, childFD, data):
        if childFD == ALIVE_FD:
            self.pool.worker_answered(self)
        else:
            protocol.ProcessProtocol.childDataReceived(self, childFD, data)

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
    SMTPS ones of ``tls_listening``, the PROXY ones of ``proxy_listening`` and the PROXY-then-SMTPS
    ones of ``proxy_tls_listening``, if given). With ``timeout`` (seconds, 0: none) a worker
    that does not answer the liveness check that long is killed and started again."""

    #: seconds before a worker that ended is started again; doubled, up to
    #: ``max_restart_delay``, each time a worker ends within ``quick_failure`` seconds of its
    #: start (one that cannot start at all is not restarted every second forever)
    restart_delay = 1.0
    max_restart_delay = 60.0
    quick_failure = 10.0
    clock = reactor

    def __init__(self, count, listening, worker_args, tls_listening=None, proxy_listening=None,
                 proxy_tls_listening=None, timeout=0):
        self.count = count
        self.listening = listening
        self.tls_listening = tls_listening
        self.proxy_listening = proxy_listening
        self.proxy_tls_listening = proxy_tls_listening
        self.worker_args = list(worker_args)
        self.workers = {}
        self._started_at = {}
        self._delays = {}
        self.liveness = Liveness(self, timeout) if timeout else None

    def startService(self):
        service.Service.startService(self)
        # the workers start as the user we now run as (after --uid): one that may not run our
        # interpreter would fail at every start, so this process serves alone, on the
        # workers' own sockets too (closing them would reset the connections queued there)
        problem = child_problem()
        if problem is not None:
            log.warn("--workers: cannot start the {count} extra processes ({problem}): "
                     "serving from this process only", count=self.count, problem=problem)
            for listening in self._all_listening():
                for number in range(1, self.count + 1):
                    listening.serve_worker_sockets(number)
            return
        for number in range(1, self.count + 1):
            self._spawn(number)
        if self.liveness is not None:
            self.liveness.start()

    def _all_listening(self):
        return [sockets for sockets in (self.listening, self.tls_listening,
                                        self.proxy_listening, self.proxy_tls_listening)
                if sockets is not None]

    def _spawn(self, number):
        fds = {0: "w", 1: "r", 2: "r", ALIVE_FD: "r"}
        argv = [sys.executable, "-m", "qpsmtpd_tx.worker", "--worker", str(number),
                "--alive-fd", str(ALIVE_FD)]
        listening = [("--fd", fd) for fd in self.listening.worker_fds(number)]
        for option, sockets in (("--tls-fd", self.tls_listening),
                                ("--proxy-fd", self.proxy_listening),
                                ("--proxy-tls-fd", self.proxy_tls_listening)):
            if sockets is not None:
                listening += [(option, fd) for fd in sockets.worker_fds(number)]
        for n, (option, (fd, family)) in enumerate(listening):
            child_fd = ALIVE_FD + 1 + n
            fds[child_fd] = fd
            argv += [option, "%d:%d" % (child_fd, int(family))]
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

    def worker_answered(self, worker):
        """``worker`` (its process protocol) answered the liveness check."""
        if self.liveness is not None:
            self.liveness.answered(worker)

    def serve_for(self, number):
        """Accept here on worker ``number``'s own sockets (if any) while it is down or being
        killed for not answering; nothing once the service stops (they are closed)."""
        if not self.running:
            return
        for listening in self._all_listening():
            listening.serve_worker_sockets(number)

    def worker_ended(self, number, reason):
        self.workers.pop(number, None)
        if not self.running:
            return
        self.serve_for(number)
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
            for listening in self._all_listening():
                listening.release_worker_sockets(number)
            self._spawn(number)

    def reload(self):
        """Pass SIGHUP on to every worker (each reloads its plugins); the liveness check
        gives each the time it gives a starting worker (:meth:`Liveness.reloading`)."""
        for worker, transport in list(self.workers.values()):
            if self.liveness is not None:
                self.liveness.reloading(worker)
            try:
                transport.signalProcess("HUP")
            except Exception:       # ended meanwhile
                pass

    def stopService(self):
        """SIGTERM to every worker; a Deferred firing when all have ended. Without a liveness
        check their standard input is closed too; with one it stays open and the check goes
        on, so that a worker that hangs instead of draining is killed, not waited for."""
        service.Service.stopService(self)
        ended = []
        for worker, transport in list(self.workers.values()):
            ended.append(worker.ended)
            try:
                if self.liveness is None:
                    transport.closeStdin()
                transport.signalProcess("TERM")
            except Exception:
                pass
        done = defer.DeferredList(ended)
        if self.liveness is not None:
            done.addBoth(lambda result: (self.liveness.stop(), result)[1])
        return done
