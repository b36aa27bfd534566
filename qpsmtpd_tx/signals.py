"""Signal handlers that keep the handler installed before them (a plugin's, twistd's)."""

import signal

from twisted.internet import reactor
from twisted.internet.error import ReactorNotRunning


def chain_signal(signum, callback):
    """On ``signum``, call ``callback()`` in the reactor thread, then the earlier Python handler.

    Python runs handlers between bytecodes of the main thread; ``callFromThread`` moves the
    work to the reactor loop, where it cannot interrupt a write half-way.
    """
    previous = signal.getsignal(signum)

    def handler(number, frame):
        reactor.callFromThread(callback)
        if callable(previous):
            previous(number, frame)

    signal.signal(signum, handler)


def stop_reactor():
    """Stop the reactor unless it is already stopping (a second SIGTERM during the drain)."""
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


def stop_on_sigterm():
    """SIGTERM stops the reactor (the services then drain) without twistd's exit by the signal.

    twistd's own handler makes the process end by SIGTERM again once stopped; a drained
    server has finished its work, so it exits 0. Call once the reactor runs (twistd installs
    its handlers at start-up and would replace this one).
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: reactor.callFromThread(stop_reactor))
