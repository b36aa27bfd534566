"""virus/hbedv — scan each message with H+BEDV's (Avira's) command-line scanner ``antivir``.

At data_post the message is written to a file in the spool directory and this is run on it,
asynchronously and without a shell (qpsmtpd 0.94's command line)::

    <hbedvscanner> --archive-max-recursion=50 --alltypes -z -noboot -nombr -rs <file>

Output lines ``ALERT: [<name> <kind>] …`` name what was found (each name once, in order,
joined by ``, `` and cut at 60 characters). Exit status 0 is clean, 1 or 3 found; 200
(out of memory), 211 (self check failed), 214 (no licence key) and any other are logged.

Arguments: ``key value`` pairs, all optional:
  ``hbedvscanner PATH``  the program (default ``/usr/bin/antivir``; qpsmtpd's path rule:
                         absolute, ``A-Z a-z 0-9 / - _ .``, else start-up fails). A missing
                         program is a start-up warning; messages are then accepted
                         unscanned (logged), as in 0.94.
  ``action reject|tag``  (not in 0.94) ``tag`` never refuses; default ``reject``: refuse as
                         ``hbedv_deny`` says. The per-recipient setting ``virus_action``.
  ``timeout SECONDS``    the scanner is killed after this long (default 120; not in 0.94);
                         the message is then accepted unscanned (logged).
  ``loglevel LEVEL``     per-plugin log level.

Config files:
  ``hbedv_deny``   regular expressions, one per line, matched against each name found (whole
                   name, case-insensitive): a match refuses the message. Empty or missing:
                   every virus is refused. A pattern Python cannot compile stops start-up
                   (later: the previous list stays, logged), naming file and line.
  ``me``

Headers (at the top, whenever the scanner ran): ``X-H+BEDV-Virus-Checked: Checked``; when
something was found also ``X-H+BEDV-Virus-Details: <names>`` and ``X-H+BEDV-Virus-Found: Yes``.
Per-recipient setting: ``virus_action`` (``reject``/``tag``; strictest ``reject``). With
``recipient_policy split`` (the default) the message is scanned once; a denied virus is
refused for the ``reject`` recipients only (their copy quarantined, see README
"Per-recipient policy") and goes to the ``tag`` recipients with the fields above (hbedv has
no tag of its own: every copy gets them).
Notes: transaction note ``virus`` = the names.

Replies:
  found, matched by ``hbedv_deny``, ``virus_action`` reject  ``552 Virus found: <names>``
  otherwise                                                  none (DECLINED)

Differences from qpsmtpd 0.94: asynchronous, with a time limit; a program that cannot be
run, is killed or times out adds no ``X-H+BEDV-Virus-Checked`` (0.94 added it); patterns
are Python regular expressions; several names are listed in the scanner's order (0.94: in
Perl's hash order, which varies); an odd argument list or an unknown argument stops start-up.
"""

import re

from qpsmtpd_tx.codes import DECLINED, LOGWARN
from qpsmtpd_tx.patterns import compile_config_pattern
from qpsmtpd_tx.scanner import ProgramScanner, program_path, virus_setting

_ALERT = re.compile(r"^ALERT: \[([^\]]+)\s+(\w+)?\]")
EXIT_TEXTS = {
    200: "Program aborted, not enough memory available",
    211: "Program aborted, because the self check failed",
    214: "License key not found",
}


def found_names(lines):
    """The names in the ``ALERT: [<name> <kind>]`` lines, each once, in order."""
    names = []
    for line in lines:
        match = _ALERT.match(line)
        if match and match.group(1) not in names:
            names.append(match.group(1))
    return names


class HBEDV(ProgramScanner):
    """Run H+BEDV's antivir on each message; refuse what hbedv_deny names."""

    recipient_settings = (virus_setting("reject"),)

    def init(self, args):
        arguments = self.scanner_arguments(args, ("hbedvscanner",),
                                           {"hbedvscanner": "/usr/bin/antivir"})
        self.program = program_path("hbedvscanner", arguments["hbedvscanner"])
        self.deny_patterns()
        self.warn_if_missing()

    def deny_patterns(self, transaction=None):
        """The compiled ``hbedv_deny`` patterns (re-read when the config changes)."""
        def parse(lines):
            warn = lambda message: self.log(LOGWARN, message)  # noqa: E731
            return [compile_config_pattern(line.text, line, warn) for line in lines]
        return self.parsed_config("hbedv_deny", parse, transaction)

    def command(self, path):
        return [self.program, "--archive-max-recursion=50", "--alltypes", "-z", "-noboot",
                "-nombr", "-rs", path]

    def verdict(self, transaction, result):
        names = found_names(result.lines)
        found = ", ".join(names)[:60]
        code = result.exit_code
        if code in (1, 3):
            self.log(LOGWARN, "Virus(es) found: %s" % found, transaction)
            self.add_headers(transaction, [("X-H+BEDV-Virus-Details", found),
                                           ("X-H+BEDV-Virus-Found", "Yes")], prepend=True)
        elif code:
            self.log(LOGWARN, EXIT_TEXTS.get(code, "Error: %d, look for exit codes in the "
                                             "output of '%s --help' for more info"
                                             % (code, self.program)), transaction)
        self.add_headers(transaction, [("X-H+BEDV-Virus-Checked", "Checked")], prepend=True)
        if not code or not names:
            return DECLINED
        patterns = self.deny_patterns(transaction)
        denied = [n for n in names if not patterns or any(p.fullmatch(n) for p in patterns)]
        if not denied:
            self.log(LOGWARN, "not in hbedv_deny: %s" % found, transaction)
            return DECLINED
        return self.infected(transaction, found, "Virus found: %s" % found, [])
