"""Running a short program for its output, asynchronously and with a time limit
(``quit_fortune``'s fortune, ``loadcheck``'s uptime)."""

from twisted.internet import defer, protocol, reactor

from qpsmtpd_tx.childprocess import spawn_with_timeout

#: more output than this is not kept (the program is not stopped for it)
MAX_OUTPUT = 65536


class ProgramFailed(Exception):
    """The program could not start, exited with a non-zero status, or ran out of time."""


class _Collector(protocol.ProcessProtocol):
    def __init__(self, done):
        self.done = done
        self.output = bytearray()

    def outReceived(self, data):
        room = MAX_OUTPUT - len(self.output)
        if room > 0:
            self.output += data[:room]

    def processEnded(self, reason):
        if self.done.called:
            return
        code = getattr(reason.value, "exitCode", None)
        if code == 0:
            self.done.callback(bytes(self.output))
        else:
            self.done.errback(ProgramFailed("exited with %s" % (
                code if code is not None else reason.getErrorMessage(),)))


def program_output(argv, timeout, clock=reactor):
    """A Deferred firing with the standard output (bytes) of ``argv``; it fails with
    :class:`ProgramFailed` when the program cannot start, exits non-zero, or has not ended
    within ``timeout`` seconds (it is then killed). Its standard error is discarded and its
    standard input is empty."""
    done = defer.Deferred()
    collector = _Collector(done)

    def on_timeout():
        if not done.called:
            done.errback(ProgramFailed("no answer within %g s" % (timeout,)))

    try:
        process = spawn_with_timeout(collector, argv, {0: "w", 1: "r", 2: "r"}, timeout, done,
                                     on_timeout, clock=clock)
    except OSError as e:
        return defer.fail(ProgramFailed("cannot start %s: %s" % (argv[0], e)))
    process.closeStdin()
    return done
