"""Idle timeouts of many connections with one timer: each connection notes when it last heard
from its client, and one call a second closes those silent for longer than their limit.

A timer per connection (Twisted's ``TimeoutMixin``) costs a ``DelayedCall`` at connect, a
``reset`` at every read and a ``cancel`` at close, and the reactor's heap of timers grows and
is rebuilt with them; that was a tenth of a short connection's CPU. The price of sharing: a
connection is closed within a second after its limit, not at it.
"""

from twisted.logger import Logger

log = Logger(namespace="qpsmtpd_tx.idle")


class IdleSweeper:
    """The connections (``members``) of one clock whose idle time is watched.

    A member has ``idle_since`` (the clock's time of its client's last bytes; the member
    keeps it up to date), ``idle_limit()`` (seconds; 0 or None: no limit) and
    ``idle_expired()``, called once it has been silent that long: it returns True when it is
    done (it is then forgotten), False to be looked at again a full limit later (it was busy,
    not idle); an exception is logged and counts as False. ``clock`` is the reactor, or a
    test's ``Clock``.
    """

    #: seconds between two looks at the members
    interval = 1.0

    def __init__(self, clock):
        self.clock = clock
        self._members = {}      # insertion-ordered set
        self._call = None

    def __len__(self):
        return len(self._members)

    def add(self, member):
        """Watch ``member`` from now on (its ``idle_since`` is set to now)."""
        member.idle_since = self.clock.seconds()
        self._members[member] = None
        if self._call is None:
            self._call = self.clock.callLater(self.interval, self._sweep)

    def discard(self, member):
        """Stop watching ``member`` (its connection is gone); the timer stops with the last one."""
        if self._members.pop(member, 0) is None and not self._members and self._call is not None:
            self._call.cancel()
            self._call = None

    def _sweep(self):
        self._call = None
        now = self.clock.seconds()
        expired = []
        for member in self._members:
            limit = member.idle_limit()
            if limit and now - member.idle_since >= limit:
                expired.append(member)
        for member in expired:
            if member not in self._members:
                continue        # gone meanwhile (an earlier one's close took it along)
            try:
                done = member.idle_expired()
            except Exception:
                # one connection's failure must not end the idle timeouts of all the others
                log.failure("idle timeout of {member!r}", member=member)
                done = False
            if done:
                self._members.pop(member, None)
            else:
                member.idle_since = now
        if self._members:
            self._call = self.clock.callLater(self.interval, self._sweep)
