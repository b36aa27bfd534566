"""SIGHUP with ``--workers``: the main process passes the signal on before it reloads its own
plugins, so the workers' reloads (each in its own process) run alongside the main one's
instead of after it (a reload blocks the reactor that would pass the signal on)."""

from twisted.trial import unittest

from qpsmtpd_tx.tap import SMTPService
from qpsmtpd_tx.workers import WorkerPool


class _Server:
    def __init__(self, calls):
        self.calls = calls

    def reload(self):
        self.calls.append("main")


class _Pool(WorkerPool):
    """A WorkerPool with no workers: only its ``reload`` is called (no process is
    started: what is tested is the order of two calls in the main process)."""

    def __init__(self, calls):
        self.calls = calls

    def reload(self):
        self.calls.append("workers")


class SighupOrderTests(unittest.TestCase):
    def test_workers_are_signalled_before_the_main_process_reloads(self):
        calls = []
        service = SMTPService(_Server(calls))
        _Pool(calls).setServiceParent(service)
        service._reload()
        self.assertEqual(calls, ["workers", "main"])
