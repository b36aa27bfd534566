"""A test daemon started once per test run, at its first use, and stopped when the run ends."""

import atexit

from twisted.trial.unittest import SkipTest


class SharedDaemon:
    """Wraps ``start()`` (which returns an object with ``process``, ``stop()`` and ``log()``):
    ``get()`` starts it the first time, remembers a SkipTest so later tests skip at once, and
    fails clearly if the daemon died meanwhile."""

    def __init__(self, name, start):
        self.name = name
        self.start = start
        self.daemon = None
        self.skip = None

    def get(self):
        """The running daemon of this test run."""
        if self.skip is not None:
            raise SkipTest(self.skip)
        if self.daemon is None:
            try:
                self.daemon = self.start()
            except SkipTest as e:
                self.skip = str(e)
                raise
            atexit.register(self.daemon.stop)
        if self.daemon.process.poll() is not None:
            raise RuntimeError("the shared %s exited (status %s):\n%s"
                               % (self.name, self.daemon.process.returncode, self.daemon.log()))
        return self.daemon
