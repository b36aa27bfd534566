"""An SMTP client talking to a child process on its standard input and output.

For queue/exim-bsmtp's pool: ``exim -bs`` speaks SMTP on stdin/stdout, and
:func:`start_session` runs one and puts the suite's SMTP client
(:class:`qpsmtpd_tx.smtp_client.NextHopProtocol`) on it, greeted and EHLO said. The client
sees the process as a connection: writing goes to its standard input, its standard output
is read as replies, its exit is the connection lost, and aborting the connection (a
timeout, a garbled reply) kills it. Its standard error is kept (the last few KiB) for the
log. The process is run directly, never through a shell.
"""

import os

from twisted.internet import error, protocol, reactor

from qpsmtpd_tx.smtp_client import NextHopError, NextHopProtocol, NextHopTimeout, parse_capabilities

#: at most this much of the child's standard error is kept
MAX_STDERR = 4096


class CannotRun(NextHopError):
    """The program could not be started."""


class ChildTransport:
    """The transport the SMTP client writes to: the child's standard input."""

    def __init__(self, process):
        self.process = process
        #: LineReceiver stops reading once this is true (stdin closed after QUIT)
        self.disconnecting = False

    def write(self, data):
        self.process.write(data)

    def registerProducer(self, producer, streaming):
        self.process.registerProducer(producer, streaming)

    def unregisterProducer(self):
        self.process.unregisterProducer()

    def loseConnection(self):
        """Close the child's standard input (after QUIT it exits by itself)."""
        self.disconnecting = True
        self.process.closeStdin()

    def abortConnection(self):
        """Kill the child (SIGKILL): it hangs, or said something we cannot follow."""
        try:
            self.process.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass


class SmtpSession(NextHopProtocol):
    """The SMTP client on a child process; its errors name ``program``."""

    def __init__(self, program, timeout, clock=reactor):
        NextHopProtocol.__init__(self, timeout, clock)
        self.program = program
        self.pid = None
        self.stderr = b""
        #: how the process ended ("exit status 0", "killed by signal 9"), once it has
        self.ended = None

    def connectionLost(self, reason):
        self.ended = _describe_exit(reason.value)
        NextHopProtocol.connectionLost(self, reason)

    def lost_error(self, reason):
        return NextHopError("%s ended (%s)" % (self.program, _describe_exit(reason.value)))

    def timeout_error(self, seconds, doing):
        return NextHopTimeout("%s did not answer within %g seconds" % (self.program, seconds))


class _ChildProtocol(protocol.ProcessProtocol):
    """Feeds what the child says on its standard output to the session."""

    def __init__(self, session):
        self.session = session

    def connectionMade(self):
        self.session.pid = self.transport.pid
        self.session.makeConnection(ChildTransport(self.transport))

    def childDataReceived(self, fd, data):
        if fd == 1:
            self.session.dataReceived(data)
        elif fd == 2:
            self.session.stderr = (self.session.stderr + data)[-MAX_STDERR:]

    def processExited(self, reason):
        # The process itself is gone: a delivery process it forked may still hold its
        # standard error (not read any further), so this, not processEnded, ends the session.
        self.transport.closeChildFD(2)
        if not self.session.closed:
            self.session.connectionLost(reason)

    def processEnded(self, reason):
        if not self.session.closed:
            self.session.connectionLost(reason)


def _describe_exit(value):
    signum = getattr(value, "signal", None)
    if signum is not None:
        return "killed by signal %d" % signum
    return "exit status %s" % getattr(value, "exitCode", "?")


async def start_session(argv, timeout, hello_name, program="exim"):
    """Run ``argv`` and greet it: a :class:`SmtpSession` whose ``capabilities`` are the EHLO
    reply's. Raises NextHopError (the process is killed) if it cannot be run, does not
    greet with 220 or refuses EHLO, each within ``timeout`` seconds."""
    session = SmtpSession(program, timeout)
    try:
        reactor.spawnProcess(_ChildProtocol(session), argv[0], argv, env=os.environ,
                             childFDs={0: "w", 1: "r", 2: "r"})
    except OSError as e:
        raise CannotRun("cannot run %s: %s" % (argv[0], e.strerror or e))
    try:
        greeting = await session.reply()
        if greeting.code != 220:
            raise NextHopError("%s greets with %s" % (program, greeting))
        reply = await session.command("EHLO %s" % hello_name)
        if reply.code != 250:
            raise NextHopError("%s refused EHLO: %s" % (program, reply))
    except BaseException:
        session.fail(NextHopError("%s: start failed" % program))
        raise
    session.capabilities = parse_capabilities(reply)
    return session
