"""Telling the operator why ``twistd qpsmtpd-tx`` cannot start, in the foreground and as a daemon.

twistd daemonizes before it starts the services: from then on standard error is /dev/null and
the command the operator typed waits on twistd's start-status pipe, which only learns of
exceptions (not of ``SystemExit``) and passes on 100 bytes of them. :class:`StartupReporter`
keeps a duplicate of the starting command's standard error from before that, so that every
problem reaches the terminal in full, writes the status pipe itself (so that the waiting
command exits 1 at once), and removes the pid file.
"""

import errno
import os

from twisted.logger import Logger

log = Logger(namespace="qpsmtpd_tx.startup")

#: what the waiting twistd command prints after "An error has occurred: "
STATUS_TEXT = b"qpsmtpd-tx could not start: see the lines above"


def config_dir_problem(path):
    """Why ``path`` cannot be the config directory (a --config argument), or None."""
    if path is None or os.path.isdir(path):
        return None
    if os.path.exists(path):
        return "config directory %s: not a directory" % path
    return "config directory %s: no such directory" % path


def switches_user(twistd_options, current_uid=None, current_gid=None):
    """True if twistd's ``--uid``/``--gid`` ask for another user or group than the current ones."""
    uid = os.getuid() if current_uid is None else current_uid
    gid = os.getgid() if current_gid is None else current_gid
    wanted_uid, wanted_gid = twistd_options.get("uid"), twistd_options.get("gid")
    return (wanted_uid is not None and wanted_uid != uid) or \
        (wanted_gid is not None and wanted_gid != gid)


def privilege_problem(twistd_options, current_uid=None, current_gid=None):
    """Why twistd's ``--uid``/``--gid`` cannot be applied by this process, or None.

    Only root can switch users; twistd finds out after daemonizing and then exits without
    telling the command waiting for it (which never returns), so this is checked first.
    """
    uid = os.getuid() if current_uid is None else current_uid
    if uid == 0 or not switches_user(twistd_options, uid, current_gid):
        return None
    return ("--uid/--gid: only root can switch to uid %s, gid %s (this process runs as uid %d)"
            % (twistd_options.get("uid"), twistd_options.get("gid"), uid))


def format_problems(problems):
    """The text an operator sees: one problem on one line, several under a count."""
    if len(problems) == 1:
        return "qpsmtpd-tx: cannot start: %s\n" % problems[0]
    return "qpsmtpd-tx: cannot start: %d problems:\n%s\n" % (len(problems), "\n".join(problems))


class StartupReporter:
    """Reports start-up failures of one twistd run; ``twistd_options`` are twistd's own options.

    Create it before twistd daemonizes (in ``makeService``); call :meth:`started` once the
    service runs, which lets go of the terminal.
    """

    def __init__(self, twistd_options=None):
        self.options = twistd_options if twistd_options is not None else {}
        try:
            self._terminal = os.dup(2)   # not inherited by worker processes (O_CLOEXEC)
        except OSError:
            self._terminal = None

    def started(self):
        """Start-up succeeded: close our copy of the terminal (a pipe reader may wait for EOF)."""
        if self._terminal is not None:
            os.close(self._terminal)
            self._terminal = None

    def fail(self, problems):
        """Report ``problems`` (a list of strings) and end the process with exit status 1."""
        text = format_problems(problems)
        self._write_terminal(text.encode("utf-8", "backslashreplace"))
        if not self._log_is_terminal():
            for problem in problems:
                log.error("cannot start: {problem}", problem=problem)
        self._write_status_pipe()
        self._remove_pidfile()
        self.started()
        raise SystemExit(1)

    def _write_terminal(self, data):
        if self._terminal is None:
            return
        try:
            while data:
                data = data[os.write(self._terminal, data):]
        except OSError:
            pass

    def _log_is_terminal(self):
        """True when twistd logs to standard output (``-n`` without --logfile or --syslog)."""
        options = self.options
        return bool(options.get("nodaemon")) and not options.get("syslog") \
            and options.get("logfile") in (None, "-")

    def _write_status_pipe(self):
        """Tell the command waiting for a daemon's start that it failed ("1 <text>")."""
        pipe = self.options.get("statusPipe")
        if pipe is None:
            return
        self.options["statusPipe"] = None
        try:
            os.write(pipe, b"1 " + STATUS_TEXT)
            os.close(pipe)
        except OSError:
            pass

    def _remove_pidfile(self):
        """Remove twistd's pid file if it holds our pid (twistd does not, on SystemExit)."""
        path = self.options.get("pidfile")
        if not path:
            return
        try:
            with open(path, "rb") as f:
                mine = f.read().strip() == b"%d" % os.getpid()
            if mine:
                os.unlink(path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                log.warn("cannot remove pid file {path}: {why}", path=path, why=e.strerror)
