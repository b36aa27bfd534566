"""A test daemon started once per test run, at its first use, and stopped when the run ends."""

import atexit

from twisted.trial.unittest import SkipTest


class SharedDaemon:
    """Wraps ``start(*args)`` (which returns an object with ``process``, ``stop()`` and
    ``log()``): ``get(*args)`` starts it the first time (later calls return the same daemon,
    whatever they pass), remembers a failed start so that later tests fail or skip at once
    the same way, and fails clearly if the daemon died meanwhile. With ``skip_on_failure``, a
    start that fails skips the tests (saying why) instead of failing them."""

    def __init__(self, name, start, skip_on_failure=False):
        self.name = name
        self.start = start
        self.skip_on_failure = skip_on_failure
        self.daemon = None
        self.error = None
        atexit.register(self.stop)

    def get(self, *args):
        """The running daemon of this test run."""
        if self.error is not None:
            raise self.error
        if self.daemon is None:
            try:
                self.daemon = self.start(*args)
            except SkipTest as e:
                self.error = e
                raise
            except Exception as e:
                self.error = e
                if self.skip_on_failure:
                    self.error = SkipTest("the private %s did not start: %s" % (self.name, e))
                raise self.error
        if self.daemon.process.poll() is not None:
            raise RuntimeError("the shared %s exited (status %s):\n%s"
                               % (self.name, self.daemon.process.returncode,
                                  self.daemon.log()[-4000:]))
        return self.daemon

    def stop(self):
        """Stop the daemon if it was started (by its PID); the next ``get()`` starts anew."""
        daemon, self.daemon = self.daemon, None
        if daemon is not None:
            daemon.stop()
