"""A bounded cache of DNS outcomes, each kept for its TTL."""

from collections import OrderedDict


class TTLCache:
    """At most ``size`` entries (least recently used go first), each until its expiry.

    ``clock`` gives ``seconds()`` (the reactor). A ``size`` of 0 keeps nothing. The bound is
    what matters on a server: a client can make it ask for any number of distinct names.
    """

    def __init__(self, size, clock):
        self.size = size
        self.clock = clock
        self._entries = OrderedDict()

    def __len__(self):
        return len(self._entries)

    def get(self, key):
        """The value stored for ``key`` if it has not expired, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self.clock.seconds():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key, value, ttl):
        """Keep ``value`` for ``ttl`` seconds (nothing is kept for a TTL of 0 or less)."""
        if self.size <= 0 or ttl <= 0:
            return
        self._entries[key] = (self.clock.seconds() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self):
        """Forget everything."""
        self._entries.clear()
