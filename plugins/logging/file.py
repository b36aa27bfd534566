"""logging/file — append log lines to a file (or feed them to a command).

List it in the ``logging`` config file, e.g.::

    logging/file loglevel LOGINFO /var/log/qpsmtpd/qpsmtpd.log
    logging/file /var/log/qpsmtpd/qpsmtpd.log.%Y-%m-%d
    logging/file loglevel LOGDEBUG tsformat %FT%T /var/log/qpsmtpd/debug.log
    logging/file:1 loglevel LOGCRIT reopen |/usr/local/sbin/page-sysadmin

Arguments: ``[loglevel L] [reopen] [nosplit] [tsformat FMT] [ids] PATH``
  ``loglevel L``    the highest level written: a number ``0``–``7`` or a name
                    (``LOGINFO``…). Default ``LOGWARN``.
  ``reopen``        reopen the output once per connection, before that connection's first
                    line (with a command, a new command is started for each connection).
  ``nosplit``       a connection keeps writing to the file it started in, even if the
                    strftime-expanded name changes meanwhile (its lines are not split).
  ``tsformat FMT``  strftime format of the time stamp (default ``%a %b %d %T %Y``).
  ``ids``           (qpsmtpd-tx addition) write ``<conn-id> (<hook>) <plugin>: `` before
                    each text, as logging/warn does (which plugin and hook logged it).
  ``PATH``          the file, appended to and created if missing; strftime conversions
                    (``%Y-%m-%d``…) are expanded for each line and a new file is opened when
                    the name changes; ``%i`` is a session id, ``<time>-<pid>-<conn-id>``,
                    giving one file per connection (lines from outside any connection go to
                    the name with ``parent``).
                    ``|COMMAND`` runs COMMAND with ``/bin/sh -c`` and writes to its standard
                    input instead (non-blocking: a slow command does not stall the server,
                    its lines queue in memory). The remaining words are joined with spaces.
                    A relative PATH is relative to the server's working directory.

Several instances (``logging/file:1 …``) write to several files.

Line format (as qpsmtpd): ``<timestamp> <hostname>[<id>]: <text>``. Each line is written
with one ``write`` call as soon as it is logged (no buffering). ``<id>`` is where qpsmtpd's
forkserver wrote the pid of the process serving the connection: here one process serves many
connections, so a connection's lines carry its connection id instead (``1f``; ``w2.1f`` from
worker 2), the id every other log line of the connection shows; lines outside any connection
(start-up, ``cleaning up after <conn-id>``) carry the server's pid, as qpsmtpd's parent's do.

Log rotation: on SIGHUP every open file is closed, and the next line opens the file again
by name, so ``logrotate`` only needs ``postrotate kill -HUP <pid>``. The process's one SIGHUP
dispatcher (qpsmtpd_tx.signals.on_sighup) tells every live instance and chains to a SIGHUP
handler installed before it; a reload adds no handler. ``reopen()`` does the same from code. The server's
SIGHUP also loads a new instance; the old one closes its outputs once the connections
started before have ended.

Config files: none. Notes: connection note ``logging-session-id`` (the ``%i`` value) and a
private connection note named after this plugin instance. Replies: none.
"""

import os
import socket
import time

from twisted.internet import defer, protocol

from qpsmtpd_tx.codes import DECLINED, LOGWARN
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import log_level
from qpsmtpd_tx.server_log import format_log_line
from qpsmtpd_tx.signals import on_sighup

DEFAULT_TSFORMAT = "%a %b %d %T %Y"
SESSION_NOTE = "logging-session-id"
PARENT_SESSION = "parent"
USAGE = "usage: logging/file [loglevel L] [reopen] [nosplit] [tsformat FMT] [ids] PATH"


def parse_args(args):
    """The ``plugins``-line arguments as a dict; PluginError when they do not parse."""
    options = {"loglevel": LOGWARN, "reopen": False, "nosplit": False,
               "tsformat": DEFAULT_TSFORMAT, "ids": False}
    args = list(args)
    while args:
        word = args[0].lower()
        if word in ("loglevel", "tsformat"):
            if len(args) < 2:
                raise PluginError("%s needs a value; %s" % (word, USAGE))
            value = args[1]
            if word == "loglevel":
                value = log_level(value)
            options[word] = value
            del args[:2]
        elif word in ("reopen", "nosplit", "ids"):
            options[word] = True
            del args[:1]
        else:
            break
    output = " ".join(args).strip()
    if not output or output == "|":
        raise PluginError("no PATH given; " + USAGE)
    options["pipe"] = output.startswith("|")
    options["output"] = output[1:].strip() if options["pipe"] else output
    return options


def encode_line(text):
    """The bytes to write for ``text``: UTF-8, undecodable client bytes restored."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


class FileOutput:
    """An open log file, appended to with one unbuffered write per line."""

    def __init__(self, path):
        self.name = path
        self._file = open(path, "ab", buffering=0)

    def write(self, data):
        self._file.write(data)

    def close(self):
        """Close the file; returns a fired Deferred."""
        self._file.close()
        return defer.succeed(None)


class PipeOutput(protocol.ProcessProtocol):
    """A command fed through its standard input; its stdout/stderr are ours."""

    def __init__(self, command, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.name = "|" + command
        self.ended = defer.Deferred()
        reactor.spawnProcess(self, "/bin/sh", ["/bin/sh", "-c", command], env=os.environ,
                             childFDs={0: "w", 1: 1, 2: 2})

    def write(self, data):
        if self.transport is not None:
            self.transport.write(data)

    def processEnded(self, reason):
        self.ended.callback(None)

    def close(self):
        """Close the command's input; returns a Deferred firing when the command exits."""
        if self.transport is not None:
            self.transport.closeStdin()
        return self.ended


class FileLog(Plugin):
    """Log to files named by strftime patterns, with per-session files and SIGHUP reopen."""

    hostname = socket.gethostname()

    def init(self, args):
        options = parse_args(args)
        #: read by the server: nothing above this level is formatted for us
        self.log_threshold = options["loglevel"]
        self.tsformat = options["tsformat"]
        self.reopen_per_session = options["reopen"]
        self.nosplit = options["nosplit"]
        self.ids = options["ids"]
        self.pipe = options["pipe"]
        self.output_format = options["output"]
        self.per_session = "%i" in self.output_format
        self._note = "logging/file:" + self.name
        self._outputs = {}   # expanded name -> FileOutput / PipeOutput
        self._current = None  # the name the latest line outside a pinned session went to
        self._pinned = {}    # name -> number of live connections pinned to it (nosplit)
        self._hup = False
        self._stop_sighup = None
        self._install_sighup()

    # -- SIGHUP ------------------------------------------------------------------------------

    def _install_sighup(self):
        try:
            self._stop_sighup = on_sighup(self._note_sighup)
        except (AttributeError, ValueError, OSError) as e:
            # no SIGHUP on this platform, or not in the main thread
            self.log(LOGWARN, "cannot install a SIGHUP handler (%s); no reopen on HUP" % (e,))

    def _note_sighup(self):
        # Only set a flag: the signal may arrive in the middle of a write. The next line
        # closes everything and reopens its file.
        self._hup = True

    def reopen(self):
        """Close every open output now; the next line opens its file again (log rotation)."""
        self._hup = False
        outputs, self._outputs = list(self._outputs.values()), {}
        self._current = None
        return defer.gatherResults([output.close() for output in outputs])

    close_outputs = reopen

    def stop(self):
        """Close every output: the server stops, or a SIGHUP replaced this instance."""
        if self._stop_sighup is not None:
            self._stop_sighup()
        return self.close_outputs()

    # -- names -------------------------------------------------------------------------------

    def session_id(self, connection):
        """The ``%i`` value of a connection (made on first use), or ``parent``."""
        if connection is None:
            return PARENT_SESSION
        sid = connection.notes.get(SESSION_NOTE)
        if sid is None:
            # qpsmtpd: time, the child's pid, a counter; here the connection id tells them apart
            sid = connection.notes[SESSION_NOTE] = "%08d-%04d-%s" % (
                time.time(), os.getpid(), connection.id)
        return sid

    def output_name(self, connection, now=None):
        """The expanded PATH (or command) for a line logged now by ``connection``."""
        name = self.output_format
        if self.per_session:
            name = name.replace("%i", self.session_id(connection))
        return time.strftime(name, time.localtime(now))

    def _state(self, connection):
        if connection is None:
            return None
        state = connection.notes.get(self._note)
        if state is None:
            state = connection.notes[self._note] = {
                "reopened": False, "pinned": None, "ended": False, "names": set()}
        return state

    # -- outputs -----------------------------------------------------------------------------
    #
    # Two kinds of outputs: a connection's own files (PATH with %i), closed by its
    # post-connection hook; and shared files, of which one is "current" — opening a new
    # name (the strftime expansion changed) closes the previous one unless a connection is
    # still pinned to it by nosplit, in which case the last such connection closes it.

    def _open(self, name):
        if self.pipe:
            return PipeOutput(name)
        return FileOutput(name)

    def _close(self, name):
        output = self._outputs.pop(name, None)
        if output is not None:
            output.close()

    def _output_for(self, connection):
        """(output, transient): where a line of ``connection`` goes; close it if transient."""
        if self._hup:
            self.reopen()
        state = self._state(connection)
        fresh = state is None or state["pinned"] is None
        if fresh:
            name = self.output_name(connection)
            if state is not None and self.nosplit and not state["ended"]:
                state["pinned"] = name
                self._pinned[name] = self._pinned.get(name, 0) + 1
        else:
            name = state["pinned"]
        output = self._outputs.get(name)
        if state is not None and state["ended"]:
            # a line after the connection's post-connection hook: keep nothing open for it
            return (output, False) if output is not None else (self._open(name), True)
        if state is not None and self.reopen_per_session and not state["reopened"]:
            state["reopened"] = True
            if output is not None:
                self._close(name)
                output = None
        if output is None:
            output = self._outputs[name] = self._open(name)
            if self.per_session and connection is not None:
                state["names"].add(name)
            elif fresh:
                previous, self._current = self._current, name
                if previous is not None and previous != name and not self._pinned.get(previous):
                    self._close(previous)
        return output, False

    # -- hooks -------------------------------------------------------------------------------

    def hook_connect(self, transaction):
        self.session_id(transaction.connection)
        return DECLINED

    def hook_post_connection(self, transaction):
        state = self._state(transaction.connection)
        state["ended"] = True
        for name in state["names"]:
            self._close(name)
        state["names"].clear()
        pinned = state["pinned"]
        if pinned is not None:
            self._pinned[pinned] -= 1
            if not self._pinned[pinned]:
                del self._pinned[pinned]
                if pinned != self._current and not self.per_session:
                    self._close(pinned)
        return DECLINED

    def hook_logging(self, transaction, level, hook, plugin_name, message):
        if level > self.log_threshold or plugin_name == self.name:
            return DECLINED
        connection = transaction.connection if transaction is not None else None
        if self.ids:
            message = format_log_line(connection.id if connection is not None else None,
                                      hook, plugin_name, message)
        line = "%s %s[%s]: %s\n" % (time.strftime(self.tsformat), self.hostname,
                                    connection.id if connection is not None else os.getpid(),
                                    message)
        try:
            output, transient = self._output_for(connection)
        except OSError:
            return DECLINED  # the server drops lines a logging plugin fails on
        try:
            output.write(encode_line(line))
        finally:
            if transient:
                output.close()
        return DECLINED
