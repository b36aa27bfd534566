"""connection_time — log how long each connection lasted.

The clock starts at the first hook of a connection (``pre-connection``; ``connect`` if an
earlier pre-connection plugin decided, so that this one did not run) and stops at the last
(``post-connection``, which runs however the connection ended: QUIT, a refusal, the client
hanging up, a timeout). The line is ``<seconds with three decimals> s.``, e.g.
``... connection_time: 2.417 s.``, logged at LOGINFO.

Arguments: ``[LEVEL]`` or ``[loglevel L]``
  ``LEVEL``        (a single word, the older form) the level to log at: ``0``–``7`` or a
                   name (``LOGNOTICE``, ``NOTICE``).
  ``loglevel L``   the same, or relative: ``+N`` logs N levels less severe (less logging at
                   a given ``loglevel`` threshold), ``-N`` N levels more severe.
E.g. ``connection_time LOGNOTICE`` logs the durations even with the core ``loglevel`` at 5.
Anything else stops start-up.

Config files: none.

Notes: keeps the start time in the connection note ``connection_time_start`` (seconds, from
the reactor's clock).

Replies: none (the plugin always declines).

Differences from qpsmtpd 0.94, on purpose: bad arguments stop start-up (0.94 logged an error;
an unknown level name there meant LOGINFO).
"""

from qpsmtpd_tx import codes
from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGERROR, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError

NOTE = "connection_time_start"


def parse_level(value):
    """``("abs", level)`` or ``("rel", delta)`` for a level argument; PluginError if bad."""
    if value[:1] in "+-" and value[1:].isdigit():
        return "rel", int(value)
    try:
        return "abs", codes.parse_log_level(value)
    except ValueError:
        raise PluginError("bad log level %r (0-7, a name such as LOGINFO, or +N / -N)" % (value,))


class ConnectionTime(Plugin):
    """Record the start at pre-connection/connect; log the duration at post-connection."""

    #: the IReactorTime whose ``seconds()`` is read (tests give a Clock); None means the reactor
    clock = None

    def init(self, args):
        # The level is applied here, not by the base class: the base's ``loglevel`` filters
        # lines, while this plugin's level says at which level its line is logged.
        self.level = None
        if len(args) == 1:
            rule = parse_level(args[0])
            if rule[0] != "abs":
                raise PluginError("a single argument must be a log level, got %r" % (args[0],))
            self.level = rule
        elif len(args) == 2 and args[0] == "loglevel":
            self.level = parse_level(args[1])
        elif args:
            raise PluginError("usage: connection_time [LEVEL | loglevel L], got %r"
                              % (" ".join(args),))

    def _level(self, level):
        if self.level is None:
            return level
        kind, value = self.level
        if kind == "abs":
            return value
        return max(codes.LOGEMERG, min(codes.LOGDEBUG, level + value))

    def _now(self):
        if self.clock is None:
            from twisted.internet import reactor
            return reactor.seconds()
        return self.clock.seconds()

    def hook_pre_connection(self, transaction, *args):
        return self._start(transaction)

    def hook_connect(self, transaction):
        if NOTE in transaction.connection.notes:
            return DECLINED
        return self._start(transaction)

    def _start(self, transaction):
        start = transaction.connection.notes[NOTE] = self._now()
        self.log(self._level(LOGDEBUG), "started at %.3f" % start, transaction)
        return DECLINED

    def hook_post_connection(self, transaction):
        start = transaction.connection.notes.get(NOTE)
        if start is None:
            self.log(self._level(LOGERROR), "Start time not set?!", transaction)
            return DECLINED
        self.log(self._level(LOGINFO), "%.3f s." % (self._now() - start), transaction)
        return DECLINED
