"""loadcheck — refuse connections while the system's load average is too high.

At connect, the 1-minute load average is compared with ``max_load``; above it, the client
gets ``450 Server load too high, please try again later.`` and is disconnected (qpsmtpd
0.94's DENYSOFT at connect). A measured value is kept for ``cache_time`` seconds.

The load is read from ``/proc/loadavg`` (Linux; a small kernel file, read at once without
waiting on a disk) or ``/kern/loadavg`` (some BSDs; the first value divided by the fourth,
its scale). When neither is readable at start-up, the ``uptime`` program is run instead (as
a child process: the server goes on meanwhile), and its ``load average: N.NN`` is used. When
no method works at start-up, an error is logged and the plugin does nothing, as 0.94's.

Arguments (``key value`` pairs, all optional):
  ``max_load N``      the highest 1-minute load that still accepts connections (default 7).
  ``cache_time S``    seconds a measured load is used before it is measured again (default 10).
  ``uptime PATH``     the uptime program (default ``/usr/bin/uptime``).
  ``loadavg PATH``    (qpsmtpd-tx addition) the load file to read instead of ``/proc/loadavg``
                      (a chroot's copy, or a test's).
As in 0.94, ``0`` or an empty value means the default. A value that is not a number stops
start-up.

Config files: none. Notes: none.

Replies: ``450 Server load too high, please try again later.`` at connect, then the
connection is closed. The connect hook otherwise declines, logging the load at LOGDEBUG.

Intended differences from 0.94: Perl's ``BSD::getloadavg`` is not used (the files above
give the same numbers); ``uptime`` does not hold up the server; bad values stop start-up.
"""

import os

from twisted.internet import reactor

from qpsmtpd_tx.codes import DECLINED, DENYSOFT, LOGDEBUG, LOGERROR, LOGWARN
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.program_output import ProgramFailed, program_output

DEFAULTS = {"max_load": 7.0, "cache_time": 10.0, "uptime": "/usr/bin/uptime"}
LINUX_LOADAVG = "/proc/loadavg"
BSD_LOADAVG = "/kern/loadavg"
UPTIME_TIMEOUT = 10
REFUSAL = "Server load too high, please try again later."


def parse_loadavg(text, scaled=False):
    """The 1-minute load from a loadavg file's text (``scaled``: BSD's fixed-point form,
    ``N N N SCALE``); ValueError if it is not there."""
    fields = text.split()
    if scaled:
        return float(fields[0]) / float(fields[3])
    return float(fields[0])


def parse_uptime(text):
    """The 1-minute load from uptime's output (``... load average: 0.05, 0.05, 0.06`` or
    BSD's ``load averages: 6.55, 3.76, 2.48``); ValueError if it is not there."""
    marker = text.find("aver")
    if marker < 0:
        raise ValueError("no load average in %r" % (text,))
    rest = text[marker:].split(":", 1)[1].split(",")[0]
    return float(rest.strip())


def _number(name, value):
    try:
        number = float(value)
    except ValueError:
        raise PluginError("%s must be a number, got %r" % (name, value))
    if not 0 <= number < float("inf"):
        raise PluginError("%s must be a number of at least 0, got %r" % (name, value))
    return number


class LoadCheck(Plugin):
    """DENYSOFT at connect while the load average is above ``max_load``."""

    clock = reactor

    def init(self, args):
        options = self.parse_kv_args(args, ("max_load", "cache_time", "uptime", "loadavg"))
        self.max_load = _number("max_load", options.get("max_load") or "0") or DEFAULTS["max_load"]
        self.cache_time = (_number("cache_time", options.get("cache_time") or "0")
                           or DEFAULTS["cache_time"])
        self.uptime = options.get("uptime") or DEFAULTS["uptime"]
        self.load = None
        self.measured_at = None
        self.method = self._choose_method(options.get("loadavg"))
        if self.method is None:
            self.log(LOGERROR, "unable to acquire system load")

    def _choose_method(self, loadavg):
        if loadavg is not None:
            return lambda: self._read_file(loadavg, False)
        for path, scaled in ((LINUX_LOADAVG, False), (BSD_LOADAVG, True)):
            if os.access(path, os.R_OK):
                return lambda: self._read_file(path, scaled)
        if os.access(self.uptime, os.X_OK):
            return self._run_uptime
        return None

    def _read_file(self, path, scaled):
        with open(path) as f:
            return parse_loadavg(f.read(), scaled)

    async def _run_uptime(self):
        output = await program_output([self.uptime], UPTIME_TIMEOUT)
        return parse_uptime(output.decode("ascii", "replace"))

    async def measure(self, transaction=None):
        """The load average, measured again when the cached value is older than cache_time;
        None if it cannot be measured."""
        now = self.clock.seconds()
        if self.measured_at is not None and now <= self.measured_at + self.cache_time:
            return self.load
        try:
            load = self.method()
            if not isinstance(load, float):
                load = await load
        except (OSError, ValueError, IndexError, ZeroDivisionError, ProgramFailed) as e:
            self.log(LOGWARN, "cannot measure the load: %s" % (e,), transaction)
            return self.load
        self.load, self.measured_at = load, now
        self.log(LOGDEBUG, "load average %.2f" % (load,), transaction)
        return load

    async def hook_connect(self, transaction):
        if self.method is None:
            return DECLINED
        load = await self.measure(transaction)
        if load is not None and load > self.max_load:
            self.log(LOGERROR, "local load too high: %.2f" % (load,), transaction)
            return DENYSOFT, REFUSAL
        return DECLINED
