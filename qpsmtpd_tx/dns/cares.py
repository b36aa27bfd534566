"""c-ares (through pycares) driven by the Twisted reactor: no thread.

c-ares tells us which of its sockets to watch (``sock_state_cb``); the reactor watches them and
calls back into c-ares when one is ready, and a reactor timer runs c-ares' retries and
timeouts. pycares 5 would otherwise start an event thread of its own.
"""

import pycares
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from zope.interface import implementer

#: c-ares' ARES_OPT_MAXTIMEOUTMS and ARES_OPT_QUERY_CACHE option bits, which pycares 5.2 does
#: not export
_ARES_OPT_MAXTIMEOUTMS = 1 << 20
_ARES_OPT_QUERY_CACHE = 1 << 21
_NO_SOCKET = pycares.ARES_SOCKET_BAD


class _CacheOffLibrary:
    """pycares' C library as seen by ``pycares.Channel()`` while :func:`_channel_without_cache`
    runs: the channel is created with c-ares' own answer cache off (and, with ``max_timeout``,
    c-ares' cap on the time of one try raised to it: c-ares adapts each try's timeout to the
    server's latency within a cap of 5 s, which would cut a longer ``dns_timeout`` short).

    c-ares (≥ 1.31) caches every answer, negative ones included, for up to an hour, with no
    bound on the number of entries: a client that makes us ask for endless distinct names
    (HELO or sender domains under its own zone) would grow that cache without limit. Our
    bounded cache (:mod:`qpsmtpd_tx.dns.cache`) replaces it.
    """

    def __init__(self, lib, max_timeout=None):
        self._lib = lib
        self.max_timeout = max_timeout

    def __getattr__(self, name):
        return getattr(self._lib, name)

    def ares_init_options(self, channel, options, optmask):
        """c-ares' ares_init_options, with the query cache's largest TTL set to 0 (off)."""
        options.qcache_max_ttl = 0
        optmask |= _ARES_OPT_QUERY_CACHE
        if self.max_timeout:
            options.maxtimeout = int(self.max_timeout * 1000)
            optmask |= _ARES_OPT_MAXTIMEOUTMS
        return self._lib.ares_init_options(channel, options, optmask)


def _channel_without_cache(max_timeout=None, **options):
    """A ``pycares.Channel(**options)`` whose c-ares answer cache is off; ``max_timeout``
    (seconds) raises c-ares' cap on one try."""
    library = pycares._lib
    pycares._lib = _CacheOffLibrary(library, max_timeout)
    try:
        return pycares.Channel(**options)
    finally:
        pycares._lib = library


@implementer(IReadDescriptor, IWriteDescriptor)
class _WatchedSocket:
    """One socket of c-ares, as the reactor watches it."""

    def __init__(self, channel, fd):
        self.channel = channel
        self.fd = fd

    def fileno(self):
        """The socket's file descriptor."""
        return self.fd

    def doRead(self):
        """The socket is readable: let c-ares read it."""
        self.channel.process(self.fd, _NO_SOCKET)

    def doWrite(self):
        """The socket is writable: let c-ares write to it."""
        self.channel.process(_NO_SOCKET, self.fd)

    def connectionLost(self, reason):
        """c-ares closes its own sockets; nothing to do."""

    def logPrefix(self):
        """How the reactor names this socket in its log."""
        return "c-ares"


class ReactorChannel:
    """A c-ares channel whose sockets and timers run on ``reactor``.

    ``servers``: ``["IP", "IP:port", "[IPv6]:port"]`` instead of ``/etc/resolv.conf``'s (which
    c-ares reads otherwise, with its ``options timeout:`` and ``attempts:``); ``timeout``
    (seconds per try) and ``tries`` override resolv.conf's when given. EDNS0 is on, so large
    TXT answers come over UDP; a truncated answer is asked again over TCP.
    """

    def __init__(self, reactor, servers=None, timeout=None, tries=None, resolvconf_path=None):
        self.reactor = reactor
        #: seconds per try and tries, when given (else resolv.conf's or c-ares' defaults)
        self.timeout, self.tries = timeout, tries
        self._sockets = {}
        self._closed = False
        self._timer = None
        self._pending = 0
        options = dict(flags=pycares.ARES_FLAG_EDNS | pycares.ARES_FLAG_NOSEARCH,
                       sock_state_cb=self._socket_state)
        if timeout:
            options["timeout"] = timeout
        if tries:
            options["tries"] = tries
        if resolvconf_path:
            options["resolvconf_path"] = resolvconf_path
        self._channel = _channel_without_cache(max_timeout=timeout, **options)
        if servers:
            self._channel.servers = list(servers)

    @property
    def servers(self):
        """The name servers c-ares asks, as ``IP:port`` strings."""
        return list(self._channel.servers)

    def query(self, name, query_type, callback):
        """Ask for ``name`` (a ``pycares.QUERY_TYPE_*``); ``callback(result, error)`` follows."""

        def done(result, error):
            self._pending -= 1
            callback(result, error)

        self._pending += 1
        try:
            self._channel.query(name, query_type, callback=done)
        except Exception:
            self._pending -= 1
            raise
        self._schedule()

    def process(self, read_fd, write_fd):
        """Let c-ares handle a ready socket (or, with neither, its timeouts). Once closed:
        nothing (the reactor may still call a socket in the turn that closed us: doWrite
        after the doRead whose answer ended in the close)."""
        if self._closed:
            return
        self._channel.process_fd(read_fd, write_fd)
        self._schedule()

    def close(self):
        """Cancel every query (their callbacks see an error) and close the sockets. Once is
        enough: later calls do nothing."""
        if self._closed:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._channel.cancel()
        for fd in list(self._sockets):
            self._socket_state(fd, False, False)
        # c-ares may still report sockets (going on after the callback that closed us, or
        # destroying the channel in pycares' thread): from now on they are none of ours
        self._closed = True
        self._channel.close()

    def _socket_state(self, fd, readable, writable):
        if self._closed:
            return
        watched = self._sockets.get(fd)
        if watched is None:
            if not (readable or writable):
                return
            watched = self._sockets[fd] = _WatchedSocket(self, fd)
        if readable:
            self.reactor.addReader(watched)
        else:
            self.reactor.removeReader(watched)
        if writable:
            self.reactor.addWriter(watched)
        else:
            self.reactor.removeWriter(watched)
        if not (readable or writable):
            del self._sockets[fd]

    def _schedule(self):
        """Run c-ares' timeouts when the next one is due (while queries are pending)."""
        active = self._timer is not None and self._timer.active()
        if self._pending <= 0 or self._closed:
            if active:
                self._timer.cancel()
            self._timer = None
            return
        delay = max(self._channel.timeout(), 0.001)
        if active:
            self._timer.reset(delay)
        else:
            self._timer = self.reactor.callLater(delay, self._on_timer)

    def _on_timer(self):
        self._timer = None
        self.process(_NO_SOCKET, _NO_SOCKET)
