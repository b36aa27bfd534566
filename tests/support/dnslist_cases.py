"""What the tests of the DNS list plugins share (tests/plugins/test_dnsbl.py, test_rhsbl.py,
test_dns_whitelist_soft.py): a server on a loopback socket whose resolver asks the suite's
private DNS server (NSD, :mod:`tests.support.dns`), zones of the test's own, and sessions.
"""

from twisted.trial import unittest

from qpsmtpd_tx.testing import capture_log
from tests.support.dns import private_dns
from tests.support.harness import StartupErrorMixin
from tests.support.server import connect, start_server

#: what a client connecting to the test servers (from 127.0.0.1) is listed as
LOCAL_ENTRY = "1.0.0.127"


class DNSListTestCase(unittest.TestCase):
    """A TestCase with the private DNS server at hand (``self.dns``; the test is skipped
    where it cannot run)."""

    def setUp(self):
        self.dns = private_dns()

    def zone(self, prefix, records):
        """A new zone of this test holding ``records``; its name."""
        return self.dns.set_zone(self.dns.unique_zone(prefix), records)

    def listing(self, prefix, text=None, address="127.0.0.2", entry=LOCAL_ENTRY):
        """A zone listing ``entry`` (127.0.0.1 by default) with an A record, and a TXT record
        ``text`` if given; its name."""
        records = [(entry, "A", address)]
        if text is not None:
            records.append((entry, "TXT", text))
        return self.zone(prefix, records)

    def serve(self, plugins, files=None, nameserver=None, interface="127.0.0.1"):
        """Start a server whose resolver asks ``nameserver`` (default: the private NSD);
        ``(server, port, log)`` where ``log`` collects ``(level, message)`` lines."""
        files = dict(files or {})
        files.setdefault("dns_servers", nameserver or self.dns.address)
        files.setdefault("dns_attempts", "1")
        server, port = start_server(self, plugins, files, interface=interface)
        return server, port, capture_log(self, server)

    async def talk(self, port, lines=(), host="127.0.0.1"):
        """Connect, then send ``lines`` while the connection stays open; the client, its
        greeting and the replies ``(code, [texts])``."""
        client = await connect(self, port, host)
        replies = []
        for line in lines:
            if client.closed:
                break
            replies.append(await client.command(line))
        return client, client.greeting, replies


class ArgumentCases(StartupErrorMixin):
    """A TestCase mixin for the start-up errors of plugin ``plugin`` (no DNS server needed):
    each of ``bad_arguments``, ``(arguments, expected text)``, on the ``plugins`` line stops
    start-up."""

    plugin = None
    bad_arguments = ()

    def test_bad_arguments_stop_startup(self):
        for args, expected in self.bad_arguments:
            self.assertStartupError(["%s %s" % (self.plugin, args)],
                                    ["plugins:1: plugin %s: " % self.plugin, expected])


def logged(log, text):
    """The ``(level, message)`` lines of ``log`` whose message contains ``text``."""
    return [line for line in log if text in line[1]]
