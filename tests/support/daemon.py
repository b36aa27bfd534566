"""The common shape of the suite's private daemons (clamd, spamd, rspamd, slapd, PostgreSQL,
Dovecot): one process started from a fresh temp directory that holds its config and logs,
stopped by its PID, its directory removed; a start that fails says why, with the daemon's log.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import time

from tests.support.processes import (poll_until, read_text, release_port, stop_process,
                                      wait_for_port)


class PrivateDaemon:
    """A running private daemon: its temp directory ``dir``, ``port`` (127.0.0.1), ``process``
    and ``startup_seconds`` (from the start to accepting connections, once known)."""

    #: its log files, relative to ``dir``, in the order :meth:`log` reads them
    log_files = ()
    #: how :meth:`stop` asks it to stop, and how long it waits before SIGKILL
    stop_signal = signal.SIGTERM
    stop_timeout = 10.0

    def __init__(self, directory, port, process, startup_seconds=None):
        self.dir = directory
        self.port = port
        self.process = process
        self.startup_seconds = startup_seconds

    def log(self):
        """The text of its log files ("" for those not there)."""
        return "".join(read_text(os.path.join(self.dir, name)) for name in self.log_files)

    def stop(self):
        """Stop it by its PID (SIGKILL if it does not exit in time), remove its directory."""
        stop_process(self.process, timeout=self.stop_timeout, sig=self.stop_signal)
        shutil.rmtree(self.dir, True)
        if self.port is not None:
            release_port(self.port)     # if it never listened on its reserve_port


def spawn(argv, directory, output, **popen_kwargs):
    """Start ``argv`` with standard output and error into ``directory/output`` and no standard
    input; returns ``(process, start time)`` (``time.monotonic()``)."""
    with open(os.path.join(directory, output), "wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, **popen_kwargs)
    return process, started


def die_with_parent():
    """A ``preexec_fn`` for :func:`spawn`: the child gets SIGTERM when the test process dies,
    even killed (Linux). (Not for daemons that change their credentials, such as spamd: that
    clears this setting.)"""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def wait_started(daemon, name, ready, started=None):
    """Run ``ready()`` (which raises RuntimeError if ``daemon`` is not up in time); if it fails,
    stop the daemon and raise RuntimeError naming ``name``, with the end of its log. Sets
    ``startup_seconds`` from ``started`` (a ``time.monotonic()``)."""
    try:
        ready()
    except RuntimeError as e:
        text = daemon.log()
        daemon.stop()
        raise RuntimeError("%s did not start: %s\n%s" % (name, e, text[-4000:]))
    if started is not None:
        daemon.startup_seconds = time.monotonic() - started
    return daemon


def listening(daemon, timeout, socket=None, socket_timeout=10.0):
    """A ``ready`` for :func:`wait_started`: ``daemon.port`` accepts connections within
    ``timeout`` seconds, and the unix socket ``socket`` (if given) exists soon after."""
    def ready():
        wait_for_port(daemon.port, daemon.process, timeout=timeout)
        if socket is not None and not poll_until(lambda: os.path.exists(socket), socket_timeout, 0.02):
            raise RuntimeError("no unix socket %s" % socket)
    return ready
