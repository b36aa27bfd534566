"""Reading a PROXY header before the greeting, for a ``--listen-proxy`` endpoint and the
``stunnel`` plugin alike.

Both hold a connection from a trusted proxy before any hook runs, read the header
(:mod:`qpsmtpd_tx.proxy_header`, version 1 or 2) from the session's input as it arrives, in
however many reads, and put the client's address into the connection (:func:`apply_header`),
so that every hook after it — hosts_allow, the ``--max-from-ip`` count, reverse DNS, relay,
the DNS lists, the Received header and the log lines — sees the client, not the proxy. They
differ in what they do with a peer that sends no header: the plugin serves it as a direct
client (0.94's behaviour), the endpoint closes the connection (:class:`EndpointProxy`).
"""

import ipaddress

from twisted.internet import defer, reactor

from qpsmtpd_tx.codes import LOGDEBUG, LOGINFO, LOGNOTICE
from qpsmtpd_tx.dns.names import parse_ip
from qpsmtpd_tx.proxy_header import MAX_V2_LENGTH, NEED_MORE, BadHeader, ProxyHeader, parse

#: what :func:`read_header` gives when no header came in time
TIMED_OUT = "timed out"


def parse_networks(words):
    """The :mod:`ipaddress` networks of ``words`` (addresses or CIDR networks); ValueError
    naming the first bad one."""
    networks = []
    for word in words:
        try:
            networks.append(ipaddress.ip_network(word.strip(), strict=True))
        except ValueError:
            raise ValueError("%r is not an address or network" % (word,))
    return networks


def trusted(networks, ip_text):
    """True if the address ``ip_text`` is in one of ``networks``."""
    ip = parse_ip(ip_text)
    return ip is not None and any(ip in network for network in networks)


async def read_header(session, seconds, clock=reactor):
    """Wait up to ``seconds`` for the session's input to begin with a PROXY header.

    Gives a :class:`~qpsmtpd_tx.proxy_header.ProxyHeader` (its bytes removed from the input),
    :data:`~qpsmtpd_tx.proxy_header.NOT_PROXY` (nothing removed), :data:`TIMED_OUT`, or None
    if the connection was lost or the peer closed its side first; raises
    :class:`~qpsmtpd_tx.proxy_header.BadHeader`.
    """
    core = session.core
    deadline = clock.seconds() + seconds
    while True:
        result = parse(core.peek(MAX_V2_LENGTH))
        if result is not NEED_MORE:
            if isinstance(result, ProxyHeader):
                core.discard(result.length)
            return result
        if session.lost or session.input_closed:
            return None
        remaining = deadline - clock.seconds()
        if remaining <= 0 or not await session.wait_for_input(
                remaining, clock=clock, more=bool(core.buffered)):
            if session.lost or session.input_closed:
                return None
            return TIMED_OUT


def apply_header(connection, header):
    """Put ``header``'s client into ``connection`` and 0.94's notes (``proxy``, ``protocol``,
    ``remote_ip`` …); a header without addresses (UNKNOWN, LOCAL) keeps the peer's."""
    notes = connection.notes
    notes["proxy"] = "YES"
    notes["protocol"] = header.protocol
    if not header.has_addresses:
        return
    connection.remote_ip, connection.remote_port = header.remote_ip, header.remote_port
    connection.local_ip, connection.local_port = header.local_ip, header.local_port
    connection.remote_host = None
    connection.remote_info = "[%s]" % (header.remote_ip,)
    notes.update(remote_ip=header.remote_ip, remote_port=header.remote_port,
                 local_ip=header.local_ip, local_port=header.local_port)


class EndpointProxy:
    """The PROXY policy of a ``--listen-proxy`` endpoint.

    Peers in ``proxy_trusted`` must start with a valid header (version 1 or 2) within
    ``proxy_timeout`` seconds, else the connection is closed with a log line and without a
    word to the peer (it is a proxy, not an SMTP client); peers not in ``proxy_trusted`` are
    refused the same way at connect (the protocol asks :meth:`trusts` first). With ``tls``
    (``--listen-proxy-tls``) the client's TLS handshake follows the header (SMTPS behind a
    proxy that passes TLS through).
    """

    clock = reactor

    def __init__(self, server, tls=False):
        self.server = server
        self.tls = tls

    def trusts(self, connection):
        """True if ``connection`` comes from an address in ``proxy_trusted``."""
        return trusted(self.server.proxy_trusted, connection.remote_ip)

    def read_header(self, session):
        """A Deferred: True once the header is applied, False if the connection was closed."""
        return defer.Deferred.fromCoroutine(self._read_header(session))

    async def _read_header(self, session):
        proxy_ip = session.connection.remote_ip
        try:
            header = await read_header(session, self.server.proxy_timeout, self.clock)
        except BadHeader as e:
            return self._close(session, "bad PROXY header from %s: %s" % (proxy_ip, e))
        if header is None:
            # HAProxy's plain TCP health check connects and closes: no log line above debug
            session.log(LOGDEBUG, "%s closed the connection before a PROXY header" % (proxy_ip,))
            if not session.lost:
                session.disconnect()
            return False
        if header is TIMED_OUT:
            return self._close(session, "no PROXY header from %s within %d s"
                               % (proxy_ip, self.server.proxy_timeout))
        if not isinstance(header, ProxyHeader):
            return self._close(session, "no PROXY header from %s: it talks SMTP directly"
                               % (proxy_ip,))
        apply_header(session.connection, header)
        if header.has_addresses:
            session.log(LOGINFO, "PROXY v%d from %s: client %s:%s" % (
                header.version, proxy_ip, header.remote_ip, header.remote_port))
        else:
            session.log(LOGINFO, "PROXY v%d %s from %s: the proxy is the client" % (
                header.version, header.protocol, proxy_ip))
        return True

    @staticmethod
    def _close(session, why):
        session.log(LOGNOTICE, why + ", closing")
        session.disconnect()
        return False
