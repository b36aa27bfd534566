"""A worker process: serves SMTP on listening sockets inherited from the twistd parent.

Started by :mod:`qpsmtpd_tx.workers` as ``python -m qpsmtpd_tx.worker --alive-fd 3 --fd 4:2 …``
with the already bound (and, for port 25, privileged) sockets as file descriptors, and a pipe
to answer the parent's liveness questions on (:mod:`qpsmtpd_tx.worker_liveness`). It loads the same
configuration and plugins as the parent, logs to its standard output (the parent copies the
lines into its own log), and exits when its standard input closes, i.e. when the parent is gone,
or on SIGTERM, in both cases after draining its sessions (:meth:`SMTPServer.drain`). SIGHUP
reloads its plugins (:meth:`SMTPServer.reload`).
"""

import argparse
import os
import signal
import socket
import sys

from twisted.internet import reactor
from twisted.logger import FileLogObserver, Logger, formatEvent, globalLogBeginner

from qpsmtpd_tx import heap, objects, worker_liveness
from qpsmtpd_tx.config import Config
from qpsmtpd_tx.paths import program_dir
from qpsmtpd_tx.protocol import SMTPFactory, proxy_factory, proxy_tls_factory, smtps_factory
from qpsmtpd_tx.server import SMTPServer, StartupError
from qpsmtpd_tx.signals import chain_signal, stop_reactor


class _ParentWatch:
    """Stops the reactor when standard input reaches EOF (the parent closed it or died);
    answers the parent's liveness questions (what it reads there) on ``alive_fd``, if given
    (:mod:`qpsmtpd_tx.worker_liveness`)."""

    def __init__(self, fd=0, alive_fd=None):
        self.fd = fd
        self.alive_fd = alive_fd

    def fileno(self):
        return self.fd

    def doRead(self):
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            data = b""
        if not data:
            reactor.removeReader(self)
            stop_reactor()   # unless the parent's SIGTERM came first
        elif self.alive_fd is not None:
            worker_liveness.answer(self.alive_fd)

    def connectionLost(self, reason):
        pass

    def logPrefix(self):
        return "parent-watch"


def _shut_down(server, ports):
    """SIGTERM (or the parent gone): stop listening, drain the sessions, stop the plugins."""
    for port in ports:
        port.stopListening()
    return server.shut_down()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="qpsmtpd_tx.worker")
    parser.add_argument("--config", default=None)
    parser.add_argument("--fd", action="append", default=[], metavar="FD:FAMILY",
                        help="an inherited listening socket and its address family number")
    parser.add_argument("--tls-fd", action="append", default=[], metavar="FD:FAMILY",
                        help="an inherited SMTPS listening socket (TLS at connect)")
    parser.add_argument("--proxy-fd", action="append", default=[], metavar="FD:FAMILY",
                        help="an inherited listening socket of a --listen-proxy endpoint")
    parser.add_argument("--proxy-tls-fd", action="append", default=[], metavar="FD:FAMILY",
                        help="an inherited listening socket of a --listen-proxy-tls endpoint")
    parser.add_argument("--worker", type=int, required=True, help="this worker's number")
    parser.add_argument("--alive-fd", type=int, default=None, metavar="FD",
                        help="a pipe to answer the parent's liveness questions on")
    parser.add_argument("--max-from-ip", type=int, default=5)
    parser.add_argument("--limit-connections", type=int, default=500)
    parser.add_argument("--no-rdns", action="store_true")
    parser.add_argument("--metrics", action="store_true",
                        help="count metrics into the parent's PROMETHEUS_MULTIPROC_DIR")
    return parser.parse_args(argv)


def main(argv=None):
    """Run one worker until its parent goes away."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # A SIGHUP before our handler is installed must not end the worker: the config it would
    # reload is read below anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # No time stamp: the parent puts these lines in its own log, with its own.
    observer = FileLogObserver(sys.stdout, lambda event: "[%s] %s\n" % (
        event.get("log_namespace", "-"), formatEvent(event)))
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    objects.set_connection_id_prefix("w%d." % args.worker)
    config = Config(config_dir=args.config, program_dir=program_dir())
    try:
        server = SMTPServer(config, max_conn_ip=args.max_from_ip, reverse_dns=not args.no_rdns,
                            max_connections=args.limit_connections)
    except StartupError as e:
        sys.stderr.write("qpsmtpd-tx worker %d: cannot start: %s\n" % (args.worker, e))
        return 1
    if (args.tls_fd or args.proxy_tls_fd) and server.chain.tls is None:
        sys.stderr.write("qpsmtpd-tx worker %d: cannot start: SMTPS needs the tls plugin\n"
                         % args.worker)
        return 1
    if args.metrics:
        from qpsmtpd_tx import prometheus
        server.use_metrics(prometheus.in_multiprocess_dir(os.environ[prometheus.MULTIPROC_ENV]))
    ports = []
    for specs, factory in ((args.fd, SMTPFactory(server)), (args.tls_fd, smtps_factory(server)),
                           (args.proxy_fd, proxy_factory(server)),
                           (args.proxy_tls_fd, proxy_tls_factory(server))):
        for spec in specs:
            fd, family = (int(x) for x in spec.split(":"))
            ports.append(reactor.adoptStreamPort(fd, socket.AddressFamily(family), factory))
            os.close(fd)  # adoptStreamPort keeps its own duplicate
    if args.alive_fd is not None:
        os.set_blocking(args.alive_fd, False)     # a full pipe must not stop the reactor
    reactor.addReader(_ParentWatch(alive_fd=args.alive_fd))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's Ctrl-C reaches us via the pipe
    chain_signal(signal.SIGHUP, server.reload)
    reactor.addSystemEventTrigger("before", "shutdown", _shut_down, server, ports)
    Logger(namespace="qpsmtpd_tx.worker").info("serving")
    heap.freeze_started()
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
