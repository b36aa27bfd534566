"""The live sessions by client address: the per-IP connection limit (``--max-from-ip``)
counts a client's connections without looking at every other session.

Scanning all sessions cost each new connection about 4.5 µs with 50 open and 280 µs with
2,000 open (bench/README.md, issue 15); the index makes it a look at the client's own.
"""


class SessionsByIP:
    """Sessions indexed under each client address they have had: the socket's, and the one a
    PROXY header gave (:meth:`add` again after the header).

    :meth:`count` gives what a scan of all of them would: the sessions whose
    ``connection.remote_ip`` is that address now, that have not sent their final reply
    (``finished``), other than the one asking.
    """

    def __init__(self):
        self._by_ip = {}
        self._ips = {}

    def add(self, session):
        """Index ``session`` under its client address now (a no-op if it already is)."""
        ip = session.connection.remote_ip
        ips = self._ips.setdefault(session, [])
        if ip not in ips:
            ips.append(ip)
            self._by_ip.setdefault(ip, set()).add(session)

    def discard(self, session):
        """``session`` has ended: forget it."""
        for ip in self._ips.pop(session, ()):
            sessions = self._by_ip.get(ip)
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    del self._by_ip[ip]

    def count(self, ip, exclude=None):
        """Live, unfinished sessions from ``ip`` other than ``exclude``."""
        return sum(1 for s in self._by_ip.get(ip, ())
                   if s is not exclude and not s.finished and s.connection.remote_ip == ip)
