"""queue/postfix-queue — hand each accepted message to Postfix's cleanup service.

The plugin talks to Postfix's ``cleanup`` daemon directly, the way Postfix's own smtpd and
pickup do: it connects to the cleanup socket, reads the queue id cleanup assigns, sends the
processing flags, then the envelope and the message as queue-file records, and waits for
cleanup's verdict. The client is answered only after cleanup has written the queue file
(Postfix then delivers it as any other mail), and the reply carries Postfix's queue id, so
log lines of both servers can be matched. Nothing runs a program or a shell: the sender and
the recipients travel as protocol fields.

Arguments: ``[SOCKET] [FLAG_...] [timeout SECONDS]``
  ``SOCKET``   where cleanup listens: an absolute path of a unix socket (default
               ``/var/spool/postfix/public/cleanup``) or ``host:port`` (``[ipv6]:port``)
               for a cleanup service on a TCP port of master.cf.
  ``FLAG_...`` cleanup processing flags, added together (none by default):
               ``FLAG_NONE`` (0), ``FLAG_BOUNCE`` (1: cleanup bounces a bad message to its
               sender instead of refusing it, and the client gets 250), ``FLAG_FILTER``
               (2: header_checks, body_checks and content_filter apply), ``FLAG_HOLD`` (4:
               put the message on hold), ``FLAG_DISCARD`` (8: discard every message —
               do not use), ``FLAG_BCC_OK`` (16: always_bcc, sender/recipient_bcc_maps),
               ``FLAG_MAP_OK`` (32: canonical and virtual alias maps), ``FLAG_MILTER`` (64:
               non_smtpd_milters), ``FLAG_FILTER_ALL`` (66), ``FLAG_MASK_EXTERNAL`` (114:
               what Postfix itself uses for mail from outside — probably what you want),
               ``FLAG_MASK_INTERNAL`` (32), ``FLAG_MASK_EXTRA`` (12), and, from Postfix
               2.5 and 3.0, ``FLAG_SMTP_REPLY`` (128: a milter's refusal comes back as its
               whole SMTP reply; the plugin keeps its text and drops its code),
               ``FLAG_SMTPUTF8`` (256), ``FLAG_AUTOUTF8`` (512). Postfix ignores flags it
               does not know.
  ``timeout``  seconds to wait for the connection, for cleanup's queue id and for each
               part of the message to be taken (default 60); cleanup's verdict after the
               end of the message may take five times as long (default 300 s: header
               checks, milters and the queue file's fsync happen then).

Where cleanup is, in this order (as qpsmtpd): the environment variable ``POSTFIXQUEUE``
(read at start-up), else the config file ``cleanup_sockets`` (one socket per line, read
again when it changes), else the ``SOCKET`` argument, else the default path. With several
sockets the first that answers with a queue id is used; a socket that cannot be connected
to, or that does not send a queue id, is passed over (nothing has been sent to it then).

Config files: ``cleanup_sockets``. Permissions: Postfix's ``public/`` directory is mode 0710,
group ``postdrop``: the user the server runs as must be in that group (or root).

What is sent: the attribute group ``flags``; the records ``T`` (arrival time), ``S`` (the
sender ``user@host``, empty for ``<>``), one ``R`` per recipient (``user@host``, the local
part unquoted: Postfix's internal form), ``M``; the message — the header with qpsmtpd-tx's
Received and Authentication-Results fields, the empty line, the body — one ``N`` record per
line without its line ending (a line longer than 2048 bytes is split into ``L`` records
first, as Postfix's smtpd does); then ``X`` and ``E``. The envelope carries no client
attributes and no rewrite context, so Postfix treats the mail as locally submitted, as
with qpsmtpd: it adds a missing Message-Id, Date or From header, and with FLAG_MAP_OK
applies its canonical maps in the local context. (Postfix 3.7.10 and later also replace a
stray CR in the text with a space: ``cleanup_replace_stray_cr_lf``.)

Transaction notes set: ``postfix-queue-flags`` (the flags), ``postfix-queue-sockets`` (the
sockets tried), and, once queued, ``postfix_queue_id``.

Replies:
  queued                    ``250 Queued! <Message-Id> (Queue-Id: <Postfix's queue id>)``
                            (``250 Queued! (Queue-Id: …)`` without a Message-Id)
  cleanup refuses for good  DENY → ``552 <cleanup's reason>``, or when it gives none:
    status bit 64           ``552 no recipients specified (#5.1.0)``
    status bit 16           ``552 too many hops (#5.4.0)``         (hopcount_limit)
    status bit 4            ``552 message file too big (#5.3.4)`` (message_size_limit)
    status bit 8            ``552 message content rejected (#5.7.1)`` (header/body checks,
                            milters)
  cleanup refuses for now   DENYSOFT → ``452 <cleanup's reason>``, or when it gives none:
    status bit 256          ``452 service unavailable (#4.7.1)``
    status bit 128          ``452 queue file write error (#4.3.0)``
    status bit 1            ``452 internal protocol error (#4.3.0)``
    status bit 2            ``452 queue file write error (#4.3.0)``
  (the temporary bits are looked at first, in this order, then the permanent ones; a
  reason from Postfix looks like ``5.7.1 <text of the header_checks rule>``; a reason of
  several lines gives a reply of several lines)
  any other status          DECLINED ``Unable to queue message (<status>, <reason>)`` → 451
  the protocol cannot be completed — no cleanup socket answers, connection refused or lost,
  a timeout, a peer that does not speak the protocol, a malformed answer
                            DECLINED ``Unable to queue message (<why>)`` → ``451``, and the
                            reason is logged at LOGERROR. Cleanup throws away a queue file
                            whose end it has not received, so nothing is delivered then —
                            except when the verdict is what never came: after the end record
                            Postfix may have queued the message, and the client's retry makes
                            a duplicate (the window every SMTP relay has after its final dot;
                            the verdict is given 5 × ``timeout`` to keep it unlikely).
A temporary failure is DECLINED (not DENYSOFT) only when the plugin could not get a verdict
from Postfix: a later queue plugin in ``plugins`` may then still take the message.

Differences from qpsmtpd 0.94:
  - everything is asynchronous (0.94 blocks its process while cleanup works), with a
    timeout (0.94 has none: a hung cleanup hangs the connection);
  - an unknown flag or a bad argument stops start-up with the line of ``plugins`` (0.94
    logs "Ignoring unkown cleanup flag" and goes on); ``host:port`` is also accepted as the
    argument (0.94: only in ``cleanup_sockets`` and ``POSTFIXQUEUE``); the flags
    FLAG_SMTP_REPLY, FLAG_SMTPUTF8, FLAG_AUTOUTF8 and ``timeout`` are new;
  - when no socket can be used, 0.94 dies ("Unable to open any cleanup sockets!") and the
    client gets ``451 Queuing declined or disabled; try again later``; here the 451 says
    why. A socket that connects but sends no queue id is passed over (0.94 goes on with an
    empty queue id);
  - the temporary and permanent status bits are looked at in a fixed order (0.94: Perl's
    hash order, so a status with two bits of a group could give either text);
  - without a Message-Id the reply has one space, not two (``Queued!  (Queue-Id: …)``);
  - long lines are split at 2048 bytes (Postfix's line_length_limit), not 1024; the time
    record has microseconds (as Postfix's smtpd writes it); 0.94's debugging output of the
    queue id and of every header line on stderr (into the log) is gone;
  - Postfix 3.x announces its protocol (``protocol=cleanup_protocol``) with the queue id;
    it is checked, and a service that announces another protocol is refused.
"""

import os
import re
import time

from twisted.internet import defer, reactor
from twisted.internet.error import ConnectError, ConnectionDone
from twisted.internet.endpoints import connectProtocol
from twisted.internet.protocol import Protocol

from qpsmtpd_tx.client import MessageProducer, TimedClient
from qpsmtpd_tx.codes import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd_tx.endpoints import ServerAddress, host_port
from qpsmtpd_tx.message import message_id
from qpsmtpd_tx.plugin import Plugin, PluginError

DEFAULT_SOCKET = "/var/spool/postfix/public/cleanup"
DEFAULT_TIMEOUT = 60.0
#: cleanup's verdict after the end of the message may take this many times ``timeout``
STATUS_FACTOR = 5
#: longer lines go as L (continuation) records of this size, as Postfix's smtpd splits them
LINE_LIMIT = 2048
#: an attribute group from cleanup longer than this is not cleanup talking
MAX_GROUP = 65536

#: cleanup's processing flags (Postfix's cleanup_user.h)
FLAGS = {
    "FLAG_NONE": 0,
    "FLAG_BOUNCE": 1 << 0,
    "FLAG_FILTER": 1 << 1,
    "FLAG_HOLD": 1 << 2,
    "FLAG_DISCARD": 1 << 3,
    "FLAG_BCC_OK": 1 << 4,
    "FLAG_MAP_OK": 1 << 5,
    "FLAG_MILTER": 1 << 6,
    "FLAG_SMTP_REPLY": 1 << 7,
    "FLAG_SMTPUTF8": 1 << 8,
    "FLAG_AUTOUTF8": 1 << 9,
}
FLAGS["FLAG_FILTER_ALL"] = FLAGS["FLAG_FILTER"] | FLAGS["FLAG_MILTER"]
FLAGS["FLAG_MASK_EXTERNAL"] = FLAGS["FLAG_FILTER_ALL"] | FLAGS["FLAG_BCC_OK"] | FLAGS["FLAG_MAP_OK"]
FLAGS["FLAG_MASK_INTERNAL"] = FLAGS["FLAG_MAP_OK"]
FLAGS["FLAG_MASK_EXTRA"] = FLAGS["FLAG_HOLD"] | FLAGS["FLAG_DISCARD"]

#: cleanup's status bits, temporary ones first; the texts are qpsmtpd's (used without a reason)
STAT_BAD, STAT_WRITE, STAT_SIZE, STAT_CONT, STAT_HOPS = 1, 2, 4, 8, 16
STAT_RCPT, STAT_PROXY, STAT_DEFER = 64, 128, 256
SOFT_STATUS = (
    (STAT_DEFER, "service unavailable (#4.7.1)"),
    (STAT_PROXY, "queue file write error (#4.3.0)"),
    (STAT_BAD, "internal protocol error (#4.3.0)"),
    (STAT_WRITE, "queue file write error (#4.3.0)"),
)
HARD_STATUS = (
    (STAT_RCPT, "no recipients specified (#5.1.0)"),
    (STAT_HOPS, "too many hops (#5.4.0)"),
    (STAT_SIZE, "message file too big (#5.3.4)"),
    (STAT_CONT, "message content rejected (#5.7.1)"),
)

#: record types (Postfix's rec_type.h)
REC_TIME, REC_FROM, REC_RCPT, REC_MESG = b"T", b"S", b"R", b"M"
REC_CONT, REC_NORM, REC_XTRA, REC_END = b"L", b"N", b"X", b"E"

CLEANUP_PROTOCOL = "cleanup_protocol"
CLOSED = "cleanup closed the connection before its verdict"
_NAME = re.compile(rb"[A-Za-z0-9_]*\Z")


class CleanupError(Exception):
    """The cleanup protocol could not be completed; the text says why."""


# -- the wire format ---------------------------------------------------------------------------

def record(rtype, data):
    """One queue-file record: type byte, length (base 128, low bits first), data."""
    n = len(data)
    if n < 0x80:
        return rtype + bytes((n,)) + data
    length = bytearray()
    while n >= 0x80:
        length.append((n & 0x7F) | 0x80)
        n >>= 7
    length.append(n)
    return rtype + bytes(length) + data


def attribute_group(pairs):
    """An attribute group as Postfix's attr_print0 writes it: ``name\\0value\\0``…, ``\\0``."""
    out = []
    for name, value in pairs:
        out.append(name.encode("ascii") + b"\0" + str(value).encode("utf-8", "surrogateescape") + b"\0")
    return b"".join(out) + b"\0"


def parse_group(buf):
    """``(attributes, rest)`` for the first complete attribute group in ``buf``, or None.

    Raises CleanupError for bytes that cannot be an attribute group (an SMTP greeting, a
    group too long).
    """
    attributes = {}
    pos = 0
    while True:
        end = buf.find(b"\0", pos)
        if end < 0:
            if not _NAME.match(buf, pos) or len(buf) > MAX_GROUP:
                raise CleanupError("not the cleanup protocol: %r" % bytes(buf[:60]))
            return None
        name = buf[pos:end]
        if not name:
            return attributes, buf[end + 1:]
        if not _NAME.match(name):
            raise CleanupError("not the cleanup protocol: %r" % bytes(buf[:60]))
        value_end = buf.find(b"\0", end + 1)
        if value_end < 0:
            if len(buf) > MAX_GROUP:
                raise CleanupError("attribute group longer than %d bytes" % MAX_GROUP)
            return None
        attributes[name.decode("ascii")] = buf[end + 1:value_end].decode("utf-8", "replace")
        pos = value_end + 1


class ContentEncoder:
    """Message text (LF line endings) → N records, one per line; long lines as L records first."""

    def __init__(self):
        self.carry = b""

    @staticmethod
    def line_records(line, out):
        while len(line) > LINE_LIMIT:
            out.append(record(REC_CONT, line[:LINE_LIMIT]))
            line = line[LINE_LIMIT:]
        out.append(record(REC_NORM, line))

    def feed(self, data):
        out = []
        lines = (self.carry + data).split(b"\n")
        rest = lines.pop()
        for line in lines:
            self.line_records(line, out)
        # a line still without its end: pass on what is surely a continuation already
        while len(rest) > LINE_LIMIT:
            out.append(record(REC_CONT, rest[:LINE_LIMIT]))
            rest = rest[LINE_LIMIT:]
        self.carry = rest
        return b"".join(out)

    def finish(self):
        """The last line, if the text does not end with a line ending."""
        out = []
        if self.carry:
            self.line_records(self.carry, out)
            self.carry = b""
        return b"".join(out)


def envelope_records(sender, recipients, now=None):
    """T, S, R… and M records: the envelope, up to "message content follows"."""
    now = time.time() if now is None else now
    def encode(address):
        return address.unquoted_address.encode("utf-8", "surrogateescape") if address else b""
    seconds = int(now)
    parts = [record(REC_TIME, b"%d %d" % (seconds, int((now - seconds) * 1e6))),
             record(REC_FROM, encode(sender))]
    parts.extend(record(REC_RCPT, encode(r)) for r in recipients)
    parts.append(record(REC_MESG, b""))
    return b"".join(parts)


_SMTP_REPLY_LINE = re.compile(r"[45]\d\d[ -]")


def reason_text(reason):
    """Cleanup's reason as reply text: one line per line, without SMTP reply codes.

    With FLAG_SMTP_REPLY a milter's reply comes whole (``550-5.7.1 …\r\n550 5.7.1 …``);
    the code is the core's to choose (552 or 452), so it is dropped, and the lines stay lines.
    """
    lines = []
    for line in reason.replace("\r\n", "\n").split("\n"):
        line = " ".join(line.split())
        if _SMTP_REPLY_LINE.match(line + " "):
            line = line[4:]
        if line:
            lines.append(line)
    return "\n".join(lines)


def status_verdict(status, reason):
    """``(code, text)`` for cleanup's non-zero ``status``: DENYSOFT, DENY, or DECLINED."""
    for bit, text in SOFT_STATUS:
        if status & bit:
            return DENYSOFT, reason or text
    for bit, text in HARD_STATUS:
        if status & bit:
            return DENY, reason or text
    return DECLINED, "Unable to queue message (%d, %s)" % (status, reason)


def parse_socket(spec):
    """The :class:`ServerAddress` of a socket spec (absolute path or host:port); None if neither."""
    if spec.startswith("/"):
        return ServerAddress(path=spec)
    return host_port(spec)


# -- the client --------------------------------------------------------------------------------

class _ContentProducer(MessageProducer):
    """Writes the message as records, a chunk per request, then X and E."""

    def __init__(self, cleanup, header, body):
        MessageProducer.__init__(self, cleanup, header, body)
        self.encoder = ContentEncoder()

    def produce(self):
        out = b""
        try:
            # a pull producer must write something each time, or it is not asked again
            while not out:
                data = self.read()
                if not data:
                    break
                out = self.encoder.feed(data)
        except OSError as e:
            self.finish(CleanupError("cannot read the message: %s" % (e.strerror or e)))
            return
        if out:
            self.client.transport.write(out)
            return
        self.client.transport.write(self.encoder.finish() + record(REC_XTRA, b"")
                                    + record(REC_END, b""))
        self.finish()

    def stopped_error(self):
        return CleanupError(CLOSED)


class CleanupProtocol(TimedClient, Protocol):
    """Reads attribute groups from cleanup and writes records; every wait has a timeout."""

    def __init__(self, timeout, clock=reactor):
        TimedClient.__init__(self, timeout, clock)
        self.buffer = b""

    def dataReceived(self, data):
        self.touch()
        self.buffer += data
        while self.error is None:
            try:
                parsed = parse_group(self.buffer)
            except CleanupError as e:
                self.fail(e)
                return
            if parsed is None:
                return
            group, self.buffer = parsed
            self.item_arrived(group)

    def lost_error(self, reason):
        why = "" if reason.check(ConnectionDone) else " (%s)" % reason.getErrorMessage().rstrip(".")
        return CleanupError(CLOSED + why)

    def timeout_error(self, seconds, doing):
        return CleanupError("timed out after %g seconds %s" % (seconds, doing))

    def next_group(self, timeout=None):
        """A Deferred firing with the next attribute group (a dict)."""
        return self.next_item(timeout, "waiting for cleanup")

    def send_message(self, head, header, body):
        """Write ``head`` (flags and envelope), then the content records; fires when written."""
        self.transport.write(head)
        return self.send_with(_ContentProducer(self, header, body), "sending the message to cleanup")

    def close(self):
        """Close the connection once everything written has been sent."""
        if not self.closed:
            self.transport.loseConnection()


class PostfixQueue(Plugin):
    """Queue into Postfix through its cleanup service."""

    def init(self, args):
        usage = "usage: queue/postfix-queue [SOCKET] [FLAG_...] [timeout SECONDS]"
        args = list(args)
        self.socket = None
        if args and parse_socket(args[0]) is not None:
            self.socket = args.pop(0)
        elif args and not args[0].startswith("FLAG_") and args[0] != "timeout":
            raise PluginError("bad cleanup socket %r: an absolute path or host:port (%s)"
                              % (args[0], usage))
        self.flags = 0
        self.timeout = DEFAULT_TIMEOUT
        while args:
            arg = args.pop(0)
            if arg == "timeout":
                if not args:
                    raise PluginError("timeout needs a number of seconds (%s)" % usage)
                try:
                    self.timeout = float(args.pop(0))
                except ValueError:
                    raise PluginError("timeout must be a number of seconds (%s)" % usage)
                if self.timeout <= 0:
                    raise PluginError("timeout must be positive")
            elif arg in FLAGS:
                self.flags |= FLAGS[arg]
            else:
                raise PluginError("unknown cleanup flag %r (known: %s)" % (arg, ", ".join(sorted(FLAGS))))
        self.env_socket = os.environ.get("POSTFIXQUEUE") or None
        if self.env_socket and parse_socket(self.env_socket) is None:
            raise PluginError("bad POSTFIXQUEUE %r: an absolute path or host:port" % self.env_socket)
        self.parsed_config("cleanup_sockets", _parse_sockets)

    def sockets(self, transaction=None):
        """The cleanup sockets to try, in order (POSTFIXQUEUE, cleanup_sockets, argument, default)."""
        if self.env_socket:
            return [self.env_socket]
        configured = self.parsed_config("cleanup_sockets", _parse_sockets, transaction)
        if configured:
            return list(configured)
        return [self.socket or DEFAULT_SOCKET]

    def hook_queue(self, transaction):
        # Take the message now, in the reactor thread, before any wait: our own file object
        # keeps the body readable even if the client leaves and the spool is deleted.
        header = transaction.header_bytes()
        body = transaction.body.open()
        head = envelope_records(transaction.sender, transaction.recipients)
        msgid = message_id(transaction.header)
        sockets = self.sockets(transaction)
        transaction.notes["postfix-queue-flags"] = self.flags
        transaction.notes["postfix-queue-sockets"] = sockets
        return defer.Deferred.fromCoroutine(
            self._queue(transaction, sockets, head, header, body, msgid))

    async def _connect(self, transaction, sockets):
        """The first cleanup that connects and sends a queue id: ``(protocol, queue_id, spec)``."""
        problems = []
        for spec in sockets:
            cleanup = CleanupProtocol(self.timeout)
            try:
                connecting = connectProtocol(parse_socket(spec).endpoint(self.timeout), cleanup)
                connecting.addTimeout(self.timeout, reactor)
                await connecting
            except Exception as e:
                problems.append("cannot connect to %s: %s" % (spec, _describe(e)))
                self.log(LOGWARN if spec != sockets[-1] else LOGERROR, problems[-1], transaction)
                continue
            try:
                queue_id = await self._greeting(cleanup)
            except CleanupError as e:
                cleanup.fail(e)
                problems.append("%s: %s" % (spec, e))
                self.log(LOGWARN if spec != sockets[-1] else LOGERROR, problems[-1], transaction)
                continue
            return cleanup, queue_id, spec
        raise CleanupError("; ".join(problems))

    async def _greeting(self, cleanup):
        group = await cleanup.next_group()
        if "queue_id" not in group and set(group) == {"protocol"}:
            # an announcement of its own (Postfix 3.7 sends it with the queue id)
            self._check_protocol(group)
            group = await cleanup.next_group()
        self._check_protocol(group)
        queue_id = group.get("queue_id")
        if not queue_id:
            raise CleanupError("no queue id from cleanup (got %s)" % (group or "an empty group"))
        return queue_id

    @staticmethod
    def _check_protocol(group):
        protocol = group.get("protocol")
        if protocol is not None and protocol != CLEANUP_PROTOCOL:
            raise CleanupError("not Postfix's cleanup service (it speaks %s)" % protocol)

    async def _queue(self, transaction, sockets, head, header, body, msgid):
        try:
            try:
                cleanup, queue_id, spec = await self._connect(transaction, sockets)
            except CleanupError as e:
                return DECLINED, "Unable to queue message (%s)" % e
            try:
                await cleanup.send_message(
                    attribute_group([("flags", self.flags)]) + head, header, body)
                result = await cleanup.next_group(self.timeout * STATUS_FACTOR)
                if "status" not in result:
                    raise CleanupError("no status from cleanup (got %s)" % (result or "an empty group"))
                try:
                    status = int(result["status"])
                except ValueError:
                    raise CleanupError("bad status from cleanup: %r" % result["status"])
            except Exception as e:
                if not isinstance(e, CleanupError):
                    e = CleanupError("internal error: %s: %s" % (e.__class__.__name__, e))
                # cleanup throws away a queue file whose end record it has not received
                cleanup.fail(e)
                self.log(LOGERROR, "%s, queue id %s: %s" % (spec, queue_id, e), transaction)
                return DECLINED, "Unable to queue message (%s)" % e
            cleanup.close()
        finally:
            body.close()
        reason = reason_text(result.get("reason", ""))
        if status == 0:
            transaction.notes["postfix_queue_id"] = queue_id
            self.log(LOGINFO, "queued as %s (%s)" % (queue_id, spec), transaction)
            return OK, " ".join(w for w in ("Queued!", msgid, "(Queue-Id: %s)" % queue_id) if w)
        code, text = status_verdict(status, reason)
        self.log(LOGWARN if code == DENY else LOGERROR, "cleanup %s refused %s: status %d%s"
                 % (spec, queue_id, status, ", " + reason.replace("\n", " / ") if reason else ""),
                 transaction)
        return code, text


def _parse_sockets(lines):
    sockets = []
    for line in lines:
        spec = line.text.strip()
        if parse_socket(spec) is None:
            raise PluginError("%s:%d: %r is neither an absolute path nor host:port"
                              % (line.path, line.lineno, spec))
        sockets.append(spec)
    return sockets


def _describe(error):
    """The reason of a failed connection, as the system says it (``Connection refused``)."""
    if isinstance(error, (defer.CancelledError, defer.TimeoutError)):
        return "timed out"
    if isinstance(error, ConnectError):
        if isinstance(error.osError, int):
            return os.strerror(error.osError)
        if error.args and error.args[0]:
            return str(error.args[0]).strip().rstrip(".")
    text = getattr(error, "strerror", None) or str(error) or error.__class__.__name__
    return str(text).strip().rstrip(".")

