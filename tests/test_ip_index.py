"""The per-IP connection limit counts from qpsmtpd_tx.ip_index.SessionsByIP, not by looking
at every session: the index itself (with stand-in sessions: only ``connection.remote_ip`` and
``finished`` are read), and the server's limit through real sessions (the end-to-end limits
are in test_ip_count_closing, test_listen_proxy and test_flow)."""

from twisted.trial import unittest

from qpsmtpd_tx.ip_index import SessionsByIP
from qpsmtpd_tx.objects import Connection
from qpsmtpd_tx.testing import MemoryClient, make_server


class _Session:
    """What the index reads of a session."""

    def __init__(self, ip, finished=False):
        self.connection = Connection(remote_ip=ip)
        self.finished = finished


class SessionsByIPTests(unittest.TestCase):
    def setUp(self):
        self.index = SessionsByIP()

    def added(self, ip, finished=False):
        session = _Session(ip, finished)
        self.index.add(session)
        return session

    def test_counts_live_unfinished_sessions_of_the_address_but_the_asking_one(self):
        me = self.added("192.0.2.1")
        self.added("192.0.2.1")
        self.added("192.0.2.1", finished=True)
        self.added("192.0.2.2")
        self.assertEqual(self.index.count("192.0.2.1", exclude=me), 1)
        self.assertEqual(self.index.count("192.0.2.1"), 2)
        self.assertEqual(self.index.count("192.0.2.9"), 0)

    def test_a_session_that_finishes_or_ends_no_longer_counts(self):
        first, second = self.added("192.0.2.1"), self.added("192.0.2.1")
        first.finished = True
        self.assertEqual(self.index.count("192.0.2.1"), 1)
        self.index.discard(second)
        self.assertEqual(self.index.count("192.0.2.1"), 0)
        self.index.discard(second)           # twice: harmless
        self.index.discard(_Session("192.0.2.1"))   # never added: harmless

    def test_an_address_from_a_proxy_header_counts_once_added_again(self):
        session = self.added("10.0.0.1")     # the proxy's address
        session.connection.remote_ip = "192.0.2.7"
        self.index.add(session)
        self.index.add(session)
        self.assertEqual((self.index.count("192.0.2.7"), self.index.count("10.0.0.1")), (1, 0))
        self.index.discard(session)
        self.assertEqual(self.index.count("192.0.2.7"), 0)
        self.assertEqual(self.index._by_ip, {})


class ServerLimitTests(unittest.TestCase):
    def test_the_limit_does_not_look_at_every_session(self):
        server = make_server(self, ["rcpt_ok"], max_conn_ip=2)

        def scan(exclude=None):
            raise AssertionError("every session scanned for a new connection")
        self.patch(server, "peer_ips", scan)
        clients = [MemoryClient(server, remote_ip="192.0.2.1") for _ in range(3)]
        other = MemoryClient(server, remote_ip="192.0.2.2")
        self.assertEqual([c.greeting[:3] for c in clients + [other]],
                         ["220", "220", "451", "220"])
        clients[0].command("QUIT")             # its final reply is out: it counts no more
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.1").greeting[:3], "220")
