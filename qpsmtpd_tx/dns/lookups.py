"""The lookups plugins make, by record type, for anything with a ``lookup(name, rrtype, timeout)``
(and ``cached(name, rrtype)``)."""

from qpsmtpd_tx.dns.names import reverse_name


class Lookups:
    """``a``, ``aaaa``, ``mx``, ``txt`` and ``ptr`` in terms of ``self.lookup``."""

    def lookup(self, name, rrtype, timeout=None):
        """A Deferred :class:`~qpsmtpd_tx.dns.resolver.Answer` (defined by subclasses)."""
        raise NotImplementedError

    def cached(self, name, rrtype):
        """The cached outcome of a lookup, or None (defined by subclasses)."""
        raise NotImplementedError

    def a(self, name, timeout=None):
        """IPv4 addresses of ``name``."""
        return self.lookup(name, "A", timeout)

    def aaaa(self, name, timeout=None):
        """IPv6 addresses of ``name``."""
        return self.lookup(name, "AAAA", timeout)

    def mx(self, name, timeout=None):
        """``(priority, exchange)`` pairs of ``name``."""
        return self.lookup(name, "MX", timeout)

    def txt(self, name, timeout=None):
        """TXT records of ``name``."""
        return self.lookup(name, "TXT", timeout)

    def ptr(self, ip, timeout=None):
        """Host names of the address ``ip`` (IPv4 or IPv6)."""
        return self.lookup(reverse_name(ip), "PTR", timeout)

    def ptr_cached(self, ip):
        """What :meth:`ptr` would give at once from the cache (see ``cached``), or None."""
        return self.cached(reverse_name(ip), "PTR")
