"""``twistd qpsmtpd-tx``: command-line options and the service they build."""

import sys

from twisted.application import service, strports
from twisted.internet import reactor
from twisted.python import usage

from qpsmtpd_tx.config import Config
from qpsmtpd_tx.paths import program_dir
from qpsmtpd_tx.protocol import SMTPFactory
from qpsmtpd_tx.server import SMTPServer, StartupError

DEFAULT_LISTEN = "tcp:2525:interface=127.0.0.1"


class Options(usage.Options):
    """Options of ``twistd qpsmtpd-tx``."""

    synopsis = "[options]"
    longdesc = ("An SMTP server that reads a qpsmtpd config directory and runs its plugins. "
                "Config lookup per file: --config (or $QPSMTPD_CONFIG), then config/ beside "
                "the program, then $QMAIL/control.")
    optParameters = [
        ["config", "c", None, "qpsmtpd config directory (default: $QPSMTPD_CONFIG)"],
        ["max-from-ip", "m", "5", "per-IP connection limit passed to pre-connection hooks"],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["listen"] = []

    def opt_listen(self, endpoint):
        """Listen on a Twisted endpoint (repeatable), e.g. tcp:25, tcp6:25, systemd:domain=INET:index=0"""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self):
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        try:
            self["max-from-ip"] = int(self["max-from-ip"])
        except ValueError:
            raise usage.UsageError("--max-from-ip takes a number")


def build_server(options):
    """The SMTPServer for these options; a start-up error is printed and exits with status 1."""
    config = Config(config_dir=options["config"], program_dir=program_dir())
    try:
        return SMTPServer(config, max_conn_ip=options["max-from-ip"])
    except StartupError as e:
        sys.stderr.write("qpsmtpd-tx: cannot start: %s\n" % (e,))
        sys.exit(1)


def makeService(options):
    """A MultiService listening on every --listen endpoint."""
    server = build_server(options)
    top = service.MultiService()
    factory = SMTPFactory(server)
    for endpoint in options["listen"]:
        strports.service(endpoint, factory, reactor=reactor).setServiceParent(top)
    return top
