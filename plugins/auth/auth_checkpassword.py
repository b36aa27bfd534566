"""auth/auth_checkpassword — SMTP AUTH through a DJB-style checkpassword program.

For each AUTH it runs ``CHECKPW TRUE`` (e.g. vpopmail's ``vchkpw /bin/true``) with the
checkpassword interface: descriptor 3 carries ``USER\\0PASSWORD\\0TIMESTAMP\\0`` (the
timestamp is ``Y123456``, as qpsmtpd sends), descriptor 0 is an empty pipe. Exit status 0
means the credentials are right (the program then runs ``TRUE``, whose status it returns).
The program runs as a child process through Twisted, so the server goes on serving; it
gets the server's environment, and is killed (SIGKILL) after ``timeout`` seconds.

Mechanisms: PLAIN and LOGIN (the interface carries a clear password; 0.94 does not offer
CRAM-MD5 either).

Arguments: ``checkpw PATH true PATH [timeout SECONDS] [loglevel LEVEL]``
  ``checkpw``  the checkpassword program (absolute path, executable).
  ``true``     the program it runs after a success (``/bin/true``).
  ``timeout``  seconds the program may take before it is killed (default 10).
Without ``checkpw`` and ``true``, the config file is read instead.

Config files:
  ``smtpauth-checkpassword``  one line: ``CHECKPW TRUE`` (two paths separated by blanks).

Replies (through the core): exit 0 ``235 PLAIN authentication successful for USER -
auth_checkpassword``; exit 111 (checkpassword's "temporary problem") or 2 ("misused"), death
by a signal, no exit within ``timeout``, or a program that cannot be started:
``454 4.7.0 Temporary authentication failure``; any other exit status (1: wrong user or
password): ``535 5.7.8 Authentication credentials invalid``. The exit status and the first
line the program wrote to standard error are logged; the password is not.

Start-up fails (naming the ``plugins`` line) when neither the arguments nor the config file
name two executable programs, or when only one of ``checkpw`` and ``true`` is given.

Intended differences from qpsmtpd 0.94:
* 0.94 started without AUTH (an error in the log) when the paths were missing or not
  executable; here start-up fails, saying so.
* 0.94 ran the program through the shell and, when not running as root and the program is
  not setuid (mode 4711), silently put ``sudo -C4`` (and ``-u vpopmail`` for vchkpw) in
  front of it. Here the program runs as given: make it setuid, or name a wrapper script
  that runs ``exec sudo -C4 -u vpopmail /home/vpopmail/bin/vchkpw "$@"`` (sudo needs
  ``Defaults closefrom_override`` to keep descriptor 3 open, as qpsmtpd's documentation says).
* 0.94 declined (535) every failure; temporary failures (111, a crash, a timeout) are 454.
* ``timeout`` is new (0.94 waited for the program as long as it ran).
"""

import os
import signal

from twisted.internet import defer, error, protocol

from qpsmtpd_tx.auth_backend import AuthBackend, BackendUnavailable
from qpsmtpd_tx.childprocess import spawn_with_timeout
from qpsmtpd_tx.codes import DECLINED, LOGINFO, LOGNOTICE, OK
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.printable import printable

CONFIG_FILE = "smtpauth-checkpassword"
#: the timestamp field of the request, as qpsmtpd 0.94 sends it
TIMESTAMP = "Y123456"
#: checkpassword's exit statuses that are not the client's fault
TEMPORARY_STATUSES = {2: "misused", 111: "temporary problem"}
#: bytes of the program's standard error kept for the log
MAX_STDERR = 1000


class _CheckProcess(protocol.ProcessProtocol):
    """Writes the request to descriptor 3; ``done`` fires with the exit status (an int) or
    fails with BackendUnavailable (a signal, killed after the time limit). Cancelling it
    kills the process."""

    def __init__(self, request):
        self.request = request
        self.stderr = b""
        self.done = defer.Deferred(self._cancel)

    def connectionMade(self):
        self.transport.closeChildFD(0)
        self.transport.writeToChild(3, self.request)
        self.transport.closeChildFD(3)

    def childDataReceived(self, fd, data):
        if fd == 2 and len(self.stderr) < MAX_STDERR:
            self.stderr += data[:MAX_STDERR - len(self.stderr)]

    def processEnded(self, reason):
        if self.done.called:
            return
        status = reason.value
        if isinstance(status, error.ProcessTerminated) and status.signal is not None:
            self.done.errback(BackendUnavailable("killed by signal %d" % status.signal))
        else:
            self.done.callback(getattr(status, "exitCode", None) or 0)

    def timed_out(self, seconds):
        if not self.done.called:
            self.done.errback(BackendUnavailable("killed after %g s" % seconds))

    def _cancel(self, _):
        try:
            self.transport.signalProcess(signal.SIGKILL)
        except (error.ProcessExitedAlready, OSError):
            pass


class AuthCheckpassword(AuthBackend):
    """Check PLAIN and LOGIN credentials with a checkpassword program."""

    def init(self, args):
        options = self.parse_kv_args(args, {"checkpw", "true", "timeout"})
        self.set_timeout(options.get("timeout"))
        if options.get("checkpw") or options.get("true"):
            if not (options.get("checkpw") and options.get("true")):
                raise PluginError("give both checkpw PATH and true PATH")
            self.checkpw, self.true = options["checkpw"], options["true"]
            where = "arguments"
        else:
            line = self.config_scalar(CONFIG_FILE)
            words = (line or "").split()
            if len(words) != 2:
                raise PluginError(
                    "needs the checkpassword program and the program it runs on success: "
                    "arguments checkpw PATH true PATH, or the config file %s (one line: "
                    "CHECKPW TRUE)%s" % (CONFIG_FILE, "" if line is None else
                                         ", which holds %r" % printable(line, limit=200)))
            self.checkpw, self.true = words
            where = "config file %s" % CONFIG_FILE
        for path in (self.checkpw, self.true):
            if not os.path.isabs(path) or not os.path.isfile(path) or not os.access(path,
                                                                                  os.X_OK):
                raise PluginError("%s (from the %s) is not an executable file given by its "
                                  "absolute path" % (path, where))

    def check(self, transaction, method, user, clear, digest, ticket):
        if clear is None:
            return DECLINED
        if "\0" in user or "\0" in clear:
            self.log(LOGINFO, "fail: a NUL in the user name or password", transaction)
            return DECLINED
        request = ("%s\0%s\0%s\0" % (user, clear, TIMESTAMP)).encode("utf-8")
        child = _CheckProcess(request)
        try:
            spawn_with_timeout(child, [self.checkpw, self.true],
                               {0: "w", 1: "r", 2: "r", 3: "w"}, self.timeout, child.done,
                               lambda: child.timed_out(self.timeout))
        except OSError as e:
            raise BackendUnavailable("cannot run %s: %s" % (self.checkpw, e.strerror or e))
        child.done.addCallback(self._ended, child, transaction)
        child.done.addErrback(self._failed, child)
        return child.done

    def _said(self, child):
        lines = child.stderr.decode("utf-8", "replace").splitlines()
        return " (it said: %s)" % printable(lines[0], limit=200) if lines else ""

    def _ended(self, status, child, transaction):
        if status == 0:
            self.log(LOGINFO, "pass, auth success", transaction)
            return OK, "auth_checkpassword"
        if status in TEMPORARY_STATUSES:
            raise BackendUnavailable("%s exited %d (%s)%s" % (
                self.checkpw, status, TEMPORARY_STATUSES[status], self._said(child)))
        self.log(LOGNOTICE, "fail, auth failed: %s exited %d%s"
                 % (self.checkpw, status, self._said(child)), transaction)
        return DECLINED

    def _failed(self, failure, child):
        failure.trap(BackendUnavailable)
        raise BackendUnavailable("%s %s%s" % (self.checkpw, failure.value, self._said(child)))
