"""virus/clamav — scan each message with ClamAV's command-line scanner (clamscan or clamdscan).

At data_post the message (header, empty line, body, LF line endings) is written to a file in
the spool directory and the scanner is run on it, asynchronously and without a shell::

    <clamscan_path> --stdout [-i --max-recursion=50] [--config-file=<clamd_conf>]
                    [--database=<database>] --no-summary <file>

Exit status 0 is clean, 1 infected (the names are read from its ``<file>: <name> FOUND``
lines), anything else an error. ``clamdscan`` hands the file's path to clamd, which must then
be able to read the spool directory (qpsmtpd's note: run clamd as the same user, or share a
group and make ``spool_dir`` group-readable — the file then gets the directory's group
permissions); ``clamscan`` loads the signatures itself, for every message (slow), and is
what works without a clamd. ``virus/clamdscan`` streams the message to clamd instead.

Arguments: ``name=value`` words, all optional; a first word that is an absolute path (without
``=``) is taken as ``clamscan_path``, as qpsmtpd:
  ``clamscan_path=PATH``  the scanner (default ``/usr/bin/clamscan``); qpsmtpd's path rule
                          (absolute, ``A-Z a-z 0-9 / - _ .``). A missing program is a start-up
                          warning; messages then get the error reply below.
  ``clamd_conf=PATH``     passed as ``--config-file=PATH`` (default ``/etc/clamd.conf``;
                          Debian's is ``/etc/clamav/clamd.conf``); not passed to a program
                          named ``clamscan``, which has no such option.
  ``database=PATH``       passed as ``--database=PATH`` (signature file or directory; not in
                          qpsmtpd 0.94).
  ``action=add-header|reject``  what to do with an infected message (default ``add-header``);
                          the per-recipient setting ``virus_action`` (``tag`` = ``add-header``).
  ``max_size=BYTES``      bigger messages are not scanned (default 524288).
  ``tmp_dir=PATH``        directory of the message file (default: ``spool_dir``); it must
                          exist at start-up.
  ``back_compat``         adds ``-i --max-recursion=50`` (for ClamAV before 0.80).
  ``declined_on_fail``    a scanner error accepts the message (logged) instead of deferring.
  ``timeout=SECONDS``     the scanner is killed after this long (default 120; not in 0.94);
                          that is a scanner error.
  ``loglevel LEVEL``      per-plugin log level (the one ``key value`` pair).

Per-recipient setting (recipient note, see README "Per-recipient policy"):
  ``virus_action``        ``reject`` or ``tag``; strictest = ``reject``. With config
                          ``recipient_policy split`` (default) the message is scanned once;
                          a virus is refused for the ``reject`` recipients only (their copy
                          quarantined, see README "Per-recipient policy") and the copy of
                          the ``tag`` recipients gets the ``X-Virus-Found`` headers below.

Config files: ``me`` (in ``X-Virus-Checked``).

Headers (appended, as qpsmtpd): clean → ``X-Virus-Checked: Checked by ClamAV on <me>``;
infected and tagged → ``X-Virus-Found: Yes`` and ``X-Virus-Details: <names>``.
Notes: transaction note ``virus`` is the names of what was found.

Replies:
  infected, ``virus_action`` reject   ``552 Virus Found: <names>`` (qpsmtpd's text)
  scanner error (exit status other than 0 or 1, killed, timed out, cannot be run)
                                      DENYSOFT without a text (``452 Message denied
                                      temporarily``), or DECLINED with ``declined_on_fail``
  otherwise                           none (DECLINED)

Differences from qpsmtpd 0.94: the scanner runs asynchronously, with a time limit; 0.94 has
no default scanner path (every message was deferred) and passes ``--config-file`` to
clamscan too, which current clamscan refuses (every message deferred again); an unknown
argument or a missing ``tmp_dir`` stops start-up (0.94 logs it and runs half-configured);
several names found are joined with ``, ``; the action can be set per recipient.
"""

import os

from qpsmtpd_tx.codes import DECLINED, DENYSOFT, LOGINFO, LOGWARN
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.plugin_args import positive
from qpsmtpd_tx.scanner import ProgramScanner, program_path, virus_setting

DEFAULT_PROGRAM = "/usr/bin/clamscan"
DEFAULT_CONF = "/etc/clamd.conf"
DEFAULT_MAX_SIZE = 512 * 1024
BACK_COMPAT = ["-i", "--max-recursion=50"]
_VALUED = ("clamscan_path", "clamd_conf", "database", "action", "max_size", "tmp_dir", "timeout")
_FLAGS = ("back_compat", "declined_on_fail")
_ACTIONS = {"add-header": "tag", "reject": "reject"}


def found_names(lines):
    """The virus names in clamscan's ``<file>: <name> FOUND`` lines."""
    return [line[:-len(" FOUND")].rsplit(" ", 1)[-1] for line in lines
            if line.endswith(" FOUND") and " " in line[:-len(" FOUND")]]


class ClamAV(ProgramScanner):
    """Run clamscan/clamdscan on each message; tag or refuse infected ones."""

    recipient_settings = (virus_setting("tag"),)

    def init(self, args):
        args = list(args)
        options = {}
        if args and args[0].startswith("/") and "=" not in args[0]:
            options["clamscan_path"] = args.pop(0)
        while args:
            word = args.pop(0)
            if word == "loglevel" and args:
                self.set_loglevel(args.pop(0))
                continue
            name, equals, value = word.partition("=")
            if name in _FLAGS and not equals:
                options[name] = True
            elif name in _VALUED and equals:
                options[name] = value
            else:
                raise PluginError("unrecognized argument %r (known: %s)" % (
                    word, ", ".join(n + "=…" for n in _VALUED) + ", " + ", ".join(_FLAGS)))
        action = options.get("action", "add-header")
        if action not in _ACTIONS:
            raise PluginError("action must be add-header or reject, got %r" % action)
        self.arguments = {"action": _ACTIONS[action]}
        self.program = program_path("clamscan_path", options.get("clamscan_path", DEFAULT_PROGRAM))
        self.clamd_conf = program_path("clamd_conf", options.get("clamd_conf", DEFAULT_CONF))
        self.database = options.get("database")
        self.max_size = positive("max_size", options.get("max_size", str(DEFAULT_MAX_SIZE)), int)
        self.timeout = self.timeout_argument(options)
        self.back_compat = bool(options.get("back_compat"))
        self.declined_on_fail = bool(options.get("declined_on_fail"))
        self.spool = options.get("tmp_dir")
        if self.spool is not None and not os.path.isdir(self.spool):
            raise PluginError("tmp_dir %s does not exist" % self.spool)
        self.missing_consequence = ("messages are accepted unscanned until it is"
                                    if self.declined_on_fail else
                                    "messages get 452 until it is")
        self.warn_if_missing()

    def command(self, path):
        argv = [self.program, "--stdout"] + (BACK_COMPAT if self.back_compat else [])
        if os.path.basename(self.program) != "clamscan":
            argv.append("--config-file=" + self.clamd_conf)
        if self.database:
            argv.append("--database=" + self.database)
        return argv + ["--no-summary", path]

    def verdict(self, transaction, result):
        self.log(LOGINFO, "clamscan results: %s" % " / ".join(result.lines), transaction)
        if result.exit_code == 1:
            names = ", ".join(found_names(result.lines)) or result.output.strip()
            return self.infected(transaction, names, "Virus Found: %s" % names,
                                 [("X-Virus-Found", "Yes"), ("X-Virus-Details", names)])
        if result.exit_code:
            return self.failed(transaction, "ClamAV error: %s exited %d" % (
                self.program, result.exit_code))
        self.add_headers(transaction, [("X-Virus-Checked",
                                        "Checked by ClamAV on %s" % self.server.me)])
        return DECLINED

    def failure_reply(self, transaction):
        if self.declined_on_fail:
            self.log(LOGWARN, "declined_on_fail: accepting the message unscanned", transaction)
            return DECLINED
        return DENYSOFT
