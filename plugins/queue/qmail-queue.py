"""queue/qmail-queue — hand each accepted message to qmail-queue (or a program with its interface).

The program is run directly (never through a shell) with the message on descriptor 0 and the
envelope on descriptor 1, as qmail-queue(8) describes: the message is the header block, the
empty line and the body, with LF line endings (as the transaction holds it); the envelope is
``F<sender>\\0``, then ``T<recipient>\\0`` for each recipient, then one more ``\\0`` (the null
sender is ``F\\0``). Addresses are written ``user@host`` without angle brackets or quoting,
as qmail-smtpd writes them. The client is answered only once the program has exited.

Arguments: ``[PATH] [timeout SECONDS]``
  ``PATH``     the program (default ``$QMAIL/bin/qmail-queue``, i.e.
               ``/var/qmail/bin/qmail-queue``). The environment variable ``QMAILQUEUE``, when
               set, overrides both, as in qpsmtpd and qmail. The path must be absolute and
               made of ``A-Z a-z 0-9 / - _ .`` only (qpsmtpd's rule); anything else stops
               start-up.
  ``timeout``  seconds to wait for the program to read the message and exit (default 300);
               when it runs out the program is killed (SIGKILL) and the client gets a 451.

Config files: none. Environment: ``QMAILQUEUE``, ``QMAIL``; the program inherits the server's
environment. Descriptor 2 of the program is read and logged (LOGWARN).

Replies (the texts after the exit status are qmail-smtpd's own, from qmail 1.03's ``qmail.c``):
  exit 0        ``250 Queued! <epoch> qp <pid> <Message-Id>`` (``<>`` when there is none)
  exit 11       ``552 envelope address too long for qq (#5.1.3)``
  exit 31       ``552 mail server permanently rejected message (#5.3.0)``
  other 11-40   ``552 qq permanent problem (#5.3.0)``
  exit 51       ``451 qq out of memory (#4.3.0)``
  exit 52       ``451 qq timeout (#4.3.0)``
  exit 53       ``451 qq write error or disk full (#4.3.0)``
  exit 54       ``451 qq read error (#4.3.0)``
  exit 55       ``451 qq unable to read configuration (#4.3.0)``
  exit 56       ``451 qq trouble making network connection (#4.3.0)``
  exit 61       ``451 qq trouble in home directory (#4.3.0)``
  exit 62-66    ``451 qq trouble creating files in queue (#4.3.0)``
  exit 71       ``451 mail server temporarily rejected message (#4.3.0)``
  exit 72       ``451 connection to mail server timed out (#4.4.1)``
  exit 73       ``451 connection to mail server rejected (#4.4.1)``
  exit 74       ``451 communication with mail server failed (#4.4.2)``
  exit 81, 91   ``451 qq internal bug (#4.3.0)``
  exit 82       with a text on descriptor 6 starting with ``D`` (permanent, 552) or ``Z``
                (temporary, 451): that text; without one like any other code
  any other     ``451 qq temporary problem (#4.3.0)``
  killed by a signal  ``451 qq crashed (#4.3.0)``
  cannot be run       ``451 unable to exec qq (#4.3.0)``
  timeout             ``451 Unable to queue message (qmail-queue timed out after N seconds)``
  exit 0, but the message or envelope could not be written completely, or the program
  left part of either unread in its pipe
                      ``451 qq read error (#4.3.0)`` (qmail's rule: nothing half-written is
                      acknowledged; the server keeps its own handle on the pipe's read end
                      to count what the program did not read)
A permanent failure is returned as DENY (the core answers 552); a temporary one as DECLINED,
so a later queue plugin may still take the message, else the core answers ``451``. Every
failure is logged at LOGERROR with the exit status.

Differences from qpsmtpd 0.94: 0.94 answers ``451 Unable to queue message (<exit code>)`` for
every non-zero exit, also for qmail-queue's permanent codes 11-40; here those are 5xx, and
every code carries qmail's own text. 0.94 checks the path only in the forked child (every
message then fails with exit 3); here a bad path stops start-up. 0.94 has no timeout, lets a
SIGPIPE become a ``FATAL PLUGIN ERROR``, and blocks its process while qmail-queue runs; here
everything is asynchronous. Exit code 82 with a text on descriptor 6 (the convention of
notqmail's qmail-queue(8) and simscan) is understood.
"""

import os
import re
import time

from twisted.internet import defer, protocol
from twisted.protocols.basic import FileSender

from qpsmtpd_tx.childpipe import ChildInput
from qpsmtpd_tx.childprocess import spawn_with_timeout
from qpsmtpd_tx.codes import DECLINED, DENY, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd_tx.message import message_id
from qpsmtpd_tx.plugin import Plugin, PluginError

DEFAULT_TIMEOUT = 300.0
#: qpsmtpd's rule for the program path
_SAFE_PATH = re.compile(r"/[/\-_.a-zA-Z0-9]*\Z")
#: at most this much of the program's descriptor 2 and 6 output is kept
_MAX_OUTPUT = 4096

PERMANENT, TEMPORARY = "permanent", "temporary"

#: qmail-smtpd's texts for qmail-queue's exit codes (qmail 1.03, qmail.c, qmail_close)
EXIT_TEXTS = {
    11: "envelope address too long for qq (#5.1.3)",
    31: "mail server permanently rejected message (#5.3.0)",
    51: "qq out of memory (#4.3.0)",
    52: "qq timeout (#4.3.0)",
    53: "qq write error or disk full (#4.3.0)",
    54: "qq read error (#4.3.0)",
    55: "qq unable to read configuration (#4.3.0)",
    56: "qq trouble making network connection (#4.3.0)",
    61: "qq trouble in home directory (#4.3.0)",
    62: "qq trouble creating files in queue (#4.3.0)",
    63: "qq trouble creating files in queue (#4.3.0)",
    64: "qq trouble creating files in queue (#4.3.0)",
    65: "qq trouble creating files in queue (#4.3.0)",
    66: "qq trouble creating files in queue (#4.3.0)",
    71: "mail server temporarily rejected message (#4.3.0)",
    72: "connection to mail server timed out (#4.4.1)",
    73: "connection to mail server rejected (#4.4.1)",
    74: "communication with mail server failed (#4.4.2)",
    81: "qq internal bug (#4.3.0)",
    91: "qq internal bug (#4.3.0)",
}
PERMANENT_DEFAULT = "qq permanent problem (#5.3.0)"
TEMPORARY_DEFAULT = "qq temporary problem (#4.3.0)"
CRASHED = "qq crashed (#4.3.0)"
CANNOT_EXEC = "unable to exec qq (#4.3.0)"
#: the exit code that comes with a custom text on descriptor 6
CUSTOM_ERROR_EXIT = 82
CUSTOM_ERROR_FD = 6


def exit_status_reply(status, custom=b""):
    """``(PERMANENT or TEMPORARY, text)`` for a non-zero exit status of qmail-queue.

    ``custom`` is what the program wrote on descriptor 6 (used with exit code 82).
    """
    if status == CUSTOM_ERROR_EXIT:
        text = custom.split(b"\0")[0].strip().decode("utf-8", "replace")
        if len(text) > 1 and text[0] in "DZ":
            return (PERMANENT if text[0] == "D" else TEMPORARY), text[1:].strip()
    kind = PERMANENT if 11 <= status <= 40 else TEMPORARY
    return kind, EXIT_TEXTS.get(status, PERMANENT_DEFAULT if kind == PERMANENT else TEMPORARY_DEFAULT)


def envelope_bytes(sender, recipients):
    """qmail-queue's envelope: ``F<sender>\\0``, ``T<rcpt>\\0`` each, then ``\\0``."""
    def encode(address):
        return address.unquoted_address.encode("utf-8", "surrogateescape") if address else b""
    return (b"F" + encode(sender) + b"\0"
            + b"".join(b"T" + encode(r) + b"\0" for r in recipients) + b"\0")


class _QueueProcess(protocol.ProcessProtocol):
    """Feeds one qmail-queue child and reports how it ended.

    The message and the envelope go through ChildInput pipes, so that after the child exits
    we know whether it read every byte of both (``write_failed`` is False only then)."""

    def __init__(self, header, body, envelope):
        self.header = header
        self.body = body
        self.envelope = envelope
        self.input = ChildInput()
        self.envelope_input = ChildInput()
        self.done = defer.Deferred()
        self.stderr = b""
        self.custom = b""
        self.write_failed = False

    def connectionMade(self):
        self.envelope_input.writer.write(self.envelope)
        self.envelope_input.writer.loseConnection()
        self.input.writer.write(self.header)
        d = FileSender().beginFileTransfer(self.body, self.input.writer)
        # Closing waits until the buffer is written; an abort (child gone) stops the sender
        # (the pipe's connectionLost calls its stopProducing).
        d.addCallbacks(lambda _: self.input.writer.loseConnection(), lambda _: None)

    def childDataReceived(self, fd, data):
        if fd == 2 and len(self.stderr) < _MAX_OUTPUT:
            self.stderr += data[:_MAX_OUTPUT - len(self.stderr)]
        elif fd == CUSTOM_ERROR_FD and len(self.custom) < _MAX_OUTPUT:
            self.custom += data[:_MAX_OUTPUT - len(self.custom)]

    def processEnded(self, reason):
        # qmail's rule: an exit status counts only if the whole message was written, the
        # pipe closed, and the child read it all (nothing left in the pipe); the same for
        # the envelope.
        message_taken = self.input.finish()
        self.write_failed = not (self.envelope_input.finish() and message_taken)
        self.body.close()
        if not self.done.called:
            self.done.callback(reason.value)

    def timed_out(self):
        """The child was killed: stop feeding it, and end with ``None``."""
        self.abandon()
        if not self.done.called:
            self.done.callback(None)

    def abandon(self):
        """Stop feeding the child (it timed out): close the pipes and the body."""
        self.write_failed = True
        self.input.close()
        self.envelope_input.close()
        self.body.close()


class QmailQueue(Plugin):
    """Queue through qmail-queue's two-pipe interface, asynchronously."""

    def init(self, args):
        args = list(args)
        self.timeout = DEFAULT_TIMEOUT
        path = None
        if args and args[0] != "timeout":
            path = args.pop(0)
        if args:
            if len(args) != 2 or args[0] != "timeout":
                raise PluginError("usage: queue/qmail-queue [PATH] [timeout SECONDS]")
            try:
                self.timeout = float(args[1])
            except ValueError:
                raise PluginError("timeout must be a number of seconds, got %r" % args[1])
            if self.timeout <= 0:
                raise PluginError("timeout must be positive, got %r" % args[1])
        if not path:
            path = os.path.join(os.environ.get("QMAIL") or "/var/qmail", "bin", "qmail-queue")
        if os.environ.get("QMAILQUEUE"):
            path = os.environ["QMAILQUEUE"]
        if not _SAFE_PATH.match(path):
            raise PluginError("unexpected characters in the qmail-queue path %r (allowed: an "
                              "absolute path of A-Z a-z 0-9 / - _ .)" % (path,))
        self.queue_exec = path
        if not os.access(path, os.X_OK):
            self.log(LOGWARN, "%s is not executable (yet): messages get 451 until it is" % path)

    def hook_queue(self, transaction):
        # Everything the child needs is taken now, in the reactor thread: the body stays
        # readable through our own file object even if the client leaves and the
        # transaction's spool is deleted.
        header = transaction.header_bytes()
        body = transaction.body.open()
        envelope = envelope_bytes(transaction.sender, transaction.recipients)
        msgid = message_id(transaction.header)
        if not (msgid.startswith("<") and msgid.endswith(">")):
            msgid = "<%s>" % msgid
        return self._run(transaction, header, body, envelope, msgid)

    def _run(self, transaction, header, body, envelope, msgid):
        if not os.access(self.queue_exec, os.X_OK):
            body.close()
            self.log(LOGERROR, "cannot run %s: not an executable file" % self.queue_exec,
                     transaction)
            return DECLINED, CANNOT_EXEC
        child = _QueueProcess(header, body, envelope)
        try:
            process = spawn_with_timeout(
                child, [self.queue_exec],
                {0: child.input.child_fd, 1: child.envelope_input.child_fd, 2: "r",
                 CUSTOM_ERROR_FD: "r"},
                self.timeout, child.done, child.timed_out)
        except OSError as e:
            child.abandon()
            self.log(LOGERROR, "cannot run %s: %s" % (self.queue_exec, e.strerror or e),
                     transaction)
            return DECLINED, CANNOT_EXEC
        pid = process.pid
        self.log(LOGINFO, "queuing to %s (pid %s)" % (self.queue_exec, pid), transaction)
        child.done.addCallback(self._ended, transaction, child, pid, msgid)
        return child.done

    def _ended(self, status, transaction, child, pid, msgid):
        if child.stderr:
            for line in child.stderr.decode("utf-8", "replace").splitlines():
                self.log(LOGWARN, "qmail-queue said: %s" % line, transaction)
        if status is None:
            self.log(LOGERROR, "%s (pid %s) killed after %g seconds" % (
                self.queue_exec, pid, self.timeout), transaction)
            return DECLINED, "Unable to queue message (qmail-queue timed out after %g seconds)" % (
                self.timeout,)
        signum = getattr(status, "signal", None)
        if signum is not None:
            self.log(LOGERROR, "%s (pid %s) killed by signal %s" % (self.queue_exec, pid, signum),
                     transaction)
            return DECLINED, CRASHED
        code = getattr(status, "exitCode", None) or 0
        if code == 0 and not child.write_failed:
            self.log(LOGINFO, "queued by %s (pid %s)" % (self.queue_exec, pid), transaction)
            return OK, "Queued! %d qp %s %s" % (time.time(), pid, msgid)
        if code == 0:
            kind, text = TEMPORARY, EXIT_TEXTS[54]
            self.log(LOGERROR, "%s (pid %s) exited 0 without reading the whole message" % (
                self.queue_exec, pid), transaction)
        else:
            kind, text = exit_status_reply(code, child.custom)
            self.log(LOGERROR, "%s (pid %s) exited %d: %s failure: %s" % (
                self.queue_exec, pid, code, kind, text), transaction)
        return (DENY if kind == PERMANENT else DECLINED), text
