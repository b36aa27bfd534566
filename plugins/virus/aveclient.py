"""virus/aveclient — scan each message with Kaspersky's aveclient (Kaspersky 5.x aveserver).

At data_post the message is written to a file in the spool directory and this is run on it,
asynchronously and without a shell (qpsmtpd 0.94's command line)::

    <avclient_bin> -p <avdaemon_sock> -s <file>

aveclient's exit status (``man aveclient``): 0 clean; 2 unknown viral code, 3 suspicious,
4 infected, 6 encrypted or password protected, 8 corrupted file — all five count as a virus
(qpsmtpd's reading), described by the output's lines after the first; any other status
(1 cannot connect to aveserver, 5, 7, 9…) is a scanner error.

Arguments: ``key value`` pairs, all optional:
  ``avclient_bin PATH``    the program (default ``/opt/kav/bin/aveclient``; qpsmtpd's path
                           rule: absolute, ``A-Z a-z 0-9 / - _ .``, else start-up fails). A
                           missing program is a start-up warning.
  ``avdaemon_sock PATH``   aveserver's socket (default ``/var/run/aveserver``).
  ``blockonerror 0|1``     ``1``: a scanner error refuses the message temporarily (below);
                           ``0`` (default): it is accepted unscanned (logged).
  ``action reject|tag``    what to do with a virus (default ``reject``; not in 0.94, which
                           always refuses); the per-recipient setting ``virus_action``.
  ``timeout SECONDS``      aveclient is killed after this long (default 120; not in 0.94);
                           that is a scanner error.
  ``loglevel LEVEL``       per-plugin log level.

Per-recipient setting: ``virus_action`` (``reject``/``tag``; strictest ``reject``). With
``recipient_policy split`` (the default) the message is scanned once; a virus is refused
for the ``reject`` recipients only (their copy quarantined, see README "Per-recipient
policy") and the ``tag`` recipients' copy gets the tag headers below.
Config files: ``me``. Notes: transaction note ``virus`` = the description.

Headers (appended): clean → ``X-Virus-Checked: Checked by Kaspersky on <me>``; a virus with
``virus_action`` tag → ``X-Virus-Found: Yes``, ``X-Virus-Details: <description>``.

Replies:
  virus, ``virus_action`` reject  ``552 Virus found: REPORT: <output lines 2…, joined by ", ">``
  scanner error, ``blockonerror 1``
                  ``452 Unable to scan for virus, please contact admin of <me>, if you feel
                  this is an error!``
  otherwise       none (DECLINED)

Differences from qpsmtpd 0.94: asynchronous, with a time limit; ``blockonerror`` answers
452 (0.94: a permanent 552 for a temporary problem) and applies to a crashed or timed-out
aveclient too (0.94 accepted those); an accepted unscanned message gets no
``X-Virus-Checked`` (0.94 added it after errors too); an odd argument list stops start-up.
"""

from qpsmtpd_tx.codes import DECLINED, DENYSOFT, LOGINFO, LOGWARN
from qpsmtpd_tx.plugin_args import boolean
from qpsmtpd_tx.scanner import ProgramScanner, program_path, virus_setting

VIRUS_CODES = (2, 3, 4, 6, 8)


class AveClient(ProgramScanner):
    """Run Kaspersky's aveclient on each message."""

    recipient_settings = (virus_setting("reject"),)

    def init(self, args):
        arguments = self.scanner_arguments(args, ("avclient_bin", "avdaemon_sock", "blockonerror"),
                                           {"avclient_bin": "/opt/kav/bin/aveclient",
                                            "avdaemon_sock": "/var/run/aveserver",
                                            "blockonerror": "0"})
        self.program = program_path("avclient_bin", arguments["avclient_bin"])
        self.socket = arguments["avdaemon_sock"]
        self.block_on_error = boolean("blockonerror", arguments["blockonerror"])
        self.missing_consequence = ("messages get 452 until it is" if self.block_on_error
                                    else "messages are accepted unscanned until it is")
        self.warn_if_missing()

    def command(self, path):
        return [self.program, "-p", self.socket, "-s", path]

    def verdict(self, transaction, result):
        if result.exit_code in VIRUS_CODES:
            description = "REPORT: " + ", ".join(result.lines[1:])
            self.log(LOGWARN, "Virus found! (%s)" % description, transaction)
            return self.infected(transaction, description, "Virus found: %s" % description,
                                 [("X-Virus-Found", "Yes"), ("X-Virus-Details", description)])
        if result.exit_code:
            return self.failed(transaction, "aveclient exited %d: %s" % (
                result.exit_code, " / ".join(result.lines)))
        self.log(LOGINFO, "aveclient results: clean", transaction)
        self.add_headers(transaction, [("X-Virus-Checked",
                                        "Checked by Kaspersky on %s" % self.server.me)])
        return DECLINED

    def failure_reply(self, transaction):
        if self.block_on_error:
            return DENYSOFT, ("Unable to scan for virus, please contact admin of %s, if you "
                              "feel this is an error!" % self.server.me)
        return super().failure_reply(transaction)
