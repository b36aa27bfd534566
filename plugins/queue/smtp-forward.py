"""queue/smtp-forward — relay each accepted message to the next hop over SMTP or LMTP.

For every message the plugin opens a connection to the next hop, says EHLO (LHLO in LMTP
mode) with this server's ``me``, optionally XCLIENT, then MAIL, one RCPT per recipient, DATA,
the message (CRLF line endings, dot-stuffed) and QUIT. The client is answered only after the
next hop has answered the end of the message. Addresses travel as SMTP paths
(``<user@host>``, quoted local parts kept quoted), never through a shell.

Arguments: ``HOST [PORT] [xclient] [lmtp] [timeout SECONDS]``
  ``HOST``     the next hop: a host name or IPv4 address (``[\\w.-]+``, as qpsmtpd), an IPv6
               address in brackets (``[2001:db8::25]``), or the absolute path of a unix socket
               (``/run/dovecot/lmtp``; no PORT then). Connected to directly, no MX lookup.
  ``PORT``     the TCP port (default 25; 24 in LMTP mode).
  ``xclient``  send Postfix's XCLIENT (NAME ADDR PORT HELO PROTO, those the next hop
               advertises; values xtext-encoded, IPv6 addresses with ``IPV6:``) so that it
               sees the original client, then EHLO/LHLO again with the client's HELO name.
  ``lmtp``     speak LMTP (RFC 2033): LHLO, and one reply per recipient after the message.
  ``timeout``  seconds to wait for the connection and for each reply (default 60, Net::SMTP's
               value in qpsmtpd); the reply to the end of the message may take five times as
               long (default 300 s, below the 10 minutes RFC 5321 gives our client).

Config files: ``me`` (the EHLO name).

Replies:
  success (SMTP)   ``250 queued as <last word of the next hop's reply>`` (its queue id)
  success (LMTP)   ``250`` with the next hop's reply text for each recipient, one per line
  the next hop refuses MAIL, a RCPT, DATA or the message with a 5xx
                   → DENY with its text (the core answers ``552 <its text>``)
  ... with a 4xx   → DECLINED with its text (``451 <its text>``, unless a later queue plugin
                   takes the message)
  cannot connect, no greeting, EHLO refused, timeout, connection lost, garbled reply
                   → DECLINED ``Unable to queue message (<why>)`` → ``451``
  XCLIENT          ``451 Unable to queue message (Server does not advertise XCLIENT
                   support)``, ``… (XCLIENT failed)``, ``… (HELLO after XCLIENT failed)``
The first refused recipient ends the transaction (RSET is not needed: the connection is
closed with QUIT), so nothing is delivered to the others: our client gets one reply for the
whole message and sends it again (4xx) or bounces it (5xx) for everyone.

LMTP after the message: all recipients accepted → 250. None accepted → 451 if any failure
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
  - Addresses are sent as valid paths: a local part that needs quoting stays quoted (0.94
    sends it unquoted).
"""

import ipaddress
import re

from twisted.internet import defer, reactor
from twisted.internet.endpoints import connectProtocol
from twisted.protocols.basic import LineReceiver

from qpsmtpd_tx.client import MessageProducer, TimedClient
from qpsmtpd_tx.codes import DECLINED, DENY, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd_tx.endpoints import ServerAddress, describe_failure as _describe
from qpsmtpd_tx.plugin import Plugin, PluginError

DEFAULT_TIMEOUT = 60.0
#: the reply to the end of the message may take this many times ``timeout``
DATA_END_FACTOR = 5
#: XCLIENT commands are kept below this many bytes of attributes (as qpsmtpd)
XCLIENT_CHUNK = 500
_HOST = re.compile(r"[\w.-]+\Z")


class NextHopError(Exception):
    """The conversation with the next hop failed without a reply that says why."""


class Reply:
    """One reply of the next hop: its code and text lines."""

    def __init__(self, code, lines):
        self.code = code
        self.lines = lines

    @property
    def text(self):
        return " ".join(line for line in self.lines if line)

    def __str__(self):
        return ("%d %s" % (self.code, self.text)).strip()

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.lines)


def xtext(value):
    """RFC 3461 xtext: ``+``, ``=``, controls, space and non-ASCII as ``+HH``."""
    out = []
    for byte in value.encode("utf-8", "surrogateescape"):
        if byte < 33 or byte > 126 or byte in (0x2B, 0x3D):
            out.append("+%02X" % byte)
        else:
            out.append(chr(byte))
    return "".join(out)


def encode_message(data, at_line_start):
    """LF → CRLF and dot-stuffing for one chunk; returns (bytes, ends at a line start)."""
    out = data.replace(b"\n.", b"\n..")
    if at_line_start and data[:1] == b".":
        out = b"." + out
    return out.replace(b"\n", b"\r\n"), data.endswith(b"\n")


class _MessageProducer(MessageProducer):
    """Writes header, body and the final dot to the next hop, a chunk per request."""

    def __init__(self, hop, header, body):
        MessageProducer.__init__(self, hop, header, body)
        self.at_line_start = True

    def produce(self):
        data = self.read()
        if data:
            encoded, self.at_line_start = encode_message(data, self.at_line_start)
            self.client.transport.write(encoded)
            return
        self.client.transport.write((b"" if self.at_line_start else b"\r\n") + b".\r\n")
        self.finish()

    def stopped_error(self):
        return NextHopError("connection lost while sending the message")


class NextHopProtocol(TimedClient, LineReceiver):
    """A small SMTP/LMTP client: send a line, wait for the reply; every wait has a timeout."""

    delimiter = b"\n"
    MAX_LENGTH = 65536

    def __init__(self, timeout, clock=reactor):
        TimedClient.__init__(self, timeout, clock)
        self._partial = []

    # -- receiving -----------------------------------------------------------------------------

    def dataReceived(self, data):
        self.touch()
        LineReceiver.dataReceived(self, data)

    def lineReceived(self, line):
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if len(text) < 3 or not text[:3].isdigit() or text[3:4] not in ("", " ", "-"):
            self.fail(NextHopError("garbled reply from the next hop: %r" % text[:80]))
            return
        self._partial.append(text[4:])
        if text[3:4] == "-":
            return
        reply, self._partial = Reply(int(text[:3]), self._partial), []
        self.item_arrived(reply)

    def lineLengthExceeded(self, line):
        self.fail(NextHopError("reply line longer than %d bytes from the next hop" % self.MAX_LENGTH))

    def lost_error(self, reason):
        return NextHopError("connection to the next hop lost (%s)" % reason.getErrorMessage())

    def timeout_error(self, seconds, doing):
        return NextHopError("the next hop did not answer within %g seconds" % seconds)

    # -- waiting -------------------------------------------------------------------------------

    def reply(self, timeout=None):
        """A Deferred firing with the next Reply (fails on timeout or a lost connection)."""
        return self.next_item(timeout)

    def command(self, line, timeout=None):
        """Send one command line; a Deferred firing with its Reply."""
        self.transport.write(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return self.reply(timeout)

    def send_message(self, header, body):
        """Send the message and the final dot; a Deferred firing when all is written."""
        return self.send_with(_MessageProducer(self, header, body))

    def quit(self):
        """Say QUIT, close once it is answered (or after the timeout); nobody waits for it."""
        if self.closed or self.error is not None:
            if not self.closed:
                self.transport.abortConnection()
            return
        d = self.command("QUIT")
        d.addBoth(lambda _: None if self.closed else self.transport.loseConnection())


class _Refused(Exception):
    """The next hop refused with ``reply`` at ``stage``; ``temporary`` when not its decision."""

    def __init__(self, stage, reply):
        Exception.__init__(self, stage, reply)
        self.stage = stage
        self.reply = reply


class SmtpForward(Plugin):
    """Forward to another SMTP or LMTP server, passing its refusals on."""

    def init(self, args):
        usage = "usage: queue/smtp-forward HOST [PORT] [xclient] [lmtp] [timeout SECONDS]"
        if not args:
            raise PluginError("No SMTP server specified in smtp-forward config (%s)" % usage)
        args = list(args)
        host = args.pop(0)
        self.port = None
        if args and args[0].isdigit():
            self.port = int(args.pop(0))
            if not 0 < self.port < 65536:
                raise PluginError("bad port %d" % self.port)
        self.xclient = self.lmtp = False
        self.timeout = DEFAULT_TIMEOUT
        while args:
            flag = args.pop(0)
            if flag.lower() == "xclient":
                self.xclient = True
            elif flag.lower() == "lmtp":
                self.lmtp = True
            elif flag.lower() == "timeout" and args:
                try:
                    self.timeout = float(args.pop(0))
                except ValueError:
                    raise PluginError("timeout must be a number of seconds")
                if self.timeout <= 0:
                    raise PluginError("timeout must be positive")
            else:
                raise PluginError("unknown argument %r (%s)" % (flag, usage))
        if host.startswith("/"):
            if self.port is not None:
                raise PluginError("a unix socket (%s) takes no port" % host)
            self.address = ServerAddress(path=host)
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

    def hook_queue(self, transaction):
        # Take the message now: the body must stay readable even if the client goes away and
        # the transaction's spool is deleted while we are still talking to the next hop.
        message = (transaction.header_bytes(), transaction.body.open())
        return defer.Deferred.fromCoroutine(self._forward(transaction, message))

    async def _forward(self, transaction, message):
        header, body = message
        try:
            self.log(LOGINFO, "forwarding to %s%s" % (self.address, " (LMTP)" if self.lmtp else ""),
                     transaction)
            hop = NextHopProtocol(self.timeout)
            try:
                connecting = connectProtocol(self.address.endpoint(self.timeout), hop)
                connecting.addTimeout(self.timeout, reactor)
                await connecting
            except Exception as e:
                why = "cannot connect to %s: %s" % (self.address, _describe(e))
                self.log(LOGERROR, why, transaction)
                return DECLINED, "Unable to queue message (%s)" % why
            try:
                return await self._talk(hop, transaction, header, body)
            except _Refused as refused:
                return self._refused(transaction, refused)
            except NextHopError as e:
                self.log(LOGERROR, "%s: %s" % (self.address, e), transaction)
                return DECLINED, "Unable to queue message (%s)" % e
            finally:
                hop.quit()
        finally:
            body.close()

    async def _hello(self, hop, name):
        """EHLO (or LHLO; HELO if EHLO is refused); the capabilities, or None if refused."""
        reply = await hop.command("%s %s" % ("LHLO" if self.lmtp else "EHLO", name))
        if reply.code // 100 != 2 and not self.lmtp:
            reply = await hop.command("HELO %s" % name)
            if reply.code // 100 == 2:
                return {}
        if reply.code // 100 != 2:
            return None
        capabilities = {}
        for line in reply.lines[1:]:
            words = line.split()
            if words:
                capabilities[words[0].upper()] = words[1:]
        return capabilities

    async def _talk(self, hop, transaction, header, body):
        greeting = await hop.reply()
        if greeting.code // 100 != 2:
            raise NextHopError("the next hop greets with %s" % greeting)
        capabilities = await self._hello(hop, self.server.me)
        if capabilities is None:
            raise NextHopError("%s refused" % ("LHLO" if self.lmtp else "EHLO"))
        if self.xclient:
            await self._send_xclient(hop, transaction, capabilities)

        sender = transaction.sender.format() if transaction.sender else "<>"
        reply = await hop.command("MAIL FROM:%s" % sender)
        if reply.code // 100 != 2:
            raise _Refused("MAIL FROM:%s" % sender, reply)
        for rcpt in transaction.recipients:
            reply = await hop.command("RCPT TO:%s" % rcpt.format())
            if reply.code // 100 != 2:
                raise _Refused("RCPT TO:%s" % rcpt.format(), reply)
        reply = await hop.command("DATA")
        if reply.code != 354:
            raise _Refused("DATA", reply)
        await hop.send_message(header, body)
        if self.lmtp:
            return await self._lmtp_replies(hop, transaction)
        reply = await hop.reply(self.timeout * DATA_END_FACTOR)
        if reply.code // 100 != 2:
            raise _Refused("end of data", reply)
        words = reply.text.split()
        qid = words[-1] if words else ""
        self.log(LOGINFO, "finished queueing: %s" % reply, transaction)
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

