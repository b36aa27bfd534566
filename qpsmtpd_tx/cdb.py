"""A pure-Python reader (and writer) for D. J. Bernstein's constant database format.

qmail keeps large host lists (``morercpthosts.cdb``, ``morerelayclients.cdb``) in cdb
files; qpsmtpd reads them as "map" configs. The format: a 2048-byte header of 256
``(position, slots)`` pairs, then the records ``klen dlen key data``, then 256 hash
tables of ``(hash, record position)`` slots. All numbers are 32-bit little-endian.

Keys and values may be given as ``str`` (encoded UTF-8, undecodable bytes kept via
``surrogateescape``, as config files are read) or ``bytes``; values come back as ``str``.

``CDB.open`` maps the file into memory (``mmap``, as djb's and tinycdb's readers do) instead of
reading it: opening a large file costs no I/O in the reactor thread and no copy, and a lookup
reads only the pages it touches. Replace a cdb file by renaming a new one over it (as
``cdbmake`` and ``write_cdb`` do): the mapping keeps the old file until it is reopened. A file
truncated in place while mapped would fault on the next lookup, as with any mmap reader.
"""

import mmap
import os
import struct
from collections.abc import Mapping

_PAIR = struct.Struct("<LL")
_HEADER_SIZE = 256 * _PAIR.size
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


class CDBError(ValueError):
    """A file is not a well-formed cdb; ``path`` (may be None) and ``reason`` say why."""

    def __init__(self, reason, path=None):
        """Keep ``reason`` and ``path``; the message is ``path: reason``."""
        self.reason = reason
        self.path = path
        super().__init__("%s: %s" % (path or "cdb data", reason))


def cdb_hash(key):
    """The cdb hash of ``key`` (bytes): h = ((h << 5) + h) ^ byte, from 5381, mod 2**32."""
    h = 5381
    for byte in key:
        h = (((h << 5) + h) & 0xFFFFFFFF) ^ byte
    return h


def _to_bytes(value):
    if isinstance(value, bytes):
        return value
    return value.encode(_ENCODING, _ERRORS)


class CDB(Mapping):
    """A read-only mapping over the bytes of a cdb file.

    ``key in db``, ``db[key]`` and ``db.get(key)`` give the first value stored for
    ``key``; :meth:`get_all` gives every value of a key that was stored more than once.
    """

    def __init__(self, data, path=None):
        """Wrap ``data``, the whole cdb file; ``path`` is only used in error messages."""
        if len(data) < _HEADER_SIZE:
            raise CDBError("too short for a cdb file", path)
        self._data = data
        self.path = path
        self._tables = [_PAIR.unpack_from(data, i * _PAIR.size) for i in range(256)]
        for pos, slots in self._tables:
            if pos < _HEADER_SIZE or pos + slots * _PAIR.size > len(data):
                raise CDBError("hash table at byte %d runs past the end" % pos, path)

    @classmethod
    def open(cls, path):
        """Map the cdb file at ``path`` (read-only; nothing is read until a lookup)."""
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size < _HEADER_SIZE:
                raise CDBError("too short for a cdb file", path)
            return cls(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), path)

    def _pair(self, pos):
        try:
            return _PAIR.unpack_from(self._data, pos)
        except struct.error:
            raise CDBError("truncated at byte %d" % pos, self.path)

    def _record(self, pos):
        """The (key, data) bytes of the record at ``pos``."""
        klen, dlen = self._pair(pos)
        start = pos + _PAIR.size
        if start + klen + dlen > len(self._data):
            raise CDBError("record at byte %d runs past the end" % pos, self.path)
        return self._data[start:start + klen], self._data[start + klen:start + klen + dlen]

    def get_all(self, key):
        """Every value stored for ``key``, in file order (a list of ``str``)."""
        key = _to_bytes(key)
        h = cdb_hash(key)
        table_pos, slots = self._tables[h & 0xFF]
        values = []
        if not slots:
            return values
        slot = (h >> 8) % slots
        for _ in range(slots):
            slot_hash, record_pos = self._pair(table_pos + slot * _PAIR.size)
            if record_pos == 0:
                break  # an empty slot ends the probe sequence
            if slot_hash == h:
                record_key, data = self._record(record_pos)
                if record_key == key:
                    values.append(data.decode(_ENCODING, _ERRORS))
            slot = (slot + 1) % slots
        return values

    def __getitem__(self, key):
        values = self.get_all(key)
        if not values:
            raise KeyError(key)
        return values[0]

    def _keys_in_order(self):
        # Records run from the header to the first hash table.
        end = min(pos for pos, _ in self._tables)
        pos = _HEADER_SIZE
        while pos < end:
            key, data = self._record(pos)
            yield key.decode(_ENCODING, _ERRORS)
            pos += _PAIR.size + len(key) + len(data)

    def __iter__(self):
        seen = set()
        for key in self._keys_in_order():
            if key not in seen:
                seen.add(key)
                yield key

    def __len__(self):
        return len(set(self._keys_in_order()))


def make_cdb(items):
    """The bytes of a cdb file holding ``items``, an iterable of (key, value) pairs."""
    records = bytearray()
    buckets = [[] for _ in range(256)]
    for key, value in items:
        key, value = _to_bytes(key), _to_bytes(value)
        h = cdb_hash(key)
        buckets[h & 0xFF].append((h, _HEADER_SIZE + len(records)))
        records += _PAIR.pack(len(key), len(value)) + key + value

    header = bytearray()
    tables = bytearray()
    table_pos = _HEADER_SIZE + len(records)
    for bucket in buckets:
        slots = 2 * len(bucket)
        table = [(0, 0)] * slots
        for h, record_pos in bucket:
            slot = (h >> 8) % slots
            while table[slot][1] != 0:
                slot = (slot + 1) % slots
            table[slot] = (h, record_pos)
        header += _PAIR.pack(table_pos + len(tables), slots)
        for pair in table:
            tables += _PAIR.pack(*pair)
    return bytes(header + records + tables)


def write_cdb(path, items):
    """Write a cdb file holding ``items`` (an iterable of (key, value) pairs) to ``path``:
    into ``path.tmp``, then renamed over ``path``, so a reader mapping the old file keeps it."""
    with open(path + ".tmp", "wb") as f:
        f.write(make_cdb(items))
    os.replace(path + ".tmp", path)
