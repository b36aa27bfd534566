"""ident/geoip meeting a database it cannot use at each connection: a replaced file that is no
database, and a ``distance`` address the database does not locate. Each is logged once, not at
every connection (a flood under load), the database before stays in use, and a good file
replacing the bad one is used at the next connection. Real ``.mmdb`` files (tests/support/mmdb.py)
and the real reader, connections through the real protocol (MemoryClient)."""

import os

from twisted.trial import unittest

from qpsmtpd_tx import codes
from tests.plugins.test_ident_geoip import RECORDS
from tests.support.harness import MemoryClient, capture_log, make_server
from tests.support.mmdb import city, write_mmdb

#: connections made while the database is broken
CONNECTIONS = 20


class BrokenDatabaseTests(unittest.TestCase):
    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "GeoLite2-City.mmdb")
        write_mmdb(self.path, RECORDS)

    def country(self, server, ip="192.0.2.9"):
        client = MemoryClient(server, remote_ip=ip)
        country = client.session.connection.notes.get("geoip_country")
        client.command("QUIT")           # (the per-IP limit counts open sessions)
        return country

    def replace(self, write, mtime):
        write(self.path + ".new")
        os.utime(self.path + ".new", (mtime, mtime))    # another mtime than the file replaced
        os.rename(self.path + ".new", self.path)

    def errors(self, log, text):
        return [m for level, m in log if level == codes.LOGERROR and text in m]

    def test_a_broken_database_file_is_tried_once(self):
        server = make_server(self, ["ident/geoip db_dir " + self.directory])
        log = capture_log(self, server)

        def not_a_database(path):
            with open(path, "wb") as f:
                f.write(b"not a MaxMind database")
        self.replace(not_a_database, 1)
        for _ in range(CONNECTIONS):
            self.assertEqual(self.country(server), "US")         # the database before
        self.assertEqual(len(self.errors(log, "cannot open %s" % self.path)), 1, log)
        self.replace(lambda path: write_mmdb(path, {"192.0.2.0/24": city("FR", "France", "EU")}),
                     2)
        self.assertEqual(self.country(server), "FR")

    def test_an_unknown_distance_address_is_logged_once_per_database(self):
        server = make_server(self, ["ident/geoip db_dir %s distance 100.64.0.1" % self.directory])
        log = capture_log(self, server)
        for _ in range(CONNECTIONS):
            self.assertEqual(self.country(server), "US")
        self.assertEqual(len(self.errors(log, "no record for my GeoIP location")), 1, log)
        self.replace(lambda path: write_mmdb(path, RECORDS), 3)
        self.country(server)
        self.assertEqual(len(self.errors(log, "no record for my GeoIP location")), 2, log)
