"""A connection's DNS time budget.

However many lookups its plugins make, a connection may spend only so long waiting for DNS
in all (``dns_budget``): a DNS server that never answers costs each connection at most its
budget, and every lookup after that fails at once as a timeout (which plugins treat as "skip,
logged", never as a rejection).
"""

from twisted.internet import defer

from qpsmtpd_tx.dns.lookups import Lookups
from qpsmtpd_tx.dns.errors import DNSTimeout


class DNSBudget(Lookups):
    """The resolver as one connection uses it: same lookups, bounded by the time left.

    ``resolver_source()`` gives the process's :class:`~qpsmtpd_tx.dns.resolver.Resolver`
    (created at the first lookup, so a server without DNS plugins never makes one);
    ``seconds``: the budget (0: none). Time is counted while at least one lookup of the
    connection is outstanding, so lookups in parallel share it rather than each using it up.
    """

    def __init__(self, resolver_source, seconds, clock):
        self._resolver_source = resolver_source
        self.seconds = seconds
        self.clock = clock
        self.spent = 0.0
        self._outstanding = 0
        self._busy_since = None
        self._resolver = None

    @property
    def resolver(self):
        """The process's resolver (asked of ``resolver_source`` again once the one it gave
        is closed: the server then makes a new one)."""
        resolver = self._resolver
        if resolver is None or resolver.closed:
            resolver = self._resolver = self._resolver_source()
        return resolver

    def left(self):
        """Seconds of DNS waiting this connection has left (None: unlimited)."""
        if not self.seconds:
            return None
        spent = self.spent
        if self._busy_since is not None:
            spent += self.clock.seconds() - self._busy_since
        return max(self.seconds - spent, 0.0)

    def lookup(self, name, rrtype, timeout=None):
        """As :meth:`Resolver.lookup`, waiting at most ``timeout`` and the budget left."""
        left = self.left()
        if left is not None:
            if left <= 0:
                return defer.fail(DNSTimeout(name, rrtype.upper(), "the connection's DNS "
                                             "budget of %g s is spent" % self.seconds))
            timeout = left if timeout is None else min(timeout, left)
        d = self.resolver.lookup(name, rrtype, timeout)
        if d.called:
            return d
        self._started()
        d.addBoth(self._finished)
        return d

    def cached(self, name, rrtype):
        """As :meth:`Resolver.cached`; None once the budget is spent (a lookup would then
        fail as a timeout, which the caller learns from :meth:`lookup`)."""
        # (left() inlined for the DMARC and DKIM records each message asks: while no lookup
        # is outstanding, nothing is left once the time spent reaches the budget)
        seconds = self.seconds
        if seconds and (self.spent >= seconds if self._busy_since is None
                        else self.left() <= 0):
            return None
        return self.resolver.cached(name, rrtype)

    def _started(self):
        if self._outstanding == 0:
            self._busy_since = self.clock.seconds()
        self._outstanding += 1

    def _finished(self, result):
        self._outstanding -= 1
        if self._outstanding == 0 and self._busy_since is not None:
            self.spent += self.clock.seconds() - self._busy_since
            self._busy_since = None
        return result

