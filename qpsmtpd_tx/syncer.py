"""Making Maildir deliveries durable in one long-lived child process, in batches.

Why a process and not threads: every Python step of a thread competes with the reactor thread
for the GIL, and each system call the reactor makes (send, recv, epoll) must take the GIL back
afterwards. With the fsyncs in eight threads this hand-off cost about 9 context switches and a
third of the server's CPU per message (bench/README.md, issue 15). The child
(:mod:`~qpsmtpd_tx.maildir_child`) has its own interpreter: the reactor only writes the
requests into a pipe and reads the replies back.

The deliveries of one reactor turn go to the child in one write, at the end of the turn; the
replies are parsed in bulk as they arrive. The child commits what it has read as a batch (one
fsync of each ``new/`` for all of it) and replies to the whole batch at once.

The child is started when the server's reactor starts running (:meth:`Syncer.start_with_reactor`,
which queue/maildir calls at start-up: after twistd dropped privileges, and in each
``--workers`` worker, which gets its own), so that the first message does not wait for it
(about 40 ms), with the interpreter running the server and the same ``qpsmtpd_tx`` package. The guarantee is the one of :func:`~qpsmtpd_tx.maildir.write_maildir`:
a delivery succeeds only after its file and then its directory were fsynced. If the child
cannot be started or ends, every delivery it had not answered fails with a MaildirError
saying so (the plugin answers 451: nothing is acknowledged that is not durable), the event is
logged, and the next delivery starts a new child (a child that could not be started at
start-up, too). When the server stops, queue/maildir's ``stop`` (after the sessions drained)
closes the child's stdin and waits, at most 30 s, until it has finished what it read and
exited, so that the server reaps it (:meth:`Syncer.close_within`); a reactor stopping
otherwise closes its stdin during shutdown and waits as long at most.
"""

import functools
import itertools
import os
import sys

from twisted.internet import process, protocol
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

import qpsmtpd_tx
from qpsmtpd_tx.codes import LOGERROR
from qpsmtpd_tx.maildir import MaildirError
from qpsmtpd_tx.maildir_frames import MAILDIR_ERROR, OK, decode_replies, encode_request
from qpsmtpd_tx.socket_write import write_through

_logger = Logger(namespace="qpsmtpd_tx.syncer")
#: the directory holding the ``qpsmtpd_tx`` package the server runs
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(qpsmtpd_tx.__file__)))


def child_problem(executable=None):
    """Why this process cannot run the delivery child (or a ``--workers`` worker: the same
    interpreter and package) as the user it runs as now (its interpreter ``executable``,
    default ours, or the standard library or our package not usable), or None."""
    effective = os.access in os.supports_effective_ids
    for path, mode, what in (
            (executable or sys.executable, os.X_OK, "executable"),
            (os.path.dirname(os.__file__), os.R_OK | os.X_OK, "readable"),
            (os.path.join(_PACKAGE_ROOT, "qpsmtpd_tx"), os.R_OK | os.X_OK, "readable")):
        if not os.access(path, mode, effective_ids=effective):
            return "%s is not %s by uid %d" % (path, what, os.geteuid())
    return None


def _twisted_log(level, message):
    _logger.error("{message}", message=message)


def _child_env():
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + path if path else "")
    return env


def _write_now(transport, data):
    """Write ``data`` into the child's stdin pipe now if Twisted has nothing queued for it (its
    writer would write only on the next reactor turn, after two epoll_ctl calls)."""
    writer = transport.pipes.get(0)
    if type(writer) is not process.ProcessWriter:
        transport.write(data)
        return
    write_through(transport, data, writer, functools.partial(os.write, writer.fd))


def _outcome(kind, number, text):
    if kind == OK:
        return text
    if kind == MAILDIR_ERROR:
        return MaildirError(text)
    strerror, _, filename = text.partition("\0")
    return OSError(number, strerror, filename) if filename else OSError(number, strerror)


class _Child(protocol.ProcessProtocol):
    """One delivery child: the deliveries it was sent and has not answered yet."""

    def __init__(self, syncer):
        self.syncer = syncer
        self.pending = {}
        self.ended = False
        #: fires once the child has exited after :meth:`Syncer.close` closed its stdin
        self.closed = None
        self.last_batch = None
        self._replies = bytearray()
        self._errors = b""

    def send(self, waiting):
        """Send the deliveries ``waiting`` (``(request id, Deferred, frame pieces)``) in one
        write."""
        pieces = []
        for request_id, d, frame in waiting:
            self.pending[request_id] = d
            pieces += frame
        _write_now(self.transport, b"".join(pieces))

    def close(self):
        """Close the child's stdin: it finishes what it has and exits."""
        self.transport.closeStdin()

    def outReceived(self, data):
        buf = self._replies
        buf += data
        replies, used = decode_replies(buf)
        del buf[:used]
        self.syncer.replied(self, replies)

    def errReceived(self, data):
        *lines, self._errors = (self._errors + data).split(b"\n")
        for line in lines:
            self.syncer.log(LOGERROR, "maildir delivery child: %s"
                            % line.decode("utf-8", "replace"))

    def processEnded(self, reason):
        if self._errors:
            self.errReceived(b"\n")
        self.syncer.ended(self, reason.value)


class Syncer:
    """Deliveries into Maildirs, committed by a delivery child process (see the module).

    ``reactor`` defaults to the global one; ``argv`` is the child's command line (default:
    this interpreter running :mod:`qpsmtpd_tx.maildir_child`); ``log(level, message)``
    reports the child's troubles (default: the Twisted log; the plugin sets its own).
    """

    #: Maildir paths remembered (one per recipient with a PATTERN: bounded)
    PATHS = 4096
    #: seconds the reactor's shutdown waits for the child's exit at most
    SHUTDOWN_WAIT = 30

    def __init__(self, reactor=None, argv=None):
        self._reactor = reactor
        self._argv = argv or [sys.executable, "-m", "qpsmtpd_tx.maildir_child"]
        self._ids = itertools.count(1)
        #: deliveries of this reactor turn, not yet sent
        self._waiting = []
        #: Maildir → its absolute path as bytes (at most PATHS of them)
        self._paths = {}
        self._child = None
        self._start_error = None
        self._shutdown_hook = False
        self.log = _twisted_log
        #: distinct child batches that answered, files delivered, children started (for
        #: tests and measurements)
        self.batches = 0
        self.files = 0
        self.started = 0

    def deliver(self, maildir, mode, pieces):
        """Write the byte strings ``pieces`` into a new file in ``maildir`` (relative to our
        current directory, not the child's) durably; a Deferred firing with the file's name
        once it is in ``new/`` and ``new/`` was fsynced (or failing with the MaildirError or
        OSError of the step that failed). Call it in the reactor thread."""
        d = Deferred()
        request_id = next(self._ids) & 0xFFFFFFFF
        path = self._paths.get(maildir)
        if path is None:
            if len(self._paths) >= self.PATHS:
                self._paths.clear()
            path = self._paths[maildir] = os.fsencode(os.path.abspath(maildir))
        self._waiting.append((request_id, d, encode_request(request_id, mode, path, pieces)))
        if len(self._waiting) == 1:
            self._the_reactor().callLater(0, self._hand_over)
        return d

    def _the_reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        return self._reactor

    def start_with_reactor(self):
        """Have a child ready before the first delivery: started once the reactor runs, if it
        does not run yet (a server starting up). A running reactor (a reload, tests) starts
        none: there a child runs already, or the next delivery starts it."""
        reactor = self._the_reactor()
        if not reactor.running:
            reactor.callWhenRunning(self.start)

    def start(self):
        """Start a child now unless one is running; the running child (None if it could not
        be started: logged, the next delivery tries again)."""
        child = self._child
        # (reaped but not ended: its last replies may still be in the pipe, and its
        # processEnded settles what it had)
        if child is not None and not child.ended and child.transport.pid is not None:
            return child
        try:
            return self._start()
        except Exception as e:
            self.log(LOGERROR, "cannot start the maildir delivery child: %s" % (e,))
            self._start_error = e
            return None

    def _hand_over(self):
        waiting, self._waiting = self._waiting, []
        child = self.start()
        if child is None:
            error = MaildirError("delivery child: cannot start: %s" % (self._start_error,))
            for _, d, _ in waiting:
                d.errback(Failure(error))
            return
        child.send(waiting)

    def _start(self):
        child = _Child(self)
        # run in the package's directory: ``-m`` looks in the current directory first, where
        # another checkout of qpsmtpd_tx may be
        reactor = self._the_reactor()
        reactor.spawnProcess(child, self._argv[0], self._argv, env=_child_env(),
                             path=_PACKAGE_ROOT, childFDs={0: "w", 1: "r", 2: "r"})
        self._child = child
        self.started += 1
        if not self._shutdown_hook:
            self._shutdown_hook = True
            reactor.addSystemEventTrigger("during", "shutdown", self.close_at_shutdown)
        return child

    def close(self):
        """Let the child finish what it was sent and exit (reactor shutdown, or tests); a
        Deferred firing once it has exited. The next delivery starts a new one."""
        child, self._child = self._child, None
        done = Deferred()
        if child is None or child.ended:
            done.callback(None)
            return done
        child.closed = done
        child.close()
        return done

    def close_within(self, seconds):
        """:meth:`close`, for a server shutting down: a Deferred firing once the child has
        exited (and was reaped by this process, so no orphan is left to an init that may not
        reap it), or after ``seconds`` if it has not (a stuck disk must not stop the
        shutdown; the child still exits once it is done)."""
        reactor = self._the_reactor()
        waiter = Deferred()

        def done(_=None):
            if timer.active():
                timer.cancel()
            if not waiter.called:
                waiter.callback(None)

        timer = reactor.callLater(seconds, done)
        self.close().addBoth(done)
        return waiter

    def close_at_shutdown(self):
        """A stopping server: :meth:`close_within` ``SHUTDOWN_WAIT`` seconds. queue/maildir's
        ``stop`` calls it after the drain, and the reactor's shutdown too: for a server whose
        chain no longer has queue/maildir (a reload took it out) and whose child is stuck on
        a disk, twistd must still exit."""
        return self.close_within(self.SHUTDOWN_WAIT)

    def replied(self, child, replies):
        """Fire the Deferreds of the ``replies`` ``child`` sent."""
        pending = child.pending
        for request_id, kind, number, batch, text in replies:
            d = pending.pop(request_id, None)
            if batch != child.last_batch:
                child.last_batch = batch
                self.batches += 1
            if d is None:
                continue
            self.files += 1
            outcome = _outcome(kind, number, text)
            if kind == OK:
                d.callback(outcome)
            else:
                d.errback(Failure(outcome))

    def ended(self, child, why):
        """``child`` has exited (``why``): fail what it had not answered."""
        if self._child is child:
            self._child = None
        child.ended = True
        pending, child.pending = child.pending, {}
        if pending or child.closed is None:
            self.log(LOGERROR, "maildir delivery child ended: %s (%d deliveries failed)"
                     % (why, len(pending)))
        if child.closed is not None:
            child.closed.callback(None)
        error = MaildirError("delivery child ended: %s" % (why,))
        for d in pending.values():
            d.errback(Failure(error))


#: the process's syncer
SYNCER = Syncer()
