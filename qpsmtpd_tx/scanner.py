"""What the content filters that run a scanner program share (virus/clamav, the vendor virus
scanners, dspam): the message as a file, the program run with a time limit, the verdict
mapped to qpsmtpd's replies.

A filter derives from :class:`ProgramScanner` and says only what is its own: the command line
(``command``) and how to read the program's exit status and output (``verdict``). The base
class skips what its arguments say to skip (``max_size``, ``multipart_only``), writes the
message (header, empty line, body, LF line endings, as qpsmtpd's ``body_filename``) to a new
file in the spool directory from the server's thread pool, runs the program asynchronously
on it (never through a shell), and removes the file. A program that cannot be started, runs
out of time (it is killed) or dies from a signal is a scanner failure: logged, then
``failure_reply`` (skip or defer, per plugin, as qpsmtpd 0.94 does).

A virus found is decided per recipient (:func:`decide_virus`, also used by virus/clamdscan
and virus/klez_filter): the message is scanned once, then each group of recipients with the
same ``virus_action`` gets its answer — ``reject`` refuses it for them, ``tag`` puts the
filter's tag fields into their copy (README "Per-recipient policy").

A filter that asks a daemon instead of a program (virus/sophie) overrides ``scan``.
"""

import os
import re
import signal
import stat
import tempfile

from twisted.internet import defer, error, protocol

from qpsmtpd_tx.childprocess import spawn_with_timeout
from qpsmtpd_tx.codes import DECLINED, DENY, LOGERROR, LOGINFO, LOGNOTICE, LOGWARN
from qpsmtpd_tx.message import spool_file_prefix
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import boolean
from qpsmtpd_tx.policy import Setting
from qpsmtpd_tx.streaming import write_to_fd

#: qpsmtpd's rule for a scanner's path: absolute, of ``A-Z a-z 0-9 / - _ .`` only
_SAFE_PATH = re.compile(r"/[/\-_.a-zA-Z0-9]*\Z")
#: qpsmtpd's test for a multipart message (bitdefender, sophie, uvscan)
_MULTIPART = re.compile(r'\bmultipart/.*\bboundary="?([^"]+)', re.IGNORECASE)
#: at most this much of a scanner's output is kept
MAX_OUTPUT = 65536
#: seconds a scanner may run (the ``timeout`` argument's default)
DEFAULT_TIMEOUT = 120.0

ACTIONS = ("reject", "tag")


def virus_action(text):
    """A ``virus_action`` value: ``reject`` or ``tag``."""
    word = str(text).strip().lower()
    if word not in ACTIONS:
        raise ValueError("virus_action must be reject or tag, not %r" % (text,))
    return word


def strictest_action(values):
    """``reject`` if any recipient wants it, else ``tag``."""
    return "reject" if "reject" in values else "tag"


def action_argument(arguments):
    """Check the ``action`` in ``arguments`` (a dict of plugin arguments, changed in place):
    qpsmtpd's ``deny_viruses yes|no`` becomes ``action reject|tag``; PluginError if bad."""
    if "deny_viruses" in arguments:
        deny = boolean("deny_viruses", arguments.pop("deny_viruses"), "yes or no (1 or 0)")
        mapped = "reject" if deny else "tag"
        if arguments.get("action", mapped).lower() != mapped:
            raise PluginError("deny_viruses and action disagree")
        arguments["action"] = mapped
    if "action" in arguments:
        try:
            arguments["action"] = virus_action(arguments["action"])
        except ValueError as e:
            raise PluginError(str(e).replace("virus_action", "action"))


def program_path(name, path):
    """``path`` if it passes qpsmtpd's check for a scanner path, else PluginError."""
    if not _SAFE_PATH.match(path):
        raise PluginError("unexpected characters in %s %r (allowed: an absolute path of "
                          "A-Z a-z 0-9 / - _ .)" % (name, path))
    return path


def is_multipart(header):
    """True if the message's Content-Type is multipart with a boundary (qpsmtpd's test)."""
    if header is None:
        return False
    content_type = header.get_first("Content-Type") or ""
    return bool(_MULTIPART.search(re.sub(r"\s", " ", content_type)))


class ScanResult:
    """How a scanner program ended: ``exit_code`` (None if it did not exit), ``signal``,
    ``output`` (its descriptors 1 and 2 as text, at most MAX_OUTPUT bytes) and ``failure``
    (why there is no verdict: not started, timed out, killed by a signal; None if it exited)."""

    def __init__(self, exit_code=None, signal_number=None, output="", failure=None):
        self.exit_code = exit_code
        self.signal = signal_number
        self.output = output
        self.failure = failure

    @property
    def lines(self):
        """The output's lines, without line endings."""
        return self.output.splitlines()


class _ScannerProcess(protocol.ProcessProtocol):
    """Collects one scanner's output; ``done`` fires with a ScanResult."""

    def __init__(self, name, timeout):
        self.name = name
        self.timeout = timeout
        self.output = bytearray()
        self.process = None
        self.done = defer.Deferred(self._cancel)

    def childDataReceived(self, fd, data):
        room = MAX_OUTPUT - len(self.output)
        if room > 0:
            self.output += data[:room]

    def _text(self):
        return self.output.decode("utf-8", "replace")

    def processEnded(self, reason):
        if self.done.called:
            return
        status = reason.value
        code = getattr(status, "exitCode", None)
        signum = getattr(status, "signal", None)
        failure = None
        if code is None:
            failure = "%s was killed by signal %s" % (self.name, signum)
        self.done.callback(ScanResult(code, signum, self._text(), failure))

    def timed_out(self):
        if not self.done.called:
            self.done.callback(ScanResult(output=self._text(), failure=(
                "%s did not finish within %g seconds (killed)" % (self.name, self.timeout))))

    def _cancel(self, _):
        if self.process is not None:
            try:
                self.process.signalProcess(signal.SIGKILL)
            except error.ProcessExitedAlready:
                pass


def run_program(argv, timeout, stdin_path=None):
    """Run ``argv`` (no shell) with descriptor 0 reading ``stdin_path`` (else /dev/null);
    a Deferred firing with a ScanResult (never failing). Killed after ``timeout`` seconds;
    cancelling the Deferred kills it too."""
    child = _ScannerProcess(argv[0], timeout)
    try:
        stdin = os.open(stdin_path or os.devnull, os.O_RDONLY)
    except OSError as e:
        return defer.succeed(ScanResult(failure="cannot open %s: %s" % (stdin_path, e.strerror)))
    try:
        child.process = spawn_with_timeout(child, argv, {0: stdin, 1: "r", 2: "r"}, timeout,
                                           child.done, child.timed_out)
    except OSError as e:
        return defer.succeed(ScanResult(failure="cannot run %s: %s" % (argv[0], e.strerror or e)))
    finally:
        os.close(stdin)
    return child.done


def _write_message(directory, head, body, state):
    """Write ``head`` and ``body`` to a new file in ``directory``; its path. Blocking.

    Readable by the directory's group and others as far as the directory is (qpsmtpd's
    rule for a spool shared with a scanner daemon). ``state`` (a dict) gets the path as soon
    as the file exists; if ``state["cancelled"]`` is set by then the file is removed again
    (the scan was given up while this thread wrote)."""
    fd, path = tempfile.mkstemp(prefix=spool_file_prefix(), dir=directory)
    state["path"] = path
    try:
        mode = stat.S_IMODE(os.stat(directory).st_mode) & 0o666
        if mode & 0o066:
            os.fchmod(fd, mode | 0o600)
        write_to_fd(fd, [head], body)
    except BaseException:
        os.close(fd)
        _remove(path)
        raise
    finally:
        body.close()
    os.close(fd)
    if state.get("cancelled"):
        _remove(path)
    return path


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class ProgramScanner(Plugin):
    """Base class of the filters that run a scanner program on each message at data_post.

    Subclasses set ``program`` (the path), ``timeout`` and optionally ``max_size`` (bytes;
    larger messages are not scanned), ``multipart_only``, ``spool`` (the directory of the
    message file, default the server's spool_dir), and define ``command(path)`` and
    ``verdict(transaction, result)``. ``failure_reply(transaction)`` says what a scanner
    failure answers (default: skip, DECLINED).
    """

    program = None
    timeout = DEFAULT_TIMEOUT
    max_size = None
    multipart_only = False
    spool = None
    #: what a missing program means at scan time, for the start-up warning
    missing_consequence = "messages are not scanned until it is"

    def warn_if_missing(self, path=None, mode=os.X_OK, what="an executable file"):
        """At start-up: warn if the program (or ``path``) cannot be used; Perl qpsmtpd
        starts without it too."""
        path = path or self.program
        if not os.access(path, mode):
            self.log(LOGWARN, "%s is not %s (yet): %s" % (path, what, self.missing_consequence))

    def scanner_arguments(self, args, known, defaults):
        """Parse ``key value`` arguments (``known`` plus ``timeout`` and ``action``) over
        ``defaults``; sets ``timeout``. qpsmtpd's ``deny_viruses yes|no``, when in ``known``,
        is ``action reject|tag``; ``action`` is checked (the ``virus_action`` setting)."""
        arguments = dict(defaults)
        arguments.update(self.parse_kv_args(args, set(known) | {"timeout", "action"}))
        action_argument(arguments)
        self.arguments = arguments
        self.timeout = self.timeout_argument(arguments)
        return arguments

    def timeout_argument(self, arguments):
        """The ``timeout`` argument (seconds), else DEFAULT_TIMEOUT."""
        text = arguments.get("timeout")
        if text is None:
            return DEFAULT_TIMEOUT
        try:
            value = float(text)
        except ValueError:
            value = 0
        if not 0 < value < float("inf"):
            raise PluginError("timeout must be a positive number of seconds, got %r" % text)
        return value

    # -- data_post ------------------------------------------------------------------------------

    def hook_data_post(self, transaction):
        skip = self.skip_reason(transaction)
        if skip is not None:
            level, why = skip
            self.log(level, "skip, %s" % why, transaction)
            return DECLINED
        # Take the message now, before any wait (see Transaction.body.open).
        head = self.message_prefix(transaction) + transaction.header_bytes()
        body = transaction.body.open()
        return defer.Deferred.fromCoroutine(self._check(transaction, head, body))

    def skip_reason(self, transaction):
        """``(log level, why)`` if this message is not to be scanned, else None."""
        if self.max_size is not None and transaction.data_size > self.max_size:
            return LOGWARN, "too big to scan (%d > %d)" % (transaction.data_size, self.max_size)
        if self.multipart_only and not is_multipart(transaction.header):
            return LOGINFO, "non-multipart mail"
        return None

    def message_prefix(self, transaction):
        """Bytes written before the header in the message file (default none)."""
        return b""

    async def _check(self, transaction, head, body):
        result = await self.scan_message(head, body,
                                         lambda path: self.scan(transaction, path))
        if result.failure is not None:
            return self.failed(transaction, result.failure)
        return self.verdict(transaction, result)

    async def scan_message(self, head, body, scan):
        """Write ``head`` and ``body`` (closed here) to a new file in the spool, wait for
        ``scan(path)`` (a Deferred firing with a ScanResult), remove the file; the result
        (one with a ``failure`` if the file could not be written)."""
        directory = self.spool or self.server.spool_dir
        state = {}
        try:
            path = await self.server.run_blocking(_write_message, directory, head, body, state)
        except defer.CancelledError:
            # the thread goes on writing: it removes the file when done, or we do now
            state["cancelled"] = True
            if state.get("path"):
                _remove(state["path"])
            raise
        except OSError as e:
            return ScanResult(failure="cannot write the message to %s: %s" % (
                directory, e.strerror or e))
        try:
            return await scan(path)
        finally:
            _remove(path)

    def scan(self, transaction, path):
        """Scan the message file ``path``; a Deferred firing with a ScanResult."""
        argv = self.command(path)
        self.log(LOGINFO, "running %s" % " ".join(argv), transaction)
        return self.run(argv)

    def run(self, argv, stdin_path=None):
        """:func:`run_program` with this plugin's timeout."""
        return run_program(argv, self.timeout, stdin_path)

    def command(self, path):
        """The scanner's command line (a list) for message file ``path``."""
        raise NotImplementedError

    def verdict(self, transaction, result):
        """The hook's answer for a finished scan (a ScanResult without failure)."""
        raise NotImplementedError

    # -- replies --------------------------------------------------------------------------------

    def failed(self, transaction, why):
        """A scanner failure: logged (LOGERROR), then ``failure_reply``."""
        self.log(LOGERROR, "cannot scan: %s" % why, transaction)
        return self.failure_reply(transaction)

    def failure_reply(self, transaction):
        """What a scanner failure answers; default: skip (qpsmtpd's legacy scanners)."""
        self.log(LOGWARN, "accepting the message unscanned", transaction)
        return DECLINED

    def infected(self, transaction, found, reply, tag_headers):
        """A virus was found: decided once per group of recipients with the same
        ``virus_action`` (:func:`decide_virus`). Returns the hook's result."""
        self.log(LOGNOTICE, "fail, found virus %s" % found, transaction)
        transaction.notes["virus"] = found
        return decide_virus(self, transaction, reply, tag_headers, on_tag=self.tagged)

    def tagged(self, transaction, recipients):
        """The recipients whose copy gets the tag when ``recipients`` take an infected
        message tagged (default: those; a subclass may add recipients to the transaction)."""
        return recipients

    def add_headers(self, transaction, headers, prepend=False):
        """Add ``headers`` [(name, value)] to the message (at the end, or at the top)."""
        if transaction.header is not None:
            add_fields(transaction.header, headers, prepend)


def add_fields(header, fields, prepend=False):
    """Add ``fields`` [(name, value)] to ``header``, at the end or (``prepend``) at the top,
    in their order either way. Module-level, so that copies of the message can be compared
    (see :func:`qpsmtpd_tx.outcomes.edit_header`)."""
    for name, value in (reversed(fields) if prepend else fields):
        header.add(name, value, prepend=prepend)


def decide_virus(plugin, transaction, reply, tag_fields, prepend=False, on_tag=None):
    """What ``plugin`` answers for an infected message, decided per recipient.

    Once per group of recipients with the same ``virus_action``
    (:meth:`~qpsmtpd_tx.plugin.Plugin.recipient_groups`): ``reject`` refuses the message with
    ``(DENY, reply)`` for them; ``tag`` lets it go to them with ``tag_fields`` [(name, value)]
    added to their copy (at the top with ``prepend``; ``on_tag(transaction, recipients)``, if
    given, returns the recipients to tag instead). With ``recipient_policy split`` a mixed
    answer refuses the message for the ``reject`` recipients only
    (:func:`qpsmtpd_tx.outcomes.per_recipient_result`). Used by every virus filter.
    """
    results = []
    for values, recipients in plugin.recipient_groups(transaction):
        if values["virus_action"] == "reject":
            results.append((recipients, (DENY, reply)))
            continue
        plugin.log(LOGINFO, "virus_action tag: accepting the message for %s" % (
            ", ".join(r.format() for r in recipients) or "its recipients"), transaction)
        if on_tag is not None:
            recipients = on_tag(transaction, recipients)
        if tag_fields:
            plugin.edit_header(transaction, recipients, add_fields, tuple(tag_fields), prepend)
        results.append((recipients, DECLINED))
    return plugin.per_recipient_result(transaction, results)


def virus_setting(default):
    """The per-recipient ``virus_action`` setting (argument ``action``), default ``default``."""
    return Setting("virus_action", "action", default, virus_action, strictest_action)

