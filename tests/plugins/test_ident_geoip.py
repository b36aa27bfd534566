"""Tests of ident/geoip with real ``.mmdb`` databases the tests write themselves
(tests/support/mmdb.py, from MaxMind's format specification) and the real ``maxminddb``
reader; connections through the real protocol (MemoryClient) and one over a loopback socket."""

import math
import os

from twisted.trial import unittest

from tests.support.harness import (MemoryClient, StartupErrorMixin, capture_log, loaded_plugin,
                                   make_server, plugin_module)
from tests.support.mmdb import city, write_mmdb
from tests.support.server import connect, start_server

RECORDS = {
    "192.0.2.0/24": city("US", "United States", "NA", "Springfield", 39.8, -89.6),
    "198.51.100.0/24": city("DE", "Germany", "EU", "Berlin", 52.52, 13.405),
    "203.0.113.0/24": {"country": {"iso_code": "BR", "names": {"en": "Brazil"}},
                       "continent": {"code": "SA"}},
    "2001:db8::/32": city("JP", "Japan", "AS", "Tokyo", 35.68, 139.69),
    "127.0.0.0/8": city("CA", "Canada", "NA", None, 45.42, -75.69),
}


def haversine_km(lat1, lon1, lat2, lon2, radius=6378):
    """An independent formula for the same great-circle distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(a))


class GeoIPTests(StartupErrorMixin, unittest.TestCase):
    def db_dir(self, name="GeoLite2-City.mmdb", records=RECORDS):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        write_mmdb(os.path.join(directory, name), records)
        return directory

    def notes(self, line, ip):
        server = make_server(self, [line])
        client = MemoryClient(server, remote_ip=ip)
        return {k: v for k, v in client.session.connection.notes.items() if k.startswith("geoip")}

    def test_city_database_notes(self):
        self.assertEqual(self.notes("ident/geoip db_dir " + self.db_dir(), "192.0.2.9"), {
            "geoip_country": "US", "geoip_country_name": "United States",
            "geoip_continent": "NA", "geoip_city": "Springfield"})

    def test_ipv6_client(self):
        notes = self.notes("ident/geoip db_dir " + self.db_dir(), "2001:db8::25")
        self.assertEqual((notes["geoip_country"], notes["geoip_city"]), ("JP", "Tokyo"))

    def test_country_database(self):
        directory = self.db_dir("GeoLite2-Country.mmdb", {
            "192.0.2.0/24": {"country": {"iso_code": "US", "names": {"en": "United States"}},
                             "continent": {"code": "NA"}}})
        self.assertEqual(self.notes("ident/geoip db_dir " + directory, "192.0.2.9"), {
            "geoip_country": "US", "geoip_country_name": "United States", "geoip_continent": "NA"})

    def test_unknown_address_sets_nothing(self):
        server = make_server(self, ["ident/geoip db_dir " + self.db_dir()])
        log = capture_log(self, server)
        client = MemoryClient(server, remote_ip="192.0.9.1")
        self.assertFalse([k for k in client.session.connection.notes if k.startswith("geoip")])
        self.assertIn("skip, no results", [text for _, text in log])

    def test_distance_and_log_line(self):
        server = make_server(self, ["ident/geoip db_dir %s distance 198.51.100.1" % self.db_dir()])
        log = capture_log(self, server)
        notes = MemoryClient(server, remote_ip="192.0.2.9").session.connection.notes
        expected = haversine_km(52.52, 13.405, 39.8, -89.6)
        self.assertLessEqual(abs(int(notes["geoip_distance"]) - expected), 1)
        self.assertIn("NA, US, Springfield, %s km" % notes["geoip_distance"],
                      [text for _, text in log])

    def test_too_far_lowers_karma(self):
        line = "ident/geoip db_dir %s distance 198.51.100.1 too_far 5000" % self.db_dir()
        far = self.notes_all(line, "192.0.2.9")     # ~7,500 km
        near = self.notes_all(line, "198.51.100.7")  # 0 km
        self.assertEqual(far.get("karma"), -1)
        self.assertNotIn("karma", near)
        self.assertEqual(near["geoip_distance"], "0")

    def notes_all(self, line, ip):
        return MemoryClient(make_server(self, [line]), remote_ip=ip).session.connection.notes

    def test_no_location_no_distance(self):
        notes = self.notes_all("ident/geoip db_dir %s distance 198.51.100.1" % self.db_dir(), "203.0.113.5")
        self.assertEqual(notes["geoip_country"], "BR")
        self.assertNotIn("geoip_distance", notes)

    def test_missing_database_warns_then_picks_it_up(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        server = make_server(self, ["ident/geoip db_dir " + directory])
        self.assertIsNone(loaded_plugin(server, "ident::geoip").reader)
        self.assertFalse(MemoryClient(server, remote_ip="192.0.2.9").session.connection.notes.get("geoip_country"))
        write_mmdb(os.path.join(directory, "GeoLite2-City.mmdb"), RECORDS)
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.9").session.connection.notes["geoip_country"], "US")

    def test_updated_database_is_reopened(self):
        directory = self.db_dir()
        server = make_server(self, ["ident/geoip db_dir " + directory])
        path = os.path.join(directory, "GeoLite2-City.mmdb")
        write_mmdb(path + ".new", {"192.0.2.0/24": city("FR", "France", "EU")})
        os.utime(path + ".new", (1, 1))   # another mtime than the file it replaces
        os.rename(path + ".new", path)
        self.assertEqual(MemoryClient(server, remote_ip="192.0.2.9").session.connection.notes["geoip_country"], "FR")

    def test_city_database_preferred(self):
        directory = self.db_dir()
        write_mmdb(os.path.join(directory, "GeoLite2-Country.mmdb"),
                   {"192.0.2.0/24": {"country": {"iso_code": "XX"}}})
        self.assertEqual(self.notes("ident/geoip db_dir " + directory, "192.0.2.9")["geoip_country"], "US")

    async def test_over_tcp(self):
        server, port = start_server(self, ["ident/geoip db_dir " + self.db_dir(), "rcpt_ok"])
        client = await connect(self, port)
        self.assertEqual(client.greeting[0], 220)
        session = next(iter(server.sessions))
        self.assertEqual(session.connection.notes["geoip_country"], "CA")
        self.assertNotIn("geoip_city", session.connection.notes)

    def test_formula(self):
        km = plugin_module("ident/geoip").great_circle_km
        self.assertLess(km(10, 20, 10, 20), 0.001)
        self.assertAlmostEqual(km(0, 0, 0, 180), math.pi * 6378, places=6)

    def test_bad_arguments(self):
        self.assertStartupError(["ident/geoip distance here"], ":1: plugin ident/geoip: distance must be this server's IP address, got 'here'")
        self.assertStartupError(["ident/geoip too_far far"], ":1: plugin ident/geoip: too_far must be a number of km, got 'far'")
        self.assertStartupError(["ident/geoip db_dir"], ":1: plugin ident/geoip: arguments must be key/value pairs")
        self.assertStartupError(["ident/geoip colour red"], ":1: plugin ident/geoip: unknown argument 'colour'")
