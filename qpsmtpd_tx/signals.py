"""Signal handlers that keep the handler installed before them (a plugin's, twistd's)."""

import signal

from twisted.internet import reactor


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

