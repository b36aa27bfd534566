"""ident/geoip — where the client is, from a MaxMind GeoIP2 / GeoLite2 database.

At connect, the client's address is looked up in a MaxMind ``.mmdb`` database (the
GeoIP2/GeoLite2 format, read with the ``maxminddb`` package, memory-mapped: a lookup reads
a few pages of the file and does not wait on the network). The results go into connection
notes, and one line is logged::

    (connect) ident::geoip: NA, US, Springfield, 1319 km

Other plugins may use the notes (``greylisting`` and ``karma`` look at
``geoip_country``).

Database: the first of ``GeoIP2-City.mmdb``, ``GeoLite2-City.mmdb``, ``GeoIP2-Country.mmdb``,
``GeoLite2-Country.mmdb`` found in ``db_dir`` (a City database gives the city and the
distance). When none is there, a warning is logged at start-up (as 0.94 warns when Geo::IP is
missing) and the plugin is idle; it looks again at each connection, so a database installed
later is used without a restart. A database file replaced by an update (``geoipupdate``) is
opened again at the next connection; one that cannot be opened is logged at LOGERROR once
(not tried again until it changes) and the database opened before stays in use.

Arguments (``key value`` pairs, all optional):
  ``db_dir DIR``       the database directory (default ``/usr/local/share/GeoIP``, 0.94's;
                       then ``/var/lib/GeoIP``, where Debian's geoipupdate writes, and
                       ``/usr/share/GeoIP``).
  ``distance IP``      this server's public address: enables the distance to the client,
                       "as the crow flies" on a sphere of radius 6378 km, as 0.94; an
                       address the database does not locate is logged at LOGERROR once
                       per database, and no distance is given.
  ``too_far KM``       with ``distance``: a client farther than this gets karma -1 (the
                       connection note ``karma``).
An argument that is not an address or a number, or an unknown key, stops start-up.

Config files: none.

Notes (connection notes, as 0.94): ``geoip_country`` (two-letter code, ``US``),
``geoip_country_name`` (English name), ``geoip_continent`` (two-letter code, ``NA``),
``geoip_city`` (English name; City databases), ``geoip_distance`` (kilometres, a whole
number as text; with ``distance``). An address the database does not know sets no note and
logs ``skip, no results``.

Replies: none (the hook always declines).

Intended differences from qpsmtpd 0.94: the legacy GeoIP ``.dat`` databases (Geo::IP) are
gone from MaxMind and Debian, so the GeoIP2 ``.mmdb`` format is read instead; IPv6 clients
are looked up too; ``geoip_continent`` and ``geoip_city`` are set whether or not
``distance`` is given (0.94 only set them with it); a latitude or longitude of exactly 0 is
a place, not a missing value; the log line has no tab before the distance (log lines
escape control characters).
"""

import ipaddress
import math
import os

import maxminddb

from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGERROR, LOGINFO, LOGNOTICE, LOGWARN
from qpsmtpd_tx.file_version import version_of
from qpsmtpd_tx.plugin import Plugin, PluginError

DEFAULT_DB_DIRS = ("/usr/local/share/GeoIP", "/var/lib/GeoIP", "/usr/share/GeoIP")
DATABASES = ("GeoIP2-City.mmdb", "GeoLite2-City.mmdb", "GeoIP2-Country.mmdb",
             "GeoLite2-Country.mmdb")
#: Math::Trig's great_circle_distance with qpsmtpd's radius
EARTH_RADIUS_KM = 6378


def great_circle_km(lat1, lon1, lat2, lon2):
    """The distance in km between two points given in degrees, on a sphere of 6378 km."""
    lat1, lon1, lat2, lon2 = map(math.radians, (lat1, lon1, lat2, lon2))
    cosine = (math.cos(lat1) * math.cos(lat2) * math.cos(lon1 - lon2)
              + math.sin(lat1) * math.sin(lat2))
    return EARTH_RADIUS_KM * math.acos(max(-1.0, min(1.0, cosine)))


def english(record, key):
    """``record[key]["names"]["en"]``, or None."""
    return ((record.get(key) or {}).get("names") or {}).get("en")


def find_database(directories):
    """The path of the first known database file in ``directories``, or None."""
    for directory in directories:
        for name in DATABASES:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                return path
    return None


class GeoIP(Plugin):
    """Sets the ``geoip_*`` connection notes at connect."""

    def init(self, args):
        options = self.parse_kv_args(args, ("db_dir", "distance", "too_far"))
        self.db_dirs = (options["db_dir"],) if "db_dir" in options else DEFAULT_DB_DIRS
        self.my_ip = options.get("distance")
        if self.my_ip is not None:
            try:
                ipaddress.ip_address(self.my_ip)
            except ValueError:
                raise PluginError("distance must be this server's IP address, got %r" % (self.my_ip,))
        self.too_far = None
        if "too_far" in options:
            try:
                self.too_far = float(options["too_far"])
            except ValueError:
                raise PluginError("too_far must be a number of km, got %r" % (options["too_far"],))
        self.reader = None
        self._opened = None          # (path, version) of the open database
        self._failed = None          # (path, version) of a database that could not be opened
        self._my_location = None
        if not self._open():
            self.log(LOGWARN, "no GeoIP2/GeoLite2 database (%s) in %s: geoip is idle until one "
                     "is installed" % (", ".join(DATABASES), ", ".join(self.db_dirs)))

    def _open(self):
        """Open the database, or open it again if its file changed; True if one is open."""
        path = find_database(self.db_dirs)
        if path is None:
            return self.reader is not None
        version = version_of(path)
        if version is None:
            return self.reader is not None
        if self._opened == (path, version):
            return True
        if self._failed == (path, version):
            return self.reader is not None      # tried and logged: not again until it changes
        try:
            reader = maxminddb.open_database(path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as e:
            self._failed = (path, version)
            self.log(LOGERROR, "cannot open %s: %s" % (path, e))
            return self.reader is not None
        if self.reader is not None:
            self.reader.close()
        self.reader, self._opened, self._my_location = reader, (path, version), None
        self.problem_over("my location")
        self.log(LOGDEBUG, "using db %s" % (path,))
        return True

    def stop(self):
        """Close the database."""
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def lookup(self, ip):
        """The database's record for ``ip`` (a dict), or None."""
        try:
            return self.reader.get(ip)
        except (ValueError, maxminddb.InvalidDatabaseError) as e:
            self.log(LOGDEBUG, "no lookup of %s: %s" % (ip, e))
            return None

    def my_location(self):
        """(latitude, longitude) of the ``distance`` address, or None."""
        if self._my_location is None and self.my_ip is not None:
            location = (self.lookup(self.my_ip) or {}).get("location") or {}
            if location.get("latitude") is None or location.get("longitude") is None:
                # (once per database, not at each connection)
                self.log_once("my location", LOGERROR,
                              "no record for my GeoIP location (%s)" % (self.my_ip,))
                return None
            self._my_location = (location["latitude"], location["longitude"])
        return self._my_location

    def hook_connect(self, transaction):
        if not self._open():
            return DECLINED
        connection = transaction.connection
        record = self.lookup(connection.remote_ip) or {}
        code = (record.get("country") or {}).get("iso_code")
        if not code:
            self.log(LOGINFO, "skip, no results", transaction)
            return DECLINED
        notes = connection.notes
        notes["geoip_country"] = code
        values = {"geoip_country_name": english(record, "country"),
                  "geoip_continent": (record.get("continent") or {}).get("code"),
                  "geoip_city": english(record, "city")}
        notes.update((key, value) for key, value in values.items() if value)
        distance = self.distance(record, transaction)
        parts = [p for p in (values["geoip_continent"], code, values["geoip_city"]) if p]
        if distance is not None:
            notes["geoip_distance"] = distance
            parts.append("%s km" % (distance,))
            if self.too_far is not None and int(distance) > self.too_far:
                self.adjust_karma(transaction, -1)
        self.log(LOGINFO, ", ".join(parts), transaction)
        return DECLINED

    def distance(self, record, transaction):
        """The distance to the client in km (text, as 0.94's note), or None."""
        if self.my_ip is None:
            return None
        mine = self.my_location()
        location = record.get("location") or {}
        if mine is None:
            return None
        if location.get("latitude") is None or location.get("longitude") is None:
            self.log(LOGNOTICE, "could not get sender lat/lon", transaction)
            return None
        km = great_circle_km(mine[0], mine[1], location["latitude"], location["longitude"])
        return "%.0f" % (km,)
