"""http_config — take config items from HTTP servers, falling back to the config files.

Put it near the top of ``plugins``: only lookups made after it is loaded go through it.

Arguments: ``[refresh S] [timeout S] [preload NAME,NAME…] URL [URL…]``
  ``URL``              an ``http://`` or ``https://`` prefix; config item ``X`` is fetched from
                       the prefix with ``X`` appended, e.g. ``http://cfg.example/qp/`` gives
                       ``http://cfg.example/qp/rcpthosts``, ``http://cfg.example/cgi?config=``
                       gives ``…?config=rcpthosts``. Several prefixes are tried in order.
  ``preload LIST``     comma-separated item names fetched at start-up, before anybody asks.
  ``refresh S``        fetch every known item again every S seconds (fractions allowed);
                       ``0`` never. Default 300.
  ``timeout S``        give up on one URL after S seconds. Default 10.
  ``loglevel L``       per-plugin log level (``6``, ``LOGINFO``, ``+1``, ``-2``).

A response is used when its status is 200 and, after dropping blank lines and lines starting
with ``#``, it holds at least one line; each line is trimmed, as in a config file (no
``$include``). A 404 (or any 200 with nothing in it) passes to the next URL; when no URL has
the item, the config file is used.

Design — config lookups in qpsmtpd-tx are synchronous (a plugin asks and uses the answer at
once), while HTTP is not, so this plugin never waits for the network when asked:
  - it answers ``config`` lookups from its cache only: ``(OK, lines)`` for an item it has
    fetched, DECLINED otherwise (the config file is then read, as without the plugin);
  - items fill the cache in the background: the ``preload`` names as soon as the reactor
    runs (start-up), and any other item the first time somebody asks for it (that first
    lookup gets the file);
  - when a fetch brings new values for an item, or shows that it is gone, the server's cached
    copy of that item is dropped, so the next lookup sees the change;
  - every ``refresh`` seconds each item asked for so far (and each ``preload`` name) is
    fetched again; one refresh round waits for the previous one to finish;
  - a failed fetch (server down, timeout, a status other than 200 and 404, an answer longer
    than 16 MiB) is logged at LOGERROR with the URL and the reason; the item keeps its last
    fetched values if it had any (a short outage changes nothing), otherwise the file is used.
Consequence: a plugin that reads an item in its ``init`` (loaded right after http_config,
before the reactor runs) gets the file's value, unless the item was already fetched; items
read per connection or per message (e.g. ``smtpgreeting``) follow the HTTP server within one
refresh interval. ``preload`` makes the first connections see the HTTP values.

Config files: none of its own; it supplies the others. Notes: none. Replies: none.

Differences from qpsmtpd 0.94, on purpose: qpsmtpd fetched every item on every lookup,
blocking the server, without cache or timeout (its documentation lists the missing cache as
a bug); lines are trimmed here and a line ``0`` is kept (qpsmtpd dropped it); the options
``preload``, ``refresh`` and ``timeout`` are new; no URL, a word that is not an option or an
``http(s)://`` URL, or a bad number stop start-up.
"""

import re
from urllib.parse import quote

import treq
from twisted.internet import defer, task
from twisted.web.client import HTTPConnectionPool

from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGERROR, LOGINFO, OK
from qpsmtpd_tx.http_answer import bounded_agent, too_long
from qpsmtpd_tx.plugin import Plugin, PluginError

DEFAULT_REFRESH = 300.0
DEFAULT_TIMEOUT = 10.0
#: the most bytes of one answer we read (HTTP header and body): a config item of 16 MiB is
#: far beyond any list a server reads at each message
MAX_ANSWER = 16 << 20
USAGE = "usage: http_config [refresh S] [timeout S] [preload NAME,NAME] URL [URL ...]"
_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_LINE_BREAKS = re.compile(r"[\r\n]+")

FOUND, ABSENT, FAILED = "found", "absent", "failed"


def parse_seconds(key, value, allow_zero):
    if not _NUMBER.fullmatch(value) or (not allow_zero and float(value) == 0):
        raise PluginError("%s must be a number of seconds%s, got %r"
                          % (key, "" if allow_zero else " above 0", value))
    return float(value)


def parse_body(body):
    """The config lines of a response body: trimmed, without blank and ``#`` lines."""
    text = body.decode("utf-8", "surrogateescape")
    lines = (line.strip() for line in _LINE_BREAKS.split(text))
    return [line for line in lines if line and not line.startswith("#")]


class HttpConfig(Plugin):
    """Answer config lookups from a cache filled over HTTP in the background."""

    def init(self, args):
        self.urls = []
        options = {}
        args = list(args)
        while args:
            word = args.pop(0)
            if re.match(r"https?://", word, re.I):
                self.urls.append(word)
            elif word in ("refresh", "timeout", "preload", "loglevel"):
                if not args:
                    raise PluginError("%s needs a value; %s" % (word, USAGE))
                value = args.pop(0)
                if word == "loglevel":
                    self.set_loglevel(value)
                else:
                    options[word] = value
            else:
                raise PluginError("%r is neither an option nor an http:// or https:// URL; %s"
                                  % (word, USAGE))
        if not self.urls:
            raise PluginError("no URL given; " + USAGE)
        self.refresh_interval = parse_seconds(
            "refresh", options.get("refresh", str(DEFAULT_REFRESH)), allow_zero=True)
        self.timeout = parse_seconds(
            "timeout", options.get("timeout", str(DEFAULT_TIMEOUT)), allow_zero=False)
        self.preload = [n.strip() for n in options.get("preload", "").split(",") if n.strip()]

        from twisted.internet import reactor
        self.reactor = reactor
        #: item name -> the lines last fetched (only items some URL has)
        self.cache = {}
        #: every item fetched at least once, refreshed on each round
        self.known = set()
        #: item name -> the Deferred of the fetch in flight
        self.pending = {}
        self.fetch_count = 0
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._agent = bounded_agent(reactor, self._pool, MAX_ANSWER)
        self._stopped = False
        self._shutdown_trigger = reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        for name in self.preload:
            self.fetch(name)
        self._loop = None
        if self.refresh_interval:
            self._loop = task.LoopingCall(self.refresh)
            self._loop.clock = reactor
            self._loop.start(self.refresh_interval, now=False).addErrback(
                lambda failure: self.log(LOGERROR, "refresh loop failed: %s"
                                         % failure.getErrorMessage()))

    # -- the hook ------------------------------------------------------------------------------

    def hook_config(self, transaction, name):
        values = self.cache.get(name)
        if values is not None:
            return OK, list(values)
        if name not in self.known and not self._stopped:
            self.fetch(name)
        return DECLINED

    # -- fetching ------------------------------------------------------------------------------

    def fetch(self, name):
        """Fetch item ``name`` in the background (joins a fetch in flight); a Deferred."""
        self.known.add(name)
        if name in self.pending:
            return self.pending[name]
        self.log(LOGDEBUG, "fetching config %s" % name)
        d = defer.Deferred.fromCoroutine(self._fetch(name))
        self.pending[name] = d

        def done(result):
            self.pending.pop(name, None)
            return result

        def failed(failure):
            if not self._stopped:
                self.log(LOGERROR, "fetching config %s failed: %s"
                         % (name, failure.getErrorMessage()))

        d.addBoth(done)
        d.addErrback(failed)
        return d

    def refresh(self):
        """Fetch every known item again; a Deferred firing when all are done."""
        return defer.gatherResults([self.fetch(name) for name in sorted(self.known)])

    def wait_idle(self):
        """A Deferred firing once no fetch is in flight."""
        if not self.pending:
            return defer.succeed(None)
        return defer.gatherResults(list(self.pending.values())).addCallback(
            lambda _: self.wait_idle())

    async def _fetch(self, name):
        self.fetch_count += 1
        outcome, values, source = await self._fetch_from_urls(name)
        old = self.cache.get(name)
        if outcome == FOUND:
            if values != old:
                self.cache[name] = values
                self._forget(name)
                self.log(LOGINFO, "config %s: %d line%s from %s"
                         % (name, len(values), "" if len(values) == 1 else "s", source))
        elif outcome == ABSENT:
            if old is not None:
                del self.cache[name]
                self._forget(name)
                self.log(LOGINFO, "config %s is no longer served; the config file is used" % name)
        elif old is not None:
            self.log(LOGERROR, "config %s: keeping the values fetched before" % name)
        else:
            self.log(LOGERROR, "config %s: no URL answered; the config file is used" % name)
        return outcome

    async def _fetch_from_urls(self, name):
        """(FOUND, lines, url), (ABSENT, None, None) or (FAILED, None, None)."""
        failed = False
        for prefix in self.urls:
            url = prefix + quote(name)
            try:
                code, body = await self._get(url)
            except Exception as e:  # any network error, the timeout, a bad URL
                if self._stopped:
                    raise
                failed = True
                self.log(LOGERROR, "cannot fetch config %s from %s: %s"
                         % (name, url, _describe(e)))
                continue
            if code in (404, 410):
                self.log(LOGDEBUG, "config %s: not found at %s (HTTP %d)" % (name, url, code))
                continue
            if code != 200:
                failed = True
                self.log(LOGERROR, "cannot fetch config %s from %s: HTTP status %d"
                         % (name, url, code))
                continue
            values = parse_body(body)
            if values:
                return FOUND, values, url
            self.log(LOGDEBUG, "config %s: empty at %s" % (name, url))
        return (FAILED if failed else ABSENT), None, None

    def _get(self, url):
        """A Deferred firing with (status, body bytes) of a GET, within the timeout."""
        d = treq.get(url, agent=self._agent, reactor=self.reactor, timeout=self.timeout)
        d.addCallback(lambda response: treq.content(response).addCallback(
            lambda body: (response.code, body)))
        return d.addTimeout(self.timeout, self.reactor)

    def _forget(self, name):
        """Drop the server's cached copy of item ``name`` so the next lookup asks again."""
        config = self.server.config
        forget = getattr(config, "forget", None)
        if forget is not None:
            forget(name)
        else:
            config.clear_cache()

    # -- stopping ------------------------------------------------------------------------------

    def stop(self):
        """Stop refreshing, cancel fetches in flight, close idle connections; a Deferred."""
        if self._stopped:
            return defer.succeed(None)
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        try:
            self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
        except (ValueError, KeyError):
            pass
        for d in list(self.pending.values()):
            d.cancel()
        return self._pool.closeCachedConnections()


def _describe(error):
    """A short reason for a failed fetch."""
    # twisted.web's ResponseFailed / ResponseNeverReceived wrap the real failures
    if too_long(error) is not None:
        return str(too_long(error))
    causes = [r.value for r in getattr(error, "reasons", None) or []] or [error]
    if any(isinstance(c, (defer.TimeoutError, defer.CancelledError)) for c in causes):
        return "no answer (timed out)"
    return "; ".join(str(c) or type(c).__name__ for c in causes)
