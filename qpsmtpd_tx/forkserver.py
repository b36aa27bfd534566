"""``qpsmtpd-tx-forkserver`` (also ``qpsmtpd-tx forkserver``): qpsmtpd-forkserver's command line.

Takes the options of qpsmtpd 0.94's ``qpsmtpd-forkserver``, so that an init script or unit
file only changes the program path, and runs ``twistd qpsmtpd-tx`` with them:

  ``-l, --listen-address ADDR[:PORT]``  repeatable; ``[v6 address]`` in brackets; default ``[::]``
                                     (or ``0.0.0.0`` without IPv6) → one ``--listen`` each
  ``-p, --port P``                   repeatable, for every address without ``:PORT``; default 2525
  ``-c, --limit-connections N``      → ``--limit-connections N`` (default here 500: qpsmtpd's 15
                                     was sized for one process per connection)
  ``-m, --max-from-ip N``            → ``--max-from-ip N`` (default 5)
  ``-u, --user U``                   → twistd ``--uid U`` (and U's group); as qpsmtpd, the
                                     default is the current user, or ``smtpd`` when run as root
  ``--pid-file P``                   → twistd ``--pidfile P`` (default: none)
  ``-d, --detach``                   daemonize (twistd without ``-n``); the Twisted log then goes
                                     to syslog unless ``--logfile`` says otherwise
  ``-H, --no-rdns``                  → ``--no-rdns``

Our additions (long options only): ``--config DIR`` (else ``$QPSMTPD_CONFIG``, as qpsmtpd),
``--logfile FILE``, ``--workers N``, ``--metrics ENDPOINT``. The config directory is read as
by ``twistd qpsmtpd-tx``.
"""

import argparse
import os
import pwd
import re
import socket
import sys

from qpsmtpd_tx.startup import config_dir_problem

_ADDRESS = re.compile(r"(\[[^\]]*\]|[\w\-.]+)(?::(\d+))?")


class ForkserverUsageError(Exception):
    """The command line is wrong; the message says how."""


def build_parser(prog="qpsmtpd-tx-forkserver"):
    """The parser of qpsmtpd-forkserver's options (and ours)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Run qpsmtpd-tx with qpsmtpd-forkserver's options.")
    parser.add_argument("-l", "--listen-address", action="append", default=[], metavar="ADDR",
                        help="listen on ADDR or ADDR:PORT (repeatable; IPv6 in [brackets]); "
                             "default [::], or 0.0.0.0 without IPv6")
    parser.add_argument("-p", "--port", action="append", default=[], metavar="P",
                        help="port for every address without one (repeatable; default 2525)")
    parser.add_argument("-c", "--limit-connections", type=int, default=500, metavar="N",
                        help="concurrent connections; more get 421 (default 500)")
    parser.add_argument("-m", "--max-from-ip", type=int, default=5, metavar="N",
                        help="concurrent connections from one IP (default 5)")
    parser.add_argument("-u", "--user", metavar="U",
                        help="run as user U (default: the current user; smtpd when root)")
    parser.add_argument("--pid-file", metavar="P", help="write the server's PID to P")
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background")
    parser.add_argument("-H", "--no-rdns", action="store_true",
                        help="do not look up the client's host name")
    parser.add_argument("--config", metavar="DIR",
                        help="qpsmtpd config directory (default: $QPSMTPD_CONFIG)")
    parser.add_argument("--logfile", metavar="FILE",
                        help="Twisted's log (default: standard output, syslog with --detach)")
    parser.add_argument("--workers", type=int, metavar="N", help="processes (see README)")
    parser.add_argument("--metrics", metavar="ENDPOINT",
                        help="Prometheus metrics at /metrics on this Twisted endpoint, e.g. "
                             "tcp:9125:interface=127.0.0.1 (see README, Metrics)")
    return parser


def _default_address():
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
        return "[::]"
    except OSError:
        return "0.0.0.0"


def listen_endpoints(addresses, ports):
    """Twisted endpoint strings for qpsmtpd-forkserver's ``-l`` and ``-p`` values."""
    endpoints = []
    for address in addresses or [_default_address()]:
        match = _ADDRESS.fullmatch(address)
        if not match:
            raise ForkserverUsageError("--listen-address %r: expected ADDR, ADDR:PORT or [IPv6]"
                                       % address)
        host, port = match.groups()
        for each in [port] if port else (ports or ["2525"]):
            if not re.fullmatch(r"\d+", each) or not 0 < int(each) < 65536:
                raise ForkserverUsageError("--port %r: expected a port number" % each)
            if host.startswith("["):
                endpoints.append("tcp6:%s:interface=%s" % (each, host[1:-1].replace(":", r"\:")))
            else:
                endpoints.append("tcp:%s:interface=%s" % (each, host))
    return endpoints


def _user_option(user):
    """twistd's ``--uid`` for ``-u USER`` (none when we already are that user), as qpsmtpd."""
    if user is None:
        if os.getuid() != 0:
            return []
        user = "smtpd"
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ForkserverUsageError("unable to determine uid/gid for %s (no such user; -u USER "
                                   "names the user to run as)" % user)
    if entry.pw_uid == os.getuid() and os.getuid() != 0:
        return []
    return ["--uid", user]


def twistd_argv(args):
    """twistd's command line for parsed forkserver ``args``."""
    for name in ("limit_connections", "max_from_ip"):
        if getattr(args, name) < 0:
            raise ForkserverUsageError("--%s must be 0 or more" % name.replace("_", "-"))
    problem = config_dir_problem(args.config)
    if problem:
        raise ForkserverUsageError("--config: " + problem)
    argv = ["twistd"]
    if not args.detach:
        argv.append("--nodaemon")
    argv.append("--pidfile=%s" % (os.path.abspath(args.pid_file) if args.pid_file else ""))
    if args.logfile:
        argv.append("--logfile=%s" % args.logfile)
    elif args.detach:
        argv += ["--syslog", "--prefix=qpsmtpd-tx"]
    argv += _user_option(args.user)
    argv.append("qpsmtpd-tx")
    if args.config:
        argv += ["--config", os.path.abspath(args.config)]
    for endpoint in listen_endpoints(args.listen_address, args.port):
        argv += ["--listen", endpoint]
    argv += ["--limit-connections", str(args.limit_connections),
             "--max-from-ip", str(args.max_from_ip)]
    if args.workers is not None:
        argv += ["--workers", str(args.workers)]
    if args.metrics:
        argv += ["--metrics", args.metrics]
    if args.no_rdns:
        argv.append("--no-rdns")
    return argv


def main(argv=None, prog="qpsmtpd-tx-forkserver"):
    """Parse qpsmtpd-forkserver's options and run twistd with ours; returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        command = twistd_argv(args)
    except ForkserverUsageError as e:
        parser.print_usage(sys.stderr)
        sys.stderr.write("%s: %s\n" % (prog, e))
        return 2
    from twisted.scripts import twistd
    sys.argv = command
    twistd.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
