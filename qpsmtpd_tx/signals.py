"""Signal handlers that keep the handler installed before them (a plugin's, twistd's), and one
process-wide SIGHUP dispatcher for objects that want to hear of SIGHUP while they live."""

import signal
import weakref

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

    handler.previous = previous
    signal.signal(signum, handler)


#: the objects' methods :func:`on_sighup` calls, weakly held
_sighup_listeners = []


def _dispatch_sighup(signum, frame):
    for ref in list(_sighup_listeners):
        method = ref()
        if method is None:
            _sighup_listeners.remove(ref)
        else:
            method()
    previous = _dispatch_sighup.previous
    if callable(previous):
        previous(signum, frame)


_dispatch_sighup.previous = None


def _in_chain(handler, wanted):
    """True if ``wanted`` is ``handler`` or a handler it chains to (through ``previous``)."""
    while handler is not None:
        if handler is wanted:
            return True
        handler = getattr(handler, "previous", None)
    return False


def on_sighup(method):
    """Call ``method()`` on every SIGHUP for as long as its object lives; returns a function
    that stops it.

    ``method`` runs inside the signal handler, between two bytecodes of whatever the process
    was doing: it may only set a flag. One handler serves every listener (installed once,
    chained to the handler before it), so an object made at each reload adds no handler, and
    a replaced object is not kept alive by one. Raises ValueError outside the main thread.
    """
    current = signal.getsignal(signal.SIGHUP)
    if not _in_chain(current, _dispatch_sighup):
        _dispatch_sighup.previous = current
        signal.signal(signal.SIGHUP, _dispatch_sighup)
    ref = weakref.WeakMethod(method) if hasattr(method, "__self__") else weakref.ref(method)
    _sighup_listeners.append(ref)

    def stop():
        if ref in _sighup_listeners:
            _sighup_listeners.remove(ref)

    return stop


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


class SighupFlag:
    """A flag each SIGHUP raises, for a log writer that reopens its file at its next line
    (the signal may come in the middle of a write, so the handler does nothing else).

    ``warn(text)`` is told when no handler can be installed (no SIGHUP on this platform, or
    not in the main thread); the flag then never rises.
    """

    def __init__(self, warn):
        self.raised = False
        try:
            self._stop = on_sighup(self._raise)
        except (AttributeError, ValueError, OSError) as e:
            self._stop = None
            warn("cannot install a SIGHUP handler (%s); no reopen on HUP" % (e,))

    def _raise(self):
        self.raised = True

    def take(self):
        """True once after each SIGHUP (the flag is lowered)."""
        raised, self.raised = self.raised, False
        return raised

    def stop(self):
        """Stop listening for SIGHUP."""
        if self._stop is not None:
            self._stop()
            self._stop = None
