"""Running a program as a child process with a time limit (queue/qmail-queue, queue/exim-bsmtp).

The queue plugins hand a message to a program and wait for it to exit; one that hangs must
not hold the message (and the client) for ever. :func:`spawn_with_timeout` starts it with our
environment and, if it has not finished within the time limit, kills it and tells the plugin.
Pair it with :class:`qpsmtpd_tx.childpipe.ChildInput` for the pipes the message goes through.
"""

import os
import signal

from twisted.internet import error, reactor


def spawn_with_timeout(child, argv, child_fds, timeout, done, on_timeout, clock=reactor):
    """Start ``argv[0]`` with arguments ``argv`` for ProcessProtocol ``child``: the process.

    ``child_fds`` is spawnProcess's ``childFDs``. If Deferred ``done`` (the plugin's "it has
    ended") has not fired within ``timeout`` seconds, the process is killed (SIGKILL), our
    ends of its pipes are closed without waiting for them (a process it started may hold
    them open), and ``on_timeout()`` is called. Raises OSError if it cannot be started.
    """
    process = reactor.spawnProcess(child, argv[0], argv, env=dict(os.environ),
                                   childFDs=child_fds)
    timer = clock.callLater(timeout, _timed_out, process, on_timeout)
    done.addBoth(_stop_timer, timer)
    return process


def _timed_out(process, on_timeout):
    try:
        process.signalProcess(signal.SIGKILL)
    except error.ProcessExitedAlready:
        pass
    for fd in list(getattr(process, "pipes", {})):
        process.closeChildFD(fd)
    on_timeout()


def _stop_timer(result, timer):
    if timer.active():
        timer.cancel()
    return result
