"""virus/kavscanner — scan each message with Kaspersky's command-line ``kavscanner`` (4.x).

At data_post the message is written to a file in the spool directory and this is run on it,
asynchronously and without a shell (qpsmtpd 0.94's command line)::

    <kavscanner_bin> -Y -P -B -MP -MD -* <file>

Exit status 0 is clean; 2, 3, 4 or 8 mean something was found, read from the output's
``… infected: <name>`` and ``… suspicion: <name>`` lines; any other status is a scanner error.
As in 0.94, what is found is tagged, not refused (unless ``virus_action`` says ``reject``).

Arguments: ``key value`` pairs, all optional:
  ``kavscanner_bin PATH``  the program (default ``/opt/AVP/kavscanner``; qpsmtpd's path
                         rule: absolute, ``A-Z a-z 0-9 / - _ .``, else start-up fails). A
                         missing program is a start-up warning; messages are then accepted
                         unscanned (logged), as in 0.94.
  ``bcc_virusadmin ADDRS``  addresses (separated by commas) added as recipients of a message
                         found infected and accepted.
  ``action tag|reject``  (not in 0.94) default ``tag``; ``reject`` refuses what is found.
                         The per-recipient setting ``virus_action``.
  ``timeout SECONDS``    kavscanner is killed after this long (default 120; not in 0.94);
                         the message is then accepted unscanned (logged).
  ``loglevel LEVEL``     per-plugin log level.

Config files: ``me`` (``kav_deny`` is documented by 0.94 but disabled in its code; not read).

Headers (appended): ``X-Virus-Checked: Checked by <me>`` when scanned; when found, before it,
``X-Virus-Found: Yes`` and ``X-Virus-Details: infected by: <names>; suspicions: <names>``
(cut at 60 characters). Notes: transaction notes ``virus`` (that description) and
``virus_flag`` (``Yes``).

Per-recipient setting: ``virus_action`` (strictest ``reject``). With ``recipient_policy
split`` (the default) the message is scanned once; what is found is refused for the
``reject`` recipients only (their copy quarantined, see README "Per-recipient policy") and
the ``tag`` recipients' copy gets the headers above; ``bcc_virusadmin`` addresses are added
when some recipient takes it tagged, and get that copy.

Replies:
  found, ``virus_action`` reject  ``552 Virus found: <description>``
  otherwise                       none (DECLINED)

Differences from qpsmtpd 0.94: asynchronous, with a time limit; without ``kavscanner_bin``
0.94 stopped the server (its default path was unreachable); an odd argument list stops
start-up (0.94 ignored all arguments then); a scanner error adds no ``X-Virus-Checked``.
"""

import re

from qpsmtpd_tx.address import Address
from qpsmtpd_tx.codes import DECLINED, LOGINFO, LOGWARN
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.scanner import ProgramScanner, program_path, virus_setting

FOUND_CODES = (2, 3, 4, 8)
_INFECTED = re.compile(r"^.* infected: (.*)$")
_SUSPICION = re.compile(r"^\s*.* suspicion: (.*)$")


def description(lines):
    """qpsmtpd's ``infected by: …; suspicions: …`` for kavscanner's output, cut at 60."""
    infected, suspicious = [], []
    for line in lines:
        match = _INFECTED.match(line)
        if match:
            infected.append(match.group(1))
            continue
        match = _SUSPICION.match(line)
        if match:
            suspicious.append(match.group(1))
    return ("infected by: %s; suspicions: %s" % (", ".join(infected), ", ".join(suspicious)))[:60]


class KavScanner(ProgramScanner):
    """Run Kaspersky's kavscanner on each message; tag (or refuse) what it finds."""

    recipient_settings = (virus_setting("tag"),)

    def init(self, args):
        arguments = self.scanner_arguments(args, ("kavscanner_bin", "bcc_virusadmin"),
                                           {"kavscanner_bin": "/opt/AVP/kavscanner"})
        self.program = program_path("kavscanner_bin", arguments["kavscanner_bin"])
        self.bcc = []
        for word in re.split(r"[\s,]+", arguments.get("bcc_virusadmin", "")):
            if word:
                address = Address.parse(word)
                if address is None or address.is_null:
                    raise PluginError("bcc_virusadmin: %r is not an address" % word)
                self.bcc.append(address)
        self.warn_if_missing()

    def command(self, path):
        return [self.program, "-Y", "-P", "-B", "-MP", "-MD", "-*", path]

    def verdict(self, transaction, result):
        code = result.exit_code
        if code and code not in FOUND_CODES:
            return self.failed(transaction, "corrupt or unknown Kaspersky scanner/resource "
                               "problems - exit status %d" % code)
        checked = [("X-Virus-Checked", "Checked by %s" % self.server.me)]
        if not code:
            self.log(LOGINFO, "kavscanner results: clean", transaction)
            self.add_headers(transaction, checked)
            return DECLINED
        found = description(result.lines)
        self.log(LOGWARN, "There be a virus! (%s)" % found, transaction)
        transaction.notes["virus_flag"] = "Yes"
        return self.infected(transaction, found, "Virus found: %s" % found,
                             [("X-Virus-Found", "Yes"), ("X-Virus-Details", found)] + checked)

    def tagged(self, transaction, recipients):
        """``bcc_virusadmin`` joins the recipients that take the infected message tagged."""
        for address in self.bcc:
            self.log(LOGINFO, "adding %s as a recipient" % address.format(), transaction)
            transaction.add_recipient(address)
        return list(recipients) + list(self.bcc)
