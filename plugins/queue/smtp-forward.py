"""queue/smtp-forward — relay each accepted message to the next hop over SMTP or LMTP.

For every message the plugin opens a connection to the next hop, says EHLO (LHLO in LMTP
mode) with this server's ``me``, optionally XCLIENT, then MAIL, one RCPT per recipient, DATA,
the message (CRLF line endings, dot-stuffed) and QUIT; with ``pool`` it keeps the connection
for the next messages instead (see below). MAIL and the RCPTs go in one write when the next
hop offers PIPELINING; DATA waits for their replies. The client is answered only after the
next hop has answered the end of the message. Addresses travel as SMTP paths
(``<user@host>``, quoted local parts kept quoted), never through a shell.

Arguments: ``HOST [PORT] [xclient] [lmtp] [proxy] [partial accept|defer] [timeout SECONDS]
[tls MODE] [tls_ca FILE] [tls_name NAME] [pool N] [pool_idle SECONDS] [pool_messages N]``
  ``HOST``     the next hop: a host name or IPv4 address (``[\\w.-]+``, as qpsmtpd), an IPv6
               address in brackets (``[2001:db8::25]``), or the absolute path of a unix socket
               (``/run/dovecot/lmtp``; no PORT then). Connected to directly, no MX lookup.
  ``PORT``     the TCP port (default 25; 24 in LMTP mode).
  ``xclient``  send Postfix's XCLIENT (NAME ADDR PORT HELO PROTO, those the next hop
               advertises; values xtext-encoded, IPv6 addresses with ``IPV6:``) so that it
               sees the original client, then EHLO/LHLO again with the client's HELO name.
  ``lmtp``     speak LMTP (RFC 2033): LHLO, and one reply per recipient after the message.
  ``proxy``    a before-queue proxy, as Postfix's ``smtpd_proxy_filter``: the connection to
               the next hop opens at the client's MAIL FROM (its MAIL refusal is the client's
               MAIL reply: 550 / 450; unreachable: ``450 Unable to reach the next hop, try
               again later``), and each recipient our rcpt plugins accept is sent on as
               RCPT at once, before our 250: the hop's refusal is the client's reply to that
               RCPT, with the hop's code and text (unreachable: ``451 4.4.1 …``). So every
               recipient we accept exists at the hop, and refusals after the message become
               rare. At the end of the message the same connection says DATA; if the
               recipients changed meanwhile (a filter refused some with ``recipient_policy
               split``, or the message goes in several copies) the hop's transaction is
               RSET and the envelope sent again. The hop's transaction ends with ours (QUIT
               at RSET, a new MAIL, the end of the message or the connection).
  ``partial``  LMTP, when the next hop refuses some recipients after the message and takes
               it for the others: ``accept`` (the default without ``proxy``) answers 250,
               see below; ``defer`` (the default with ``proxy``) follows README's outcome
               table: a temporary refusal answers ``451`` for everyone (the client sends it
               again: those who have it get a duplicate, the price of losing nothing), only
               permanent ones answer 250 and the refused recipients' copy goes where the
               config item ``rejected_recipients`` says (quarantined by default; ``tag``
               quarantines too), logged at LOGNOTICE.
  ``timeout``  seconds to wait for the connection and for each reply (default 60, Net::SMTP's
               value in qpsmtpd); the reply to the end of the message may take five times as
               long (default 300 s, below the 10 minutes RFC 5321 gives our client).
  ``tls``      STARTTLS (RFC 3207) to the next hop, after the first EHLO/LHLO (and before
               XCLIENT); EHLO/LHLO is said again inside TLS. MODE is one of
               ``may``     (default) when the next hop offers it, without checking its
                           certificate; not offered or refused → plaintext; a failed
                           handshake (or none within ``timeout``) → once more on a new
                           connection in plaintext (nothing of the message was sent yet),
                           logged at LOGWARN
               ``require`` always, without checking the certificate; not offered, refused
                           or a failed handshake → 451, nothing of the message is sent
               ``verify``  as ``require``, and the certificate must chain to ``tls_ca``
                           (default: the system's CAs) and name ``tls_name`` (service-identity;
                           an IP address is checked against the certificate's IP entries)
               ``none``    never
  ``tls_ca``   (``tls verify``) a PEM file of the CA certificates to trust; relative to the
               config directory. Unreadable or without a certificate: start-up error.
  ``tls_name`` (``tls verify``) the name the certificate must carry (default: HOST; needed
               for a unix socket).
  ``pool``     keep up to N idle connections to the next hop (default 0: one connection per
               message) and send the next messages on them: ``RSET`` (pipelined with MAIL and
               the RCPTs when offered), MAIL, … as above, no new greeting, EHLO or STARTTLS
               (a TLS connection stays TLS; the ``smtp_forward_tls`` note is the
               connection's). Not with ``xclient`` (a connection carries one client's
               identity) nor ``proxy`` (each transaction has its own connection, opened at
               MAIL): start-up error. Connections in use are not bounded (as without pool).
               A reused connection found broken before the final dot was written (lost,
               garbled reply, a ``421``) is not an answer: the message goes once more on a
               new connection, and that attempt's outcome is the reply. Nothing is retried
               after the final dot (the next hop may have the message: ``451``, the client
               retries) nor after a timeout; a new connection is never retried.
  ``pool_idle`` seconds an idle pooled connection is kept, then QUIT (default 10; Postfix's
               smtpd drops a silent client after 300 s, ``smtpd_timeout``; one the next hop
               closes meanwhile is noticed and not used).
  ``pool_messages`` messages per pooled connection, then QUIT (default 100).

Config files: ``me`` (the EHLO name).

TLS details: the transaction note ``smtp_forward_tls`` (for ``queue_post`` plugins) is None
when the message went in plaintext, else ``{"protocol": "TLSv1.3", "cipher":
"TLS_AES_256_GCM_SHA384", "bits": 256, "verified": True, "name": "mx.example"}`` (``name``
None when not verified); the log line after the handshake and ``finished queueing`` say the
same. Bytes the next hop sends together with its 220 to STARTTLS are never read as replies
inside TLS: they end the connection (451).

Replies:
  success (SMTP)   ``250 queued as <last word of the next hop's reply>`` (its queue id)
  success (LMTP)   ``250`` with the next hop's reply text for each recipient, one per line
  the next hop refuses MAIL, a RCPT, DATA or the message with a 5xx
                   → DENY with its text (the core answers ``552 <its text>``)
  ... with a 4xx   → DECLINED with its text (``451 <its text>``, unless a later queue plugin
                   takes the message)
  cannot connect, no greeting, EHLO refused, timeout, connection lost, garbled reply, a
  reply (all its lines) longer than 64 KiB
                   → DECLINED ``Unable to queue message (<why>)`` → ``451``
  TLS (require/verify) ``… (the next hop does not offer STARTTLS)``, ``… (the next hop
                   refused STARTTLS: <its reply>)``, ``… (TLS handshake with the next hop
                   failed (<OpenSSL's or service-identity's reason>))``
  XCLIENT          ``451 Unable to queue message (Server does not advertise XCLIENT
                   support)``, ``… (XCLIENT failed)``, ``… (HELLO after XCLIENT failed)``
The first refused recipient ends the transaction (RSET is not needed: the connection is
closed with QUIT), so nothing is delivered to the others: our client gets one reply for the
whole message and sends it again (4xx) or bounces it (5xx) for everyone.

LMTP after the message (``partial accept``): all recipients accepted → 250. None accepted → 451 if any failure
was temporary (or got no reply), else 552, with every recipient's reply as one line.
Some accepted and some not → ``250``: the message is in some mailboxes already, and RFC 5321
§4.4 says a partially successful delivery MUST get an OK reply; a 4xx would make our client
send it again to everyone (a duplicate for those who have it, at each retry, for days), a 5xx
would tell it that nobody got it. The reply lists who did not get it (``delivered to N of M
recipients``, then ``not delivered to <addr>: <code> <text>`` per failure); each of those is
logged at LOGERROR and recorded in the transaction note ``lmtp_failed_recipients``
(``[(address, code, text)]``) for a ``queue_post`` plugin. §4.4 also asks for a bounce to the
sender, which this plugin cannot send (it has no queue). Postfix, as an LMTP client, does not
face this: its lmtp(8) marks each recipient done in its queue file and defers or bounces the
others one by one; a front end without a queue cannot, so watch the log for these lines.

Differences from qpsmtpd 0.94 (which used Net::SMTP):
  - 0.94 answers every refusal with ``451 Unable to queue message (…)`` (qpsmtpd issue #150:
    an unknown user was retried for days); here a 5xx of the next hop is a 5xx (552) with
    its text, and a 4xx is passed on with its text.
  - 0.94 answered 451 (a duplicate on retry) when QUIT failed after the message was taken;
    here a successful delivery is a 250 whatever happens after.
  - LMTP, IPv6 literals, unix sockets and ``timeout`` are new; ``xclient`` and ``lmtp`` are
    also accepted right after HOST (0.94 reads flags from the third argument on), and an
    unknown flag stops start-up (0.94 warns and goes on). XCLIENT values are xtext-encoded.
  - ``pool`` is new (0.94 opened a connection per message), as are PIPELINING to the next
    hop and ``pool_idle``/``pool_messages``.
  - STARTTLS is new (0.94's Net::SMTP spoke plaintext only); opportunistic by default, so a
    next hop that offers STARTTLS now gets the message encrypted.
  - Addresses are sent as valid paths: a local part that needs quoting stays quoted (0.94
    sends it unquoted).
"""

import ipaddress
import os
import re

from twisted.internet import defer, reactor
from twisted.internet.endpoints import connectProtocol

from qpsmtpd_tx import client_tls, outcomes, pool as pools, refused as refused_copies
from qpsmtpd_tx.codes import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd_tx.endpoints import ServerAddress, describe_failure as _describe
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.smtp_client import (  # noqa: F401 (encode_message, Reply: for the tests)
    NextHopError, NextHopProtocol, Refused as _Refused, Reply, TlsFailed, encode_message,
    parse_capabilities, safe_to_retry, send_transaction)

DEFAULT_TIMEOUT = 60.0
#: the reply to the end of the message may take this many times ``timeout``
DATA_END_FACTOR = 5
#: XCLIENT commands are kept below this many bytes of attributes (as qpsmtpd)
XCLIENT_CHUNK = 500
_HOST = re.compile(r"[\w.-]+\Z")
TLS_MODES = ("none", "may", "require", "verify")
#: LMTP, some recipients refused after the message: 250 for the others, or 451 for all
PARTIAL_MODES = ("accept", "defer")
#: ``pool``: seconds an idle connection is kept, and messages per connection (defaults)
POOL_IDLE = 10.0
POOL_MESSAGES = 100


class ConnectFailed(NextHopError):
    """No connection to the next hop (the text names it and says why)."""


#: transaction note of ``proxy`` mode: the ProxyState of the transaction open at the hop
PROXY_NOTE = "smtp_forward_proxy"


class ProxyState:
    """``proxy`` mode: the connection to the next hop opened at MAIL (``hop``), whether its
    transaction is still open (MAIL sent, no DATA yet) and the recipients it took there."""

    def __init__(self, hop):
        self.hop = hop
        self.open = True
        self.recipients = []


def xtext(value):
    """RFC 3461 xtext: ``+``, ``=``, controls, space and non-ASCII as ``+HH``."""
    out = []
    for byte in value.encode("utf-8", "surrogateescape"):
        if byte < 33 or byte > 126 or byte in (0x2B, 0x3D):
            out.append("+%02X" % byte)
        else:
            out.append(chr(byte))
    return "".join(out)


def _describe_tls(details):
    """The log's words for the hop's TLS: ``TLSv1.3 TLS_AES_256_GCM_SHA384 (256 bits), certificate
    verified for NAME`` / ``not verified``, or ``no TLS``."""
    if not details:
        return "no TLS"
    return "%s %s (%d bits), certificate %s" % (
        details["protocol"], details["cipher"], details["bits"],
        "verified for %s" % details["name"] if details["verified"] else "not verified")


class SmtpForward(Plugin):
    """Forward to another SMTP or LMTP server, passing its refusals on."""

    def init(self, args):
        usage = ("usage: queue/smtp-forward HOST [PORT] [xclient] [lmtp] [proxy] "
                 "[partial accept|defer] [timeout SECONDS] [tls none|may|require|verify] "
                 "[tls_ca FILE] [tls_name NAME] [pool N] [pool_idle SECONDS] "
                 "[pool_messages N]")
        if not args:
            raise PluginError("No SMTP server specified in smtp-forward config (%s)" % usage)
        args = list(args)
        host = args.pop(0)
        self.port = None
        if args and args[0].isdigit():
            self.port = int(args.pop(0))
            if not 0 < self.port < 65536:
                raise PluginError("bad port %d" % self.port)
        self.xclient = self.lmtp = self.proxy = False
        self.partial = None
        self.timeout = DEFAULT_TIMEOUT
        self.tls = "may"
        tls_ca = tls_name = None
        pool = {"pool": 0, "pool_idle": POOL_IDLE, "pool_messages": POOL_MESSAGES}
        while args:
            flag = args.pop(0)
            if flag.lower() == "xclient":
                self.xclient = True
            elif flag.lower() == "lmtp":
                self.lmtp = True
            elif flag.lower() == "proxy":
                self.proxy = True
            elif flag.lower() == "partial" and args:
                self.partial = args.pop(0).lower()
                if self.partial not in PARTIAL_MODES:
                    raise PluginError("partial must be one of %s" % ", ".join(PARTIAL_MODES))
            elif flag.lower() == "timeout" and args:
                try:
                    self.timeout = float(args.pop(0))
                except ValueError:
                    raise PluginError("timeout must be a number of seconds")
                if self.timeout <= 0:
                    raise PluginError("timeout must be positive")
            elif flag.lower() == "tls" and args:
                self.tls = args.pop(0).lower()
                if self.tls not in TLS_MODES:
                    raise PluginError("tls must be one of %s" % ", ".join(TLS_MODES))
            elif flag.lower() == "tls_ca" and args:
                tls_ca = args.pop(0)
            elif flag.lower() == "tls_name" and args:
                tls_name = args.pop(0)
            elif flag.lower() in pool and args:
                try:
                    pool[flag.lower()] = pools.parse_setting(flag.lower(), args.pop(0))
                except ValueError as e:
                    raise PluginError(str(e))
            else:
                raise PluginError("unknown argument %r (%s)" % (flag, usage))
        if self.partial is None:
            self.partial = "defer" if self.proxy else "accept"
        self._pool_setup(pool)
        if (tls_ca or tls_name) and self.tls != "verify":
            raise PluginError("tls_ca and tls_name need 'tls verify'")
        if host.startswith("/"):
            if self.port is not None:
                raise PluginError("a unix socket (%s) takes no port" % host)
            if self.tls == "verify" and not tls_name:
                raise PluginError("tls verify to a unix socket needs tls_name")
            self.address = ServerAddress(path=host)
            self._tls_setup(tls_name, tls_ca)
            return
        if host.startswith("[") and host.endswith("]"):
            try:
                host = str(ipaddress.ip_address(host[1:-1]))
            except ValueError:
                raise PluginError("Bad data in smtp server: %s" % host)
        elif not _HOST.match(host):
            raise PluginError("Bad data in smtp server: %s" % host)
        if self.port is None:
            self.port = 24 if self.lmtp else 25
        self.address = ServerAddress(host=host, port=self.port)
        self._tls_setup(tls_name or host, tls_ca)

    def _pool_setup(self, settings):
        """``pool N``: keep up to N idle connections to the next hop (see the docstring)."""
        self.pool = None
        if not settings["pool"]:
            return
        for flag in ("xclient", "proxy"):
            if getattr(self, flag):
                raise PluginError("pool cannot be combined with %s (%s)" % (flag, {
                    "xclient": "a connection carries one client's identity",
                    "proxy": "each transaction has its own connection, opened at MAIL"}[flag]))
        self.pool = pools.Pool(self._open, settings["pool"], settings["pool_idle"],
                               settings["pool_messages"])

    def stop(self):
        """Close the idle pooled connections (QUIT)."""
        if self.pool is not None:
            return self.pool.stop()

    def _tls_setup(self, name, ca):
        """Build the STARTTLS options once; ``name``/``ca`` only count for ``tls verify``."""
        self.tls_name = name if self.tls == "verify" else None
        trust_root = None
        if self.tls == "verify" and ca:
            # relative to the first config directory, as the tls plugin's paths (an absolute
            # path stays as it is); without --config that is config/ beside the program
            ca = os.path.join(os.path.abspath(self.server.config.search_dirs()[0]), ca)
            try:
                trust_root = client_tls.load_trust_root(ca)
            except ValueError as e:
                raise PluginError(str(e))
        self.tls_options = client_tls.client_options(self.tls_name, trust_root)

    # -- proxy mode: the transaction at the next hop follows the client's ---------------------

    def hook_mail(self, transaction, sender, params):
        if not self.proxy:
            return DECLINED
        return defer.Deferred.fromCoroutine(self._proxy_mail(transaction, sender))

    async def _proxy_mail(self, transaction, sender):
        """Open the connection and say MAIL; the hop's refusal is the client's reply."""
        self._proxy_close(transaction)
        try:
            state = await self._proxy_open(transaction, sender)
        except _Refused as refused:
            self.log(LOGINFO, "%s refused %s: %s" % (self.address, refused.stage, refused.reply),
                     transaction)
            kind = DENY if refused.reply is not None and refused.reply.code // 100 == 5 \
                else DENYSOFT
            return kind, self._reply_lines(refused.reply, refused.stage)
        except NextHopError as e:
            self.log(LOGERROR, "%s" % e if isinstance(e, ConnectFailed)
                     else "%s: %s" % (self.address, e), transaction)
            return DENYSOFT, "Unable to reach the next hop, try again later"
        transaction.notes[PROXY_NOTE] = state
        return DECLINED

    async def _proxy_open(self, transaction, sender):
        hop = await self._open(transaction)
        path = sender.format() if sender is not None else "<>"
        try:
            reply = await hop.command("MAIL FROM:%s" % path)
        except BaseException:
            hop.quit()
            raise
        if reply.code // 100 != 2:
            hop.quit()
            raise _Refused("MAIL FROM:%s" % path, reply)
        return ProxyState(hop)

    def confirm_recipient(self, transaction, recipient):
        """``proxy``: RCPT at the next hop for a recipient we accepted; its refusal is the
        client's reply (``(code, text)``), None when the hop took it."""
        if not self.proxy:
            return None
        return defer.Deferred.fromCoroutine(self._proxy_rcpt(transaction, recipient))

    async def _proxy_rcpt(self, transaction, recipient):
        state = transaction.notes.get(PROXY_NOTE)
        try:
            if state is None or state.hop.closed or state.hop.error is not None:
                # MAIL was decided before our mail hook ran, or the connection was lost
                self._proxy_close(transaction)
                state = transaction.notes[PROXY_NOTE] = await self._proxy_open(
                    transaction, transaction.sender)
            path = recipient.format()
            reply = await state.hop.command("RCPT TO:%s" % path)
        except _Refused as refused:
            self._proxy_close(transaction)
            return refused.reply.code, self._reply_lines(refused.reply, refused.stage)
        except NextHopError as e:
            self._proxy_close(transaction)
            self.log(LOGERROR, "%s" % e if isinstance(e, ConnectFailed)
                     else "%s: %s" % (self.address, e), transaction)
            return 451, "4.4.1 Unable to reach the next hop, try again later"
        if reply.code // 100 != 2:
            self.log(LOGINFO, "%s refused RCPT TO:%s: %s" % (self.address, path, reply),
                     transaction)
            return reply.code, self._reply_lines(reply, "RCPT")
        if path not in state.recipients:
            state.recipients.append(path)
        return None

    def hook_reset_transaction(self, transaction):
        """The client's transaction ends (message answered, RSET, MAIL, QUIT, lost): so does
        the one at the next hop (QUIT; a transaction without DATA delivers nothing)."""
        self._proxy_close(transaction)
        return DECLINED

    def _proxy_close(self, transaction):
        state = transaction.notes.pop(PROXY_NOTE, None)
        if state is not None:
            state.hop.quit()

    @staticmethod
    def _reply_lines(reply, stage):
        lines = [line for line in reply.lines if line] if reply is not None else []
        return lines or ["Unable to queue message (the next hop refused %s)" % stage]

    def hook_queue(self, transaction):
        # Take the message now: the body must stay readable even if the client goes away and
        # the transaction's spool is deleted while we are still talking to the next hop.
        message = (transaction.header_bytes(), transaction.body.open())
        return defer.Deferred.fromCoroutine(self._forward(transaction, message))

    async def _forward(self, transaction, message):
        header, body = message
        proxied = transaction.notes.get(PROXY_NOTE)
        hop = proxied.hop if proxied is not None and not proxied.hop.closed else None
        try:
            self.log(LOGINFO, "forwarding to %s%s%s" % (
                self.address, " (LMTP)" if self.lmtp else "",
                ", on the connection opened at MAIL" if hop is not None else ""), transaction)
            if hop is None and self.pool is not None:
                return await self.pool.run(
                    lambda pooled: self._deliver_pooled(pooled, transaction, header, body),
                    safe_to_retry, lambda e: self.log(LOGWARN, "%s: %s on a reused connection; "
                                                      "once more on a new one" % (self.address, e),
                                                      transaction),
                    context=transaction)
            if hop is None:
                hop = await self._open(transaction)
                proxied = None
            return await self._deliver(hop, proxied, transaction, header, body)
        except _Refused as refused:
            return self._refused(transaction, refused)
        except ConnectFailed as e:
            self.log(LOGERROR, str(e), transaction)
            return DECLINED, "Unable to queue message (%s)" % e
        except NextHopError as e:
            self.log(LOGERROR, "%s: %s" % (self.address, e), transaction)
            return DECLINED, "Unable to queue message (%s)" % e
        finally:
            body.close()
            if proxied is None and hop is not None:
                hop.quit()

    async def _deliver_pooled(self, hop, transaction, header, body):
        """One message on a pooled connection (RSET first if it carried one before)."""
        transaction.notes["smtp_forward_tls"] = hop.tls_details
        if hop.uses:
            self.log(LOGINFO, "%s: reusing a connection (message %d on it)" % (
                self.address, hop.uses + 1), transaction)
        return await self._deliver(hop, None, transaction, header, body, reset=hop.uses > 0)

    async def _open(self, transaction):
        """A connection ready for MAIL (greeted, EHLO/LHLO, STARTTLS as ``tls`` says,
        XCLIENT); with ``tls may`` a failed handshake is tried once more in plaintext.
        Raises ConnectFailed, NextHopError or _Refused (XCLIENT)."""
        tls = self.tls
        while True:
            try:
                return await self._connect(transaction, tls)
            except TlsFailed as e:
                if tls != "may":
                    raise
                # opportunistic: nothing of the message has been sent; once more in plaintext
                self.log(LOGWARN, "%s: %s; trying again without TLS" % (self.address, e),
                         transaction)
                tls = "none"

    async def _connect(self, transaction, tls):
        """One connection to the next hop, up to MAIL; raises TlsFailed if STARTTLS's
        handshake failed."""
        hop = NextHopProtocol(self.timeout)
        try:
            connecting = connectProtocol(self.address.endpoint(self.timeout), hop)
            connecting.addTimeout(self.timeout, reactor)
            await connecting
        except Exception as e:
            raise ConnectFailed("cannot connect to %s: %s" % (self.address, _describe(e)))
        if self.address.path is None:
            # commands and the message's last piece are small writes: without this, on a
            # reused connection each may wait for the hop's delayed ACK (40 ms on Linux)
            hop.transport.setTcpNoDelay(True)
        try:
            greeting = await hop.reply()
            if greeting.code // 100 != 2:
                raise NextHopError("the next hop greets with %s" % greeting)
            capabilities = await self._hello(hop, self.server.me)
            if capabilities is None:
                raise NextHopError("%s refused" % ("LHLO" if self.lmtp else "EHLO"))
            capabilities = await self._starttls(hop, transaction, capabilities, tls)
            hop.capabilities = capabilities
            if self.xclient:
                await self._send_xclient(hop, transaction, capabilities)
        except BaseException:
            hop.quit()
            raise
        return hop

    async def _starttls(self, hop, transaction, capabilities, tls):
        """STARTTLS as ``tls`` asks (see the docstring); the capabilities said again inside TLS."""
        transaction.notes["smtp_forward_tls"] = None
        if tls == "none":
            return capabilities
        required = tls in ("require", "verify")
        if "STARTTLS" not in capabilities:
            if required:
                raise NextHopError("the next hop does not offer STARTTLS")
            return capabilities
        reply = await hop.starttls(self.tls_options)
        if reply.code != 220:
            if required:
                raise NextHopError("the next hop refused STARTTLS: %s" % reply)
            self.log(LOGWARN, "%s refused STARTTLS (%s); going on without TLS" % (self.address, reply),
                     transaction)
            return capabilities
        capabilities = await self._hello(hop, self.server.me)
        if capabilities is None:
            raise NextHopError("%s refused after STARTTLS" % ("LHLO" if self.lmtp else "EHLO"))
        if hop.tls_state != "tls":
            raise NextHopError("the next hop answered before the TLS handshake was done")
        details = client_tls.session_details(hop.transport)
        details["verified"] = self.tls_name is not None
        details["name"] = self.tls_name
        transaction.notes["smtp_forward_tls"] = hop.tls_details = details
        self.log(LOGINFO, "%s: %s" % (self.address, _describe_tls(details)), transaction)
        return capabilities

    async def _hello(self, hop, name):
        """EHLO (or LHLO; HELO if EHLO is refused); the capabilities, or None if refused."""
        reply = await hop.command("%s %s" % ("LHLO" if self.lmtp else "EHLO", name))
        if reply.code // 100 != 2 and not self.lmtp:
            reply = await hop.command("HELO %s" % name)
            if reply.code // 100 == 2:
                return {}
        if reply.code // 100 != 2:
            return None
        return parse_capabilities(reply)

    async def _deliver(self, hop, proxied, transaction, header, body, reset=False):
        """The envelope (unless the proxy's open transaction at the hop has exactly these
        recipients: then only DATA), the message, and the hop's verdict. ``reset``: RSET
        first (a pooled connection that carried a message before)."""
        wanted = [r.format() for r in transaction.recipients]
        if proxied is not None and proxied.open and proxied.recipients == wanted:
            proxied.open = False      # the next copy starts its own transaction at the hop
            reply = await hop.command("DATA")
            if reply.code != 354:
                raise _Refused("DATA", reply)
            await hop.send_message(header, body)
        else:
            if proxied is not None:
                reset, proxied.open = reset or proxied.open, False
            sender = transaction.sender.format() if transaction.sender else "<>"
            await send_transaction(hop, sender, wanted, header, body, reset)
        if self.lmtp:
            return await self._lmtp_replies(hop, transaction)
        reply = await hop.reply(self.timeout * DATA_END_FACTOR)
        if reply.code // 100 != 2:
            raise _Refused("end of data", reply)
        words = reply.text.split()
        qid = words[-1] if words else ""
        self.log(LOGINFO, "finished queueing: %s (%s)" % (
            reply, _describe_tls(transaction.notes.get("smtp_forward_tls"))), transaction)
        return OK, "queued as %s" % qid

    async def _send_xclient(self, hop, transaction, capabilities):
        if "XCLIENT" not in capabilities:
            raise _XclientError("Server does not advertise XCLIENT support")
        wanted = {word.upper() for word in capabilities["XCLIENT"]}
        conn = transaction.connection
        hello_name = conn.hello_host or "[UNAVAILABLE]"
        attributes = []
        if "NAME" in wanted:
            name = conn.remote_host or "[UNAVAILABLE]"
            if name == "Unknown":
                name = "[UNAVAILABLE]"
            attributes.append("NAME=" + xtext(name))
        if "ADDR" in wanted and conn.remote_ip:
            ip = conn.remote_ip
            attributes.append("ADDR=" + xtext("IPV6:" + ip if ":" in ip else ip))
        if "PORT" in wanted and conn.remote_port:
            attributes.append("PORT=%d" % conn.remote_port)
        if "HELO" in wanted:
            attributes.append("HELO=" + xtext(hello_name))
        if "PROTO" in wanted and conn.hello:
            attributes.append("PROTO=" + ("ESMTP" if conn.hello.lower() == "ehlo" else "SMTP"))
        while attributes:
            chunk = [attributes.pop(0)]
            while attributes and len(" ".join(chunk + attributes[:1])) <= XCLIENT_CHUNK:
                chunk.append(attributes.pop(0))
            reply = await hop.command("XCLIENT " + " ".join(chunk))
            if reply.code // 100 != 2:
                raise _XclientError("XCLIENT failed", reply)
        if await self._hello(hop, hello_name) is None:
            raise _XclientError("HELLO after XCLIENT failed")

    async def _lmtp_replies(self, hop, transaction):
        """One reply per recipient (RFC 2033 4.2); decide the one reply for our client."""
        results = []
        error = None
        for rcpt in transaction.recipients:
            if error is None:
                try:
                    results.append((rcpt, await hop.reply(self.timeout * DATA_END_FACTOR)))
                    continue
                except NextHopError as e:
                    error = e
            results.append((rcpt, None))
        delivered = [(r, reply) for r, reply in results if reply is not None and reply.code // 100 == 2]
        failed = [(r, reply) for r, reply in results if reply is None or reply.code // 100 != 2]
        for rcpt, reply in delivered:
            self.log(LOGINFO, "delivered to %s: %s" % (rcpt.format(), reply), transaction)
        if not failed:
            return OK, [reply.text for _, reply in delivered]

        def failure_text(reply):
            return reply.text if reply is not None else "Unable to queue message (%s)" % error

        if not delivered:
            temporary = any(reply is None or reply.code // 100 != 5 for _, reply in failed)
            for rcpt, reply in failed:
                self.log(LOGERROR, "not delivered to %s: %s" % (
                    rcpt.format(), reply if reply is not None else error), transaction)
            return (DECLINED if temporary else DENY), [failure_text(reply) for _, reply in failed]
        if self.partial == "defer":
            return await self._partial_as_table(transaction, delivered, failed, failure_text)
        # A partial delivery: the message is in some mailboxes already; see the docstring.
        notes = transaction.notes.setdefault("lmtp_failed_recipients", [])
        lines = ["delivered to %d of %d recipients" % (len(delivered), len(results))]
        for rcpt, reply in failed:
            code = reply.code if reply is not None else 451
            text = failure_text(reply)
            notes.append((rcpt.address, code, text))
            self.log(LOGERROR, "partial delivery: NOT delivered to %s (%d %s); the sender "
                     "gets 250 for the others and no bounce" % (rcpt.format(), code, text),
                     transaction)
            lines.append("not delivered to %s: %d %s" % (rcpt.format(), code, text))
        return OK, lines

    async def _partial_as_table(self, transaction, delivered, failed, failure_text):
        """``partial defer``: README's outcome table for refusals after the message. Any
        temporary one: 451 for everyone (a retry gives those who have it a duplicate: the
        price of losing nothing). Only permanent ones: 250, their copies quarantined."""
        lines = ["not delivered to %s: %s" % (rcpt.format(), failure_text(reply))
                 for rcpt, reply in failed]
        if any(reply is None or reply.code // 100 != 5 for _, reply in failed):
            self.log(LOGERROR, "partial delivery with a temporary failure: answering 451 for "
                     "all %d recipients; %s already have it and get it again at the retry (%s)"
                     % (len(delivered) + len(failed), ", ".join(r.format() for r, _ in delivered),
                        "; ".join(lines)), transaction)
            return DECLINED, lines
        refusals = [(rcpt, outcomes.Outcome(outcomes.REJECT, reply.code, reply.text, self.name))
                    for rcpt, reply in failed]
        try:
            await defer.maybeDeferred(refused_copies.after_delivery, self.server, transaction,
                                      refusals, self.log)
        except Exception as e:
            self.log(LOGERROR, "cannot quarantine the refused copies (%s): answering 451 for "
                     "all" % e, transaction)
            return DECLINED, "Unable to queue message (quarantine failed)"
        return OK, ["delivered to %d of %d recipients" % (len(delivered),
                                                          len(delivered) + len(failed))] + lines

    def _refused(self, transaction, refused):
        reply = refused.reply
        if isinstance(refused, _XclientError):
            self.log(LOGERROR, "%s: %s%s" % (self.address, refused.stage,
                                             " (%s)" % reply if reply else ""), transaction)
            return DECLINED, "Unable to queue message (%s)" % refused.stage
        self.log(LOGWARN if reply.code // 100 == 5 else LOGERROR,
                 "%s refused %s: %s" % (self.address, refused.stage, reply), transaction)
        lines = [line for line in reply.lines if line] or [
            "Unable to queue message (the next hop answered %d)" % reply.code]
        if reply.code // 100 == 5:
            return DENY, lines
        if reply.code // 100 == 4:
            return DECLINED, lines
        return DECLINED, "Unable to queue message (unexpected reply to %s: %s)" % (
            refused.stage.split(":")[0], reply)


class _XclientError(_Refused):
    """XCLIENT could not be done; qpsmtpd's texts."""

    def __init__(self, stage, reply=None):
        _Refused.__init__(self, stage, reply)

