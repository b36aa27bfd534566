"""The process's DNS resolver: Deferred lookups on c-ares, merged in flight, cached by TTL.

One :class:`Resolver` serves the whole process (the core's PTR lookup and every plugin). A
lookup gives an :class:`Answer` or fails with one of :mod:`qpsmtpd_tx.dns.errors`.
"""

import attr
import pycares
from twisted.internet import defer

from qpsmtpd_tx.dns.cache import TTLCache
from qpsmtpd_tx.dns.cares import ReactorChannel
from qpsmtpd_tx.dns.lookups import Lookups
from qpsmtpd_tx.dns import other_names
from qpsmtpd_tx.dns.errors import BadName, DNSError, DNSTimeout, NoData, NXDomain, ServFail
from qpsmtpd_tx.small_cache import small_cache

#: record types a plugin may ask for
QUERY_TYPES = {
    "A": pycares.QUERY_TYPE_A,
    "AAAA": pycares.QUERY_TYPE_AAAA,
    "MX": pycares.QUERY_TYPE_MX,
    "TXT": pycares.QUERY_TYPE_TXT,
    "PTR": pycares.QUERY_TYPE_PTR,
    "CNAME": pycares.QUERY_TYPE_CNAME,
    "NS": pycares.QUERY_TYPE_NS,
}
#: how long "no such name" and "no such record" are remembered (c-ares does not give us the
#: zone's SOA minimum with a negative answer)
NEGATIVE_TTL = 60
#: how long a server failure (SERVFAIL, REFUSED, an unusable answer) is remembered: long
#: enough that a burst of clients naming a broken domain (a HELO name, a sender domain) costs
#: one query, short enough that a passing failure soon ends (RFC 2308 allows up to 5 min)
SERVER_FAILURE_TTL = 5
#: answers are not kept longer than this, whatever their TTL
MAX_TTL = 3600
#: the default bound on cached outcomes
DEFAULT_CACHE_SIZE = 10000

_ERRORS = {
    pycares.errno.ARES_ENOTFOUND: NXDomain,
    pycares.errno.ARES_ENODATA: NoData,
    pycares.errno.ARES_ETIMEOUT: DNSTimeout,
    pycares.errno.ARES_EBADNAME: BadName,
}


@attr.s(frozen=True)
class Answer:
    """The records of one lookup: ``name``, ``rrtype``, ``records`` and ``ttl`` (the lowest).

    Records are ``str`` for A, AAAA, PTR, CNAME, NS (addresses as text, names without the
    final dot) and TXT (a record's strings joined, as RFC 7208 and DNS lists read them), and
    ``(priority, exchange)`` for MX.
    """

    name = attr.ib()
    rrtype = attr.ib()
    records = attr.ib(converter=tuple)
    ttl = attr.ib()


def _record_value(rrtype, data):
    if rrtype in ("A", "AAAA"):
        return data.addr
    if rrtype == "MX":
        return (data.priority, data.exchange.rstrip("."))
    if rrtype == "TXT":
        return data.data.decode("utf-8", "replace") if isinstance(data.data, bytes) else data.data
    if rrtype == "PTR":
        return data.dname.rstrip(".")
    if rrtype == "CNAME":
        return data.cname.rstrip(".")
    if rrtype == "NS":
        return data.nsdname.rstrip(".")
    raise ValueError(rrtype)


def _answer(name, rrtype, result):
    """The :class:`Answer` in a pycares result, or the error for one without such records."""
    wanted = QUERY_TYPES[rrtype]
    records = [r for r in result.answer if r.type == wanted]
    if not records:
        return NoData(name, rrtype)
    return Answer(name, rrtype, [_record_value(rrtype, r.data) for r in records],
                  min(r.ttl for r in records))


def _normalise(name):
    """``name`` as asked and cached: lower case, no final dot; BadName if it cannot be asked."""
    if not isinstance(name, str):
        raise BadName(repr(name), "?")
    return _normalise_text(name)


@small_cache(4096, 300)
def _normalise_text(name):
    """:func:`_normalise` of a str, remembered for the last few thousand names (the same few
    are asked again and again: a client's PTR name at each connection, a DNS list's zone...);
    a BadName is raised again each time. A name of more than 300 characters as given (a valid
    one has at most 253 once its white space and final dots are gone) is not remembered: a
    message's DKIM-Signature with ``d=example.com`` and 200,000 dots asked for a valid key
    name, and 4,096 such names would have been kept whole."""
    text = name.strip().rstrip(".").lower()
    try:
        text = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError:
        raise BadName(name, "?", "not convertible to IDNA")
    if not text or len(text) > 253 or any(not 0 < len(label) <= 63 for label in text.split(".")):
        raise BadName(name, "?")
    return text


class Resolver(Lookups):
    """Asynchronous DNS lookups for the whole process.

    ``channel``: a :class:`~qpsmtpd_tx.dns.cares.ReactorChannel` (or anything with its
    ``query``/``close``); ``cache_size``: outcomes kept (0: none). Identical lookups in
    flight share one query. Answers are cached for their TTL (at most :data:`MAX_TTL`),
    NXDOMAIN and NODATA for :data:`NEGATIVE_TTL`, server failures for
    :data:`SERVER_FAILURE_TTL`; timeouts are not cached.
    """

    #: true once :meth:`close` has been called
    closed = False

    def __init__(self, channel, clock, cache_size=DEFAULT_CACHE_SIZE):
        self.channel = channel
        self.clock = clock
        self.cache = TTLCache(cache_size, clock)
        self._in_flight = {}
        self._other = None
        #: counts for operators and benchmarks: queries sent, answered from the cache, merged
        self.stats = {"queries": 0, "cached": 0, "merged": 0}

    @classmethod
    def from_settings(cls, reactor, servers=(), timeout=None, tries=None,
                      cache_size=DEFAULT_CACHE_SIZE):
        """A resolver asking ``servers`` (default: ``/etc/resolv.conf``'s) on ``reactor``."""
        channel = ReactorChannel(reactor, servers=list(servers) or None, timeout=timeout,
                                 tries=tries)
        return cls(channel, reactor, cache_size)

    def lookup(self, name, rrtype, timeout=None):
        """A Deferred firing with the :class:`Answer` for ``name``/``rrtype``, or failing with
        a :class:`~qpsmtpd_tx.dns.errors.DNSError`; ``timeout`` (seconds) bounds this caller's
        wait (the query itself goes on for others asking the same)."""
        rrtype = rrtype.upper()
        try:
            key = (_normalise(name), rrtype)
        except BadName as e:
            return defer.fail(BadName(name, rrtype, e.detail))
        if rrtype not in QUERY_TYPES:
            raise ValueError("unsupported record type %r" % (rrtype,))
        cached = self.cache.get(key)
        if cached is not None:
            self.stats["cached"] += 1
            return defer.succeed(cached) if isinstance(cached, Answer) else defer.fail(cached)
        waiters = self._in_flight.get(key)
        first = waiters is None
        if first:
            waiters = self._in_flight[key] = []
        else:
            self.stats["merged"] += 1
        d = defer.Deferred(lambda d: waiters.remove(d) if d in waiters else None)
        waiters.append(d)
        if first:
            self._send(key)     # c-ares may answer at once (a bad name): d is already waiting
        if d.called:
            return d
        if timeout is not None:
            d.addTimeout(timeout, self.clock,
                         onTimeoutCancel=lambda result, t: _timeout_failure(key, t))
        return d

    def cached(self, name, rrtype):
        """What :meth:`lookup` would give at once from the cache: the :class:`Answer`, or the
        :class:`~qpsmtpd_tx.dns.errors.DNSError` it would fail with; None when the cache does
        not hold it (or ``name`` cannot be asked). A hit counts as answered from the cache.

        For a caller that goes on at once when it can: no Deferred and no Failure are made.
        """
        try:
            key = (_normalise(name), rrtype.upper())
        except BadName:
            return None
        outcome = self.cache.get(key)
        if outcome is not None:
            self.stats["cached"] += 1
        return outcome

    def _send(self, key):
        name, rrtype = key

        def done(result, error):
            self._deliver(key, self._outcome(key, result, error))

        self.stats["queries"] += 1
        if other_names.needed(name) and self._other_names() is not None:
            self._ask_other_way(key)
            return
        try:
            self.channel.query(name, QUERY_TYPES[rrtype], done)
        except Exception as e:
            self.clock.callLater(0, done, None, e)

    def _deliver(self, key, outcome):
        for d in self._in_flight.pop(key, []):
            if isinstance(outcome, Answer):
                d.callback(outcome)
            else:
                d.errback(outcome)

    def _other_names(self):
        """The Twisted client for names c-ares will not ask (:mod:`other_names`), made at
        first use for the servers c-ares asks; None for a channel without servers (a test
        stand-in)."""
        if self._other is None:
            servers = getattr(self.channel, "servers", None)
            if not servers:
                return None
            self._other = other_names.OtherNames(
                self.channel.reactor, servers, getattr(self.channel, "timeout", None),
                getattr(self.channel, "tries", None))
        return self._other

    def _ask_other_way(self, key):
        name, rrtype = key
        d = self._other.query(name, rrtype)
        d.addCallbacks(lambda found: Answer(name, rrtype, found[0], found[1]),
                       lambda failure: _dns_error(failure, name, rrtype))
        d.addCallback(lambda outcome: self._deliver(key, self._kept(key, outcome)))

    def _outcome(self, key, result, error):
        name, rrtype = key
        if error is None and result is not None:
            outcome = _answer(name, rrtype, result)
        elif isinstance(error, Exception):
            outcome = ServFail(name, rrtype, str(error))
        else:
            error_class = _ERRORS.get(error, ServFail)
            outcome = error_class(name, rrtype, pycares.errno.errorcode.get(error, error))
        return self._kept(key, outcome)

    def _kept(self, key, outcome):
        """``outcome`` (an Answer or a DNSError), put in the cache for as long as it may
        be kept."""
        if isinstance(outcome, Answer):
            self.cache.put(key, outcome, min(outcome.ttl, MAX_TTL))
        elif outcome.definite:
            self.cache.put(key, outcome, NEGATIVE_TTL)
        elif isinstance(outcome, ServFail):
            self.cache.put(key, outcome, SERVER_FAILURE_TTL)
        return outcome

    def close(self):
        """Stop: pending lookups fail, sockets close."""
        self.closed = True
        self.channel.close()


def _dns_error(failure, name, rrtype):
    """A failed lookup's DNSError (anything else counts as a server failure)."""
    if isinstance(failure.value, DNSError):
        return failure.value
    return ServFail(name, rrtype, failure.getErrorMessage())


def _timeout_failure(key, seconds):
    name, rrtype = key
    raise DNSTimeout(name, rrtype, "no answer in %g s" % seconds)
