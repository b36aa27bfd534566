"""virus/bitdefender — scan multipart messages with BitDefender Linux Edition's ``bdc``.

At data_post a multipart message (a ``Content-Type: multipart/…`` with a boundary) of at
most ``max_size`` kilobytes is written to a file in the spool directory and this is run on
it, asynchronously and without a shell (qpsmtpd 0.94's command line)::

    <bitdefender_location> --mail --all --arc <file>

The first output line containing ``infected: <name>`` names the virus; the exit status is
not read (as 0.94).

Arguments: ``key value`` pairs, all optional:
  ``bitdefender_location PATH``  the program (default ``/opt/bdc/bdc``; qpsmtpd's path rule).
                         A missing program is a start-up warning; messages are then
                         accepted unscanned (logged), as in 0.94.
  ``deny_viruses yes|no``  ``yes`` (default) refuses a virus; ``no`` accepts it with
                         headers (below). Same as ``action reject|tag``.
  ``max_size KB``        bigger messages are not scanned (default 128).
  ``timeout SECONDS``    bdc is killed after this long (default 120; not in 0.94); the
                         message is then accepted unscanned (logged).
  ``loglevel LEVEL``     per-plugin log level.

Per-recipient setting: ``virus_action`` (``reject``/``tag``; strictest ``reject``). With
``recipient_policy split`` (the default) the message is scanned once; a virus is refused
for the ``reject`` recipients only (their copy quarantined, see README "Per-recipient
policy") and the ``tag`` recipients' copy gets the headers of ``deny_viruses no``.
Config files: none. Notes: transaction note ``virus`` = the name.

Replies:
  virus, ``virus_action`` reject  ``552 Virus Found: <name>`` (qpsmtpd's text)
  otherwise                       none (DECLINED)

Differences from qpsmtpd 0.94: asynchronous, with a time limit; with ``deny_viruses no`` an
infected message gets ``X-Virus-Found: Yes`` and ``X-Virus-Details: <name>`` (0.94 added
nothing); an odd argument list or an unknown argument stops start-up.
"""

import re

from qpsmtpd_tx.codes import DECLINED, LOGINFO
from qpsmtpd_tx.plugin_args import positive
from qpsmtpd_tx.scanner import ProgramScanner, program_path, virus_setting

_INFECTED = re.compile(r"infected: (.+)$")


class BitDefender(ProgramScanner):
    """Run BitDefender's bdc on multipart messages."""

    recipient_settings = (virus_setting("reject"),)
    multipart_only = True

    def init(self, args):
        arguments = self.scanner_arguments(
            args, ("bitdefender_location", "deny_viruses", "max_size"),
            {"bitdefender_location": "/opt/bdc/bdc", "max_size": "128"})
        self.program = program_path("bitdefender_location", arguments["bitdefender_location"])
        self.max_size = positive("max_size", arguments["max_size"], int) * 1024
        self.warn_if_missing()

    def command(self, path):
        return [self.program, "--mail", "--all", "--arc", path]

    def verdict(self, transaction, result):
        for line in result.lines:
            match = _INFECTED.search(line)
            if match:
                name = match.group(1)
                return self.infected(transaction, name, "Virus Found: %s" % name,
                                     [("X-Virus-Found", "Yes"), ("X-Virus-Details", name)])
        self.log(LOGINFO, "pass, clean", transaction)
        return DECLINED
