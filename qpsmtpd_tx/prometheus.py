"""The Prometheus side of the metrics (``--metrics ENDPOINT``): the counters, histograms and
gauges, and how several processes (``--workers``) add theirs up.

Labels are bounded: a plugin's name as written in ``plugins`` (``queue/maildir``), a hook
name, a reply class, a fixed reason word. No addresses, host names or senders.

With ``--workers N`` every process counts into prometheus_client's *multiprocess mode*: each
one writes its values to memory-mapped files in a directory the twistd process makes at
start (``PROMETHEUS_MULTIPROC_DIR``, inherited by the workers) and removes when it stops;
the one HTTP endpoint, in the twistd process, adds them up. A worker that is restarted
keeps its predecessor's counts in the totals; the open-connection gauge of a process that
has ended is dropped at the next scrape. One port per worker was the other way: it needs N
scrape targets, a port scheme beside every endpoint string, and a sum in every query.
"""

import os
import shutil
import tempfile

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics,
                               multiprocess, values)
from prometheus_client.process_collector import ProcessCollector

from qpsmtpd_tx.metrics import NoMetrics, outcome, plugin_label

#: the environment variable prometheus_client reads for its multiprocess directory
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "qpsmtpd_tx_"
#: seconds: from a quick in-memory check to a slow content scan or a remote queue
LATENCY_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
                   60.0, 300.0, float("inf"))
#: the hooks whose answer is the answer to a connection (a refusal there refuses it)
_CONNECT_HOOKS = ("pre-connection", "connect")
_REFUSED = ("deferred", "rejected")
#: Resolver.stats keys → the counters they feed
_DNS_STATS = {"queries": "dns_queries", "cached": "dns_cache_hits", "merged": "dns_merged"}


class _CountingStats(dict):
    """A Resolver's ``stats`` dict that also adds each increment to a counter."""

    def __init__(self, initial, counters):
        dict.__init__(self, initial)
        self._counters = counters

    def __setitem__(self, key, value):
        counter = self._counters.get(key)
        if counter is not None:
            step = value - self.get(key, 0)
            if step > 0:
                counter.inc(step)
        dict.__setitem__(self, key, value)


class Metrics(NoMetrics):
    """The metrics of this process. ``registry``: where they are registered (None in
    multiprocess mode, where :func:`scrape_registry` reads them from the shared files)."""

    def __init__(self, registry=None):
        def make(kind, name, text, labels=(), **kw):
            return kind(PREFIX + name, text, labels, registry=registry, **kw)

        self.connections = make(Counter, "connections", "TCP connections accepted")
        self.refused_connections = make(
            Counter, "connections_refused", "connections refused before or at the greeting",
            ["reason"])
        self.open = make(Gauge, "connections_open", "connections being served",
                         multiprocess_mode="livesum")
        self.transactions = make(Counter, "transactions", "mail transactions begun (MAIL accepted)")
        self.messages = make(Counter, "messages", "messages answered after DATA, by outcome, "
                             "deciding hook and plugin", ["outcome", "phase", "plugin"])
        self.refusals = make(Counter, "refusals", "refused commands and messages, by hook and "
                             "deciding plugin", ["outcome", "phase", "plugin"])
        self.hook_seconds = make(Histogram, "hook_seconds", "time a plugin took to answer a hook",
                                 ["plugin", "hook"], buckets=LATENCY_BUCKETS)
        self.queue_seconds = make(Histogram, "queue_seconds", "time a queue plugin took to "
                                  "answer (the back end's latency)", ["backend"],
                                  buckets=LATENCY_BUCKETS)
        self.received_bytes = make(Counter, "received_bytes", "bytes read from clients")
        self.tls_handshakes = make(Counter, "tls_handshakes", "TLS handshakes (STARTTLS, SMTPS)",
                                   ["result"])
        self._dns = {key: make(Counter, name, "DNS lookups: " + name.replace("_", " "))
                     for key, name in _DNS_STATS.items()}
        # label children looked up once: .labels() costs more than the increment
        self._hook_children = {}
        self._reply_children = {}

    def connection(self):
        self.connections.inc()

    def connection_refused(self, reason):
        self.refused_connections.labels(reason).inc()

    def session_opened(self):
        self.open.inc()

    def session_closed(self):
        self.open.dec()

    def received(self, size):
        self.received_bytes.inc(size)

    def transaction(self):
        self.transactions.inc()

    def replied(self, phase, code, plugin, ends_message=False):
        kind = outcome(code)
        if not ends_message and kind not in _REFUSED:
            return
        key = (kind, phase, plugin, ends_message)
        children = self._reply_children.get(key)
        if children is None:
            children = self._reply_children[key] = self._reply_counters(*key)
        for child in children:
            child.inc()

    def _reply_counters(self, kind, phase, plugin, ends_message):
        plugin = plugin_label(plugin)
        counters = []
        if kind in _REFUSED:
            counters.append(self.refusals.labels(kind, phase, plugin))
            if phase in _CONNECT_HOOKS:
                counters.append(self.refused_connections.labels("plugin"))
        if ends_message:
            counters.append(self.messages.labels(kind, phase, plugin))
        return counters

    def observe_hook(self, plugin, hook, seconds):
        """``plugin`` took ``seconds`` to answer ``hook`` (the hook runner calls this)."""
        # keyed by the plugin object, not its label: no label work per call (the plugins of
        # chains that SIGHUP replaced stay in the dict, a few entries per reload)
        children = self._hook_children.get((plugin, hook))
        if children is None:
            children = self._hook_children[(plugin, hook)] = self._hook_counters(plugin, hook)
        for child in children:
            child.observe(seconds)

    def _hook_counters(self, plugin, hook):
        label = plugin_label(plugin)
        children = [self.hook_seconds.labels(label, hook)]
        if hook == "queue":
            children.append(self.queue_seconds.labels(label))
        return children

    def tls_handshake(self, result):
        self.tls_handshakes.labels(result).inc()

    def watch_resolver(self, resolver):
        if not isinstance(resolver.stats, _CountingStats):
            resolver.stats = _CountingStats(resolver.stats, self._dns)



class _AllProcesses:
    """Reads every process's values from the multiprocess directory, having first dropped
    the live gauges of processes that have ended (a killed worker's open connections)."""

    def __init__(self, path):
        self.path = path
        self._collector = multiprocess.MultiProcessCollector(None, path)

    def collect(self):
        """The summed metrics of all processes, live and ended."""
        for name in os.listdir(self.path):
            if name.startswith("gauge_live") and name.endswith(".db"):
                pid = name[:-3].rsplit("_", 1)[-1]
                if pid.isdigit() and not os.path.exists("/proc/" + pid):
                    try:
                        multiprocess.mark_process_dead(int(pid), self.path)
                    except FileNotFoundError:
                        pass        # a scrape beside this one removed it first
        return self._collector.collect()


def _use_value_class(multiprocess_dir):
    """Make prometheus_client store new values per process in ``multiprocess_dir`` (or in
    memory when None), whatever the environment was when it was imported."""
    if multiprocess_dir is None:
        os.environ.pop(MULTIPROC_ENV, None)
    else:
        os.environ[MULTIPROC_ENV] = multiprocess_dir
    values.ValueClass = values.get_value_class()
    # a ``_created`` series per counter doubles the output for a time stamp nobody graphs
    disable_created_metrics()


def single_process():
    """This process's :class:`Metrics` and the registry to serve (no workers)."""
    _use_value_class(None)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return Metrics(registry), registry


def make_multiprocess_dir():
    """A new, empty directory for the processes' value files; the environment names it, so
    that the workers started later inherit it. Remove it with :func:`remove_multiprocess_dir`."""
    path = tempfile.mkdtemp(prefix="qpsmtpd-tx-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def remove_multiprocess_dir(path):
    """Remove the directory made by :func:`make_multiprocess_dir` (the server has stopped)."""
    shutil.rmtree(path, ignore_errors=True)


def in_multiprocess_dir(path):
    """This process's :class:`Metrics`, written to ``path`` for the serving process to add up."""
    _use_value_class(path)
    return Metrics(None)


def scrape_registry(path):
    """The registry that serves the sum of every process's metrics in ``path``."""
    registry = CollectorRegistry()
    registry.register(_AllProcesses(path))
    return registry
