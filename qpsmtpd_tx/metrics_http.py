"""``--metrics ENDPOINT``: the Prometheus endpoint, ``GET /metrics`` on a twisted.web Site.

The port is bound with the SMTP ones (as root, before ``--uid``), the metrics are made when
the service starts (as the service user, before the workers are started, so that they
inherit the multiprocess directory). prometheus_client's ``MetricsResource`` renders in the
reactor's thread pool, so a scrape never holds up an SMTP session.
"""

import atexit

from twisted.application import service
from twisted.web.resource import Resource
from twisted.web.server import Site

from qpsmtpd_tx import prometheus
from qpsmtpd_tx.codes import LOGINFO
from qpsmtpd_tx.workers import ListeningService


class _QuietSite(Site):
    """A Site that does not log each request (a scrape every few seconds)."""

    noisy = False

    def log(self, request):
        """No access log."""


class MetricsService(service.MultiService):
    """Serves ``server``'s metrics (and, with ``workers``, the workers' too) on ``endpoint``."""

    def __init__(self, endpoint, server, workers=False):
        service.MultiService.__init__(self)
        self.server = server
        self.workers = workers
        #: the multiprocess directory while the service runs with workers, else None
        self.directory = None
        self._root = Resource()
        self._listening = ListeningService([endpoint], _QuietSite(self._root))
        self._listening.setServiceParent(self)

    def startService(self):
        """Make the metrics, count into them, and answer ``/metrics``."""
        if self.workers:
            self.directory = prometheus.make_multiprocess_dir()
            # at exit, not at reactor shutdown: a start that fails after this point (a worker
            # that cannot be started) must not leave the directory behind either
            atexit.register(prometheus.remove_multiprocess_dir, self.directory)
            metrics = prometheus.in_multiprocess_dir(self.directory)
            registry = prometheus.scrape_registry(self.directory)
        else:
            metrics, registry = prometheus.single_process()
        from prometheus_client.twisted import MetricsResource
        self._root.putChild(b"metrics", MetricsResource(registry))
        self.server.use_metrics(metrics)
        service.MultiService.startService(self)
        where = " (all workers; values in %s)" % self.directory if self.workers else ""
        for port in self._listening.ports:
            self.server.log(LOGINFO, "Metrics on %s, path /metrics%s" % (port.getHost(), where))
