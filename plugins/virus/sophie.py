"""virus/sophie — scan multipart messages with the Sophie daemon (Sophos SAVI) over its socket.

At data_post a multipart message (a ``Content-Type: multipart/…`` with a boundary) of at most
``max_size`` kilobytes is written to a file in the spool directory; its path and a newline go
to Sophie's unix socket, and Sophie's answer (at most 256 bytes, up to a newline or the end
of the connection) says: ``1`` or ``1:<names>`` infected, ``0`` clean, ``-1:<why>`` an error.
Sophie reads the file itself: it must be able to read the spool directory (run it as the
same user, or share a group and make ``spool_dir`` group-readable — the file then gets the
directory's group permissions; ``spool_dir`` must be an absolute path).

Arguments: ``key value`` pairs, all optional:
  ``sophie_socket PATH``  Sophie's socket (default ``/var/run/sophie``). A missing socket is
                         a start-up warning; messages are then accepted unscanned (logged).
  ``deny_viruses yes|no``  ``yes`` (default) refuses a virus; ``no`` accepts it with
                         headers. Same as ``action reject|tag``.
  ``max_size KB``        bigger messages are not scanned (default 128).
  ``timeout SECONDS``    for connecting and for Sophie's answer (default 120; not in 0.94);
                         the message is then accepted unscanned (logged).
  ``loglevel LEVEL``     per-plugin log level.

Per-recipient setting: ``virus_action`` (``reject``/``tag``; strictest ``reject``). With
``recipient_policy split`` (the default) the message is scanned once; a virus is refused
for the ``reject`` recipients only (their copy quarantined, see README "Per-recipient
policy") and the ``tag`` recipients' copy gets the tag headers below.
Config files: ``me``. Notes: transaction note ``virus`` = the names.

Headers (appended): clean → ``X-Virus-Checked: Checked by SOPHIE on <me>``; a virus tagged →
``X-Virus-Found: Yes`` and ``X-Virus-Details: <names>``.

Replies:
  virus, ``virus_action`` reject  ``552 Virus Found: <name>``, or ``552 Viruses Found:
                                  <names>`` when the names hold a comma (qpsmtpd's texts)
  otherwise                       none (DECLINED)

Differences from qpsmtpd 0.94: the socket is used asynchronously, with a time limit; a
socket that cannot be reached is logged and the message accepted unscanned (0.94 died in
the plugin, with the same result); Sophie's error answer ``-1`` is a scanner error (0.94
marked such a message ``X-Virus-Checked``).
"""

import os
import re

from twisted.internet import defer, reactor
from twisted.internet.endpoints import connectProtocol
from twisted.internet.protocol import Protocol

from qpsmtpd_tx.codes import DECLINED, LOGINFO
from qpsmtpd_tx.endpoints import describe_failure, unix_socket
from qpsmtpd_tx.plugin_args import positive
from qpsmtpd_tx.scanner import ProgramScanner, ScanResult, virus_setting

MAX_ANSWER = 256
_INFECTED = re.compile(r"^1:?(.*)$")


class _SophieRequest(Protocol):
    """Send one path; ``done`` fires with the answer (up to a newline, the end of the
    connection, or MAX_ANSWER bytes)."""

    def __init__(self, path):
        self.path = path
        self.answer = b""
        self.done = defer.Deferred(lambda _: self.transport and self.transport.abortConnection())

    def connectionMade(self):
        self.transport.write(self.path.encode("utf-8", "surrogateescape") + b"\n")

    def dataReceived(self, data):
        self.answer = (self.answer + data)[:MAX_ANSWER]
        if b"\n" in self.answer or len(self.answer) >= MAX_ANSWER:
            self._finish()
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self._finish()

    def _finish(self):
        if not self.done.called:
            self.done.callback(self.answer.split(b"\n", 1)[0].decode("utf-8", "replace").strip())


class Sophie(ProgramScanner):
    """Ask the Sophie daemon about multipart messages."""

    recipient_settings = (virus_setting("reject"),)
    multipart_only = True

    def init(self, args):
        arguments = self.scanner_arguments(args, ("sophie_socket", "deny_viruses", "max_size"),
                                           {"sophie_socket": "/var/run/sophie",
                                            "max_size": "128"})
        self.address = unix_socket("sophie_socket", arguments["sophie_socket"])
        self.max_size = positive("max_size", arguments["max_size"], int) * 1024
        self.warn_if_missing(self.address.path, os.F_OK, "a socket")

    async def scan(self, transaction, path):
        request = _SophieRequest(path)
        try:
            await connectProtocol(self.address.endpoint(self.timeout), request)
            asking = request.done
            asking.addTimeout(self.timeout, reactor)
            answer = await asking
        except Exception as e:
            why = describe_failure(e)
            if why == "timed out":
                why = "Sophie at %s did not answer within %g seconds" % (self.address,
                                                                          self.timeout)
            else:
                why = "cannot ask Sophie at %s: %s" % (self.address, why)
            return ScanResult(failure=why)
        if not answer or answer.startswith("-"):
            return ScanResult(failure="Sophie answered %r" % answer)
        return ScanResult(exit_code=0, output=answer)

    def verdict(self, transaction, result):
        match = _INFECTED.match(result.output)
        if match:
            names = match.group(1)
            return self.infected(transaction, names, "Virus%sFound: %s" % (
                "es " if "," in names else " ", names),
                [("X-Virus-Found", "Yes"), ("X-Virus-Details", names)])
        self.log(LOGINFO, "pass, clean", transaction)
        self.add_headers(transaction, [("X-Virus-Checked",
                                        "Checked by SOPHIE on %s" % self.server.me)])
        return DECLINED
