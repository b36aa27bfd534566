"""stunnel — take the client's address from the PROXY header a trusted proxy sends first.

A TLS front end such as stunnel (``protocol = proxy``) or HAProxy (``send-proxy``) connects
to us from its own address and starts with one line, the HAProxy PROXY protocol version 1
header, naming the real client::

    PROXY TCP4 192.0.2.7 198.51.100.25 50060 465

With ``proxy on``, a connection from a trusted address is held before the greeting until
that line has arrived. The header's addresses then replace the peer's everywhere the
client's address counts, because every hook runs after it: ``hosts_allow`` and the
``--max-from-ip`` count, reverse DNS (``remote_host``), ``relayclients``, ``dnsbl`` and
the other DNS lists, the Received header, and the log lines (``Connection from …``).

- ``PROXY TCP4 …`` / ``PROXY TCP6 …``: the client is the header's source address and port,
  our side its destination address and port.
- ``PROXY UNKNOWN …`` (the proxy could not tell): the proxy's own address is kept.
- First bytes that are not a PROXY header, or no complete header within ``wait`` seconds
  (a trusted host talking to us directly): the connection goes on as a direct one.
- A malformed header: ``554 5.5.2 Bad PROXY header`` and the connection is closed.
- ``PROXY`` as a later command, or from an address that is not trusted: ``521 PROXY is
  accepted only as the first line from a trusted proxy`` and the connection is closed
  (0.94's ``DENY_DISCONNECT``; without ``proxy on`` it is an unrecognized command).

Arguments (``key value`` pairs):
  ``proxy on|off``       (0.94's) read PROXY headers; default ``off`` (the plugin then
                         does nothing).
  ``trusted ADDRS``      (qpsmtpd-tx addition) the proxies' addresses or networks,
                         comma-separated (``127.0.0.1,192.0.2.0/28``); default ``127.0.0.1``,
                         the one address 0.94 trusted.
  ``wait SECONDS``       (qpsmtpd-tx addition) how long to wait for the header from a
                         trusted address before serving it as a direct client; default 5
                         (Postfix's ``smtpd_upstream_proxy_timeout``).

Config files: none.

Notes (connection notes, as 0.94): ``proxy`` (``YES``), ``protocol`` (``TCP4``, ``TCP6``,
``UNKNOWN``), ``remote_ip``, ``remote_port``, ``local_ip``, ``local_port`` (the header's).
The connection's ``remote_info`` is ``[<ip>]`` until reverse DNS names the client.

Intended differences from qpsmtpd 0.94: 0.94 took PROXY as a command after its greeting,
so the connect hooks (dnsbl, relay, hosts_allow, earlytalker) had already run for
127.0.0.1; here the header is read before any hook. PROXY version 2 (binary, HAProxy's
``send-proxy-v2``) is read too, with the same parser as a ``--listen-proxy`` endpoint
(``LOCAL`` keeps the proxy's address, as ``UNKNOWN`` does).
The header is read on plain listeners (``--listen``, the proxy terminating TLS, as stunnel
does); on an SMTPS listener (``--listen-tls``) it would have to come before the TLS
handshake, which is not supported.
"""

from twisted.internet import defer, reactor

from qpsmtpd_tx.codes import DECLINED, DENY_DISCONNECT, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import boolean, positive
from qpsmtpd_tx.proxy_header import BadHeader, ProxyHeader
from qpsmtpd_tx.proxy_reader import apply_header, parse_networks, read_header, trusted

DEFAULT_WAIT = 5
LATE_PROXY = "PROXY is accepted only as the first line from a trusted proxy"


def parse_trusted(text):
    """The networks of a ``trusted`` argument; PluginError names a bad one."""
    try:
        return parse_networks(text.split(","))
    except ValueError as e:
        raise PluginError("trusted: %s" % (e,))


class Stunnel(Plugin):
    """Reads a trusted proxy's PROXY header before the greeting (see the module's text)."""

    clock = reactor

    def init(self, args):
        options = self.parse_kv_args(args, ("proxy", "trusted", "wait"))
        self.enabled = boolean("proxy", options.get("proxy", "off"), "on or off")
        self.trusted = parse_trusted(options.get("trusted", "127.0.0.1"))
        self.wait = positive("wait", options.get("wait", str(DEFAULT_WAIT)))
        #: read by the server: the session asks it for the header (None: not enabled)
        self.proxy_header = self if self.enabled else None
        if self.enabled:
            self.log(LOGINFO, "proxy protocol enabled")

    def trusts(self, connection):
        """True if ``connection`` comes from a trusted proxy."""
        return trusted(self.trusted, connection.remote_ip)

    def read_header(self, session):
        """Wait for the first bytes of a trusted peer; if they are a PROXY header, take it and
        put its addresses into the connection. A Deferred: True when the session may go on."""
        return defer.Deferred.fromCoroutine(self._read_header(session))

    async def _read_header(self, session):
        try:
            header = await read_header(session, self.wait, self.clock)
        except BadHeader as e:
            self.log(LOGINFO, "fail, %s: %r" % (e, session.core.first_line()), session.transaction)
            session.respond(554, "5.5.2 Bad PROXY header")
            session.disconnect()
            return False
        if header is None and session.lost:
            return False
        if not isinstance(header, ProxyHeader):
            self.log(LOGINFO, "no PROXY header from %s: serving it as a direct client"
                     % (session.connection.remote_ip,), session.transaction)
            return True
        self.apply(session.connection, header, session.transaction)
        return True

    def apply(self, connection, header, transaction=None):
        """Put the header's addresses into ``connection`` and 0.94's notes."""
        kept = connection.remote_ip
        apply_header(connection, header)
        if not header.has_addresses:
            self.log(LOGINFO, "stunnel : %s, keeping %s" % (header.protocol, kept), transaction)
            return
        self.log(LOGINFO, "stunnel : %s:%s" % (header.remote_ip, header.remote_port), transaction)

    def hook_unrecognized_command(self, transaction, verb, rest):
        if verb != "proxy" or not self.enabled:
            return DECLINED
        self.log(LOGINFO, "fail, PROXY from %s after the start" % (transaction.connection.remote_ip,),
                 transaction)
        return DENY_DISCONNECT, LATE_PROXY
