"""virus/uvscan — scan multipart messages with McAfee's command-line scanner ``uvscan``.

At data_post a multipart message (a ``Content-Type: multipart/…`` with a boundary) of at most
250,000 bytes is written to a file in the spool directory and this is run on it,
asynchronously and without a shell (qpsmtpd 0.94's command line)::

    <uvscan_location> --mime --unzip --secure --noboot <file>

The name is what follows ``Found `` on the first output line that has it. Exit status 0 is
clean; 2 (a DAT file's integrity check failed), 6 (general problem), 8 (no DAT file) and 15
(self-check failed) are scanner errors (logged, the message is accepted unscanned, as 0.94);
any other status (13 found, 12 cleaning failed, 19 cleaned…) means a virus.

Arguments: ``key value`` pairs, all optional:
  ``uvscan_location PATH``  the program (default ``/usr/local/bin/uvscan``; qpsmtpd's path
                         rule). A missing program is a start-up warning; messages are then
                         accepted unscanned (logged).
  ``deny_viruses yes|no``  ``yes`` (default, as 0.94's documentation says) refuses a virus;
                         ``no`` accepts it with headers. Same as ``action reject|tag``.
  ``timeout SECONDS``    uvscan is killed after this long (default 120; not in 0.94); the
                         message is then accepted unscanned (logged).
  ``loglevel LEVEL``     per-plugin log level.

Per-recipient setting: ``virus_action`` (``reject``/``tag``; strictest ``reject``). With
``recipient_policy split`` (the default) the message is scanned once; a virus is refused
for the ``reject`` recipients only (their copy quarantined, see README "Per-recipient
policy") and the ``tag`` recipients' copy gets the tag headers below. A password-protected zip
is refused for everyone, as in 0.94 (it is not a virus; no setting applies).
Config files: ``me``. Notes: transaction note ``virus`` = the name.

Headers (appended): clean → ``X-Virus-Checked: Checked by McAfee uvscan on <me>``; a virus
tagged → ``X-Virus-Found: Yes`` and ``X-Virus-Details: <name>``.

Replies:
  output mentions ``password-protected``   ``552 We do not accept password-protected zip files!``
  virus, ``virus_action`` reject           ``552 Virus Found: <name>`` (qpsmtpd's text)
  otherwise                                none (DECLINED)

Differences from qpsmtpd 0.94: asynchronous, with a time limit; 0.94's code left
``deny_viruses`` unset (tagging) although its documentation says ``yes``; here ``yes`` is the
default. A program that cannot be run was a virus for 0.94 (the shell's exit status 127),
every multipart message refused or tagged; here it is a scanner error.
"""

import re

from qpsmtpd_tx.codes import DECLINED, DENY, LOGERROR
from qpsmtpd_tx.scanner import ProgramScanner, program_path, virus_setting

MAX_SIZE = 250000
_FOUND = re.compile(r".*\W+Found (.*)\n")
ERROR_TEXTS = {
    2: "Integrity check for a DAT file failed.",
    6: "A general problem has occurred.",
    8: "The program could not find a DAT file.",
    15: "The program self-check failed",
}
VIRUS_TEXTS = {
    12: "The program tried to clean a file but failed.",
    13: "One or more virus(es) found",
    19: "Successfully cleaned the file",
}


class UVScan(ProgramScanner):
    """Run McAfee's uvscan on multipart messages."""

    recipient_settings = (virus_setting("reject"),)
    multipart_only = True
    max_size = MAX_SIZE

    def init(self, args):
        arguments = self.scanner_arguments(args, ("uvscan_location", "deny_viruses"),
                                           {"uvscan_location": "/usr/local/bin/uvscan"})
        self.program = program_path("uvscan_location", arguments["uvscan_location"])
        self.warn_if_missing()

    def command(self, path):
        return [self.program, "--mime", "--unzip", "--secure", "--noboot", path]

    def verdict(self, transaction, result):
        if "password-protected" in result.output:
            self.log(LOGERROR, "password-protected zip file", transaction)
            return DENY, "We do not accept password-protected zip files!"
        code = result.exit_code
        if code in ERROR_TEXTS:
            return self.failed(transaction, ERROR_TEXTS[code])
        if code:
            match = _FOUND.search(result.output if result.output.endswith("\n")
                                  else result.output + "\n")
            name = match.group(1) if match else ""
            self.log(LOGERROR, VIRUS_TEXTS.get(code, "exit status %d" % code), transaction)
            return self.infected(transaction, name, "Virus Found: %s" % name,
                                 [("X-Virus-Found", "Yes"), ("X-Virus-Details", name)])
        self.add_headers(transaction, [("X-Virus-Checked",
                                        "Checked by McAfee uvscan on %s" % self.server.me)])
        return DECLINED
