"""virus/clamdscan — scan each message with ClamAV's clamd; refuse or tag infected mail.

At data_post the message (header and body, CRLF line endings) is streamed to clamd with its
``INSTREAM`` command, in chunks as the socket takes them, over TCP or a unix socket (one
connection per message, with a timeout). clamd reads the message as mail: MIME parts and
encoded attachments are decoded and scanned.

Arguments: ``key value`` pairs, all optional (``virus/clamdscan clamd_port 3310 action tag``):
  ``clamd_socket PATH``  clamd's unix socket (default ``/var/run/clamav/clamd.ctl``, Debian's).
  ``clamd_host HOST``    clamd's TCP address (default ``localhost``); used with
  ``clamd_port PORT``    clamd's TCP port. When given, TCP is used instead of the socket
                         (as qpsmtpd).
  ``action reject|tag``  what to do with an infected message: ``reject`` (default) refuses it,
                         ``tag`` accepts it with ``X-Virus-Found: Yes`` and
                         ``X-Virus-Details: <name>``. The per-recipient setting ``virus_action``.
  ``deny_viruses yes|no``  qpsmtpd's name for the same: ``yes`` = ``action reject``,
                         ``no`` = ``action tag`` (giving both, disagreeing, is an error).
  ``max_size KB``        messages bigger than this many kilobytes are not scanned (default
                         1024, as qpsmtpd; clamd's own ``StreamMaxLength`` must be at least as
                         large, or such a message gets the error reply below).
  ``scan_all 0|1``       ``1`` (default): scan every message; ``0``: only multipart ones.
  ``timeout SECONDS``    for connecting to clamd and for its whole answer (default 120).
  ``fail_open 0|1``      when clamd cannot be reached, times out or reports an error: ``0``
                         (default) refuses the message temporarily; ``1`` accepts it unscanned.
                         Either way the reason is logged (LOGERROR).
  ``defer_on_error yes|no``  qpsmtpd's name, the other way round: ``yes`` = ``fail_open 0``
                         (here the default; qpsmtpd's default was ``no``), ``no`` = ``fail_open 1``.
  ``loglevel LEVEL``     per-plugin log level.

Per-recipient setting (recipient note, see README "Per-recipient policy"):
  ``virus_action``       ``reject`` or ``tag``; strictest = ``reject``. With config
                         ``recipient_policy split`` (default) clamd scans the message once;
                         an infected message is refused for the ``reject`` recipients (the
                         message goes on for the others, see README "Per-recipient policy")
                         and the copy of the ``tag`` recipients gets the headers below. With
                         ``group`` every message has one value; with ``strictest`` one
                         recipient's ``reject`` refuses the message.

Config files: ``me`` (in ``X-Virus-Checked``).

Headers (at the top of the message): clean → ``X-Virus-Found: No`` and
``X-Virus-Checked: by ClamAV <version> on <me>``; infected and tagged → ``X-Virus-Found:
Yes`` and ``X-Virus-Details: <virus name>``; not scanned with ``fail_open 1`` →
``X-Virus-Not-Scanned: <why>``. ``X-Virus-Found``, ``X-Virus-Details``,
``X-Virus-Checked`` and ``X-Virus-Not-Scanned`` headers the message already has are removed
first (the sender's cannot pass for ours).

Notes: sets transaction note ``virus`` to the virus name (or None when clean); adjusts
connection note ``karma`` by -1 for an infected message. Skips connections with a
``naughty`` note (they are refused anyway), as qpsmtpd.

Replies:
  infected, ``virus_action`` reject   ``552 Virus found: <name>`` (qpsmtpd's text)
  clamd unreachable, timed out, or an error (``fail_open 0``)
                                      ``452 Unable to scan for viruses`` (qpsmtpd's text for
                                      ``defer_on_error``; DENYSOFT at data_post)
  otherwise                           none (DECLINED)

Differences from qpsmtpd 0.94: the message is always streamed (INSTREAM), so clamd needs no
access to the spool directory (0.94 asks clamd to read the spool file over a unix socket);
the default on error is to defer, not to accept; the action can be set per recipient; the
message's own X-Virus-* headers are removed; bad arguments stop start-up. clamd's socket
is not read from ``clamd.conf``: give ``clamd_socket`` or ``clamd_port``.
"""

import struct
import time

from twisted.internet import defer, reactor
from twisted.internet.endpoints import connectProtocol

from qpsmtpd_tx.codes import DECLINED, DENYSOFT, LOGERROR, LOGINFO, LOGNOTICE, LOGWARN
from qpsmtpd_tx.daemon_client import RequestExchange
from qpsmtpd_tx.endpoints import ServerAddress, describe_failure as _describe, unix_socket
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import boolean, positive as _positive
from qpsmtpd_tx.policy import Setting
from qpsmtpd_tx.scanner import action_argument, decide_virus, strictest_action, virus_action
from qpsmtpd_tx.streaming import message_chunks

DEFAULT_SOCKET = "/var/run/clamav/clamd.ctl"
DEFAULT_HOST = "localhost"
DEFAULT_MAX_SIZE_KB = 1024
DEFAULT_TIMEOUT = 120.0
UNAVAILABLE_TEXT = "Unable to scan for viruses"
#: bytes per INSTREAM chunk
CHUNK = 65536
#: seconds clamd's version string is kept before it is asked again
VERSION_TTL = 300.0
MAX_ANSWER = 65536
OUR_HEADERS = ("X-Virus-Found", "X-Virus-Details", "X-Virus-Checked", "X-Virus-Not-Scanned")


class ClamdError(Exception):
    """No usable answer from clamd; the text says why."""


def instream(header, body, chunk_size=CHUNK):
    """The INSTREAM request: command, length-prefixed chunks of the message (CRLF line
    endings, read from ``body`` as they are sent), and the zero-length end chunk."""
    yield b"zINSTREAM\0"
    for data in message_chunks(header, body, chunk_size, crlf=True):
        for start in range(0, len(data), chunk_size):
            piece = data[start:start + chunk_size]
            yield struct.pack("!L", len(piece)) + piece
    yield struct.pack("!L", 0)


def parse_answer(data):
    """clamd's answer to a ``z`` command: ``(found, text)``; ``found`` is the virus name or
    None (clean). Errors raise ClamdError."""
    text = data.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    if not text:
        raise ClamdError("clamd closed the connection without an answer")
    result = text.split(": ", 1)[1] if text.startswith("stream: ") else text
    if result.endswith(" FOUND"):
        return result[:-len(" FOUND")].strip(), text
    if result == "OK":
        return None, text
    raise ClamdError("clamd answered %r" % text[:200])


def _boolean(name, value):
    return boolean(name, value, "yes or no (1 or 0)")


class ClamdScan(Plugin):
    """Stream messages to clamd; refuse or tag infected ones per recipient."""

    recipient_settings = (Setting("virus_action", "action", "reject", virus_action,
                                  strictest_action),)

    KNOWN = {"clamd_socket", "clamd_host", "clamd_port", "action", "deny_viruses", "max_size",
             "scan_all", "timeout", "fail_open", "defer_on_error"}

    def init(self, args):
        arguments = self.parse_kv_args(args, self.KNOWN)
        action_argument(arguments)
        fail_open = None
        if "fail_open" in arguments:
            fail_open = _boolean("fail_open", arguments["fail_open"])
        if "defer_on_error" in arguments:
            mapped = not _boolean("defer_on_error", arguments["defer_on_error"])
            if fail_open is not None and fail_open != mapped:
                raise PluginError("defer_on_error and fail_open disagree")
            fail_open = mapped
        self.fail_open = bool(fail_open)
        if "clamd_port" in arguments:
            port = arguments["clamd_port"]
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise PluginError("clamd_port must be a TCP port number, got %r" % port)
            self.address = ServerAddress(
                host=arguments.get("clamd_host", DEFAULT_HOST).strip("[]"), port=int(port))
        else:
            if "clamd_host" in arguments:
                raise PluginError("clamd_host needs clamd_port")
            path = arguments.get("clamd_socket", DEFAULT_SOCKET)
            if not path.startswith("/"):
                raise PluginError("clamd_socket must be an absolute path, got %r" % path)
            self.address = unix_socket("clamd_socket", path)
        self.max_size = _positive("max_size", arguments.get("max_size", DEFAULT_MAX_SIZE_KB),
                                  int) * 1024
        self.scan_all = _boolean("scan_all", arguments.get("scan_all", "1"))
        self.timeout = _positive("timeout", arguments.get("timeout", DEFAULT_TIMEOUT))
        self._version = None

    # -- data_post ------------------------------------------------------------------------------

    def hook_data_post(self, transaction):
        if transaction.connection.notes.get("naughty"):
            self.log(LOGINFO, "skip, naughty", transaction)
            return DECLINED
        if transaction.data_size > self.max_size:
            self.log(LOGINFO, "skip, too big (%d > %d)" % (transaction.data_size, self.max_size),
                     transaction)
            return DECLINED
        if not self.scan_all and not self._is_multipart(transaction):
            self.log(LOGNOTICE, "skip, not multipart", transaction)
            return DECLINED
        # Take the message now, before any wait (see Transaction.body.open).
        header, body = transaction.header_bytes(), transaction.body.open()
        return defer.Deferred.fromCoroutine(self._check(transaction, header, body))

    @staticmethod
    def _is_multipart(transaction):
        if transaction.header is None:
            return False
        content_type = transaction.header.get_first("Content-Type") or ""
        return "multipart/" in content_type.lower() and "boundary=" in content_type.lower()

    async def _ask(self, chunks):
        exchange = RequestExchange(chunks, MAX_ANSWER)
        try:
            await connectProtocol(self.address.endpoint(self.timeout), exchange)
        except Exception as e:
            raise ClamdError("cannot connect to clamd at %s: %s" % (self.address, _describe(e)))
        try:
            return await exchange.done
        except defer.CancelledError:
            raise
        except Exception as e:
            raise ClamdError("%s (clamd at %s)" % (_describe(e), self.address))

    async def _scan(self, header, body):
        return parse_answer(await self._ask(instream(header, body)))

    async def _check(self, transaction, header, body):
        try:
            scanning = defer.Deferred.fromCoroutine(self._scan(header, body))
            scanning.addTimeout(self.timeout, reactor)
            found, answer = await scanning
        except Exception as e:
            return self._unavailable(transaction, e)
        finally:
            body.close()
        transaction.notes["virus"] = found
        if found:
            return self._infected(transaction, found)
        version = await self._clamd_version()
        self.log(LOGINFO, "pass, clean", transaction)
        if transaction.header is not None:
            self._remove_old_headers(transaction)
            transaction.header.add("X-Virus-Checked", "by %s on %s" % (version, self.server.me),
                                   prepend=True)
            transaction.header.add("X-Virus-Found", "No", prepend=True)
        return DECLINED

    def _infected(self, transaction, found):
        self.log(LOGNOTICE, "fail, found virus %s" % found, transaction)
        self.adjust_karma(transaction, -1)
        if transaction.header is not None:
            self._remove_old_headers(transaction)
        return decide_virus(self, transaction, "Virus found: %s" % found,
                            [("X-Virus-Found", "Yes"), ("X-Virus-Details", found)],
                            prepend=True)

    async def _clamd_version(self):
        """``ClamAV 1.4.6`` (kept for VERSION_TTL seconds); ``ClamAV`` if clamd will not say."""
        now = time.monotonic()
        if self._version is not None and now - self._version[0] < VERSION_TTL:
            return self._version[1]
        version = "ClamAV"
        try:
            asking = defer.Deferred.fromCoroutine(self._ask([b"zVERSION\0"]))
            asking.addTimeout(self.timeout, reactor)
            answer = (await asking).split(b"\0", 1)[0].decode("utf-8", "replace").strip()
            version = answer.split("/")[0].strip() or version
        except Exception as e:
            self.log(LOGWARN, "cannot get clamd's version: %s" % _describe(e))
        self._version = (now, version)
        return version

    def _remove_old_headers(self, transaction):
        for name in OUR_HEADERS:
            transaction.header.delete(name)

    def _unavailable(self, transaction, error):
        why = _describe(error)
        if why == "timed out":
            why = "clamd at %s did not answer within %g seconds" % (self.address, self.timeout)
        self.log(LOGERROR, "cannot scan: %s" % why, transaction)
        if not self.fail_open:
            return DENYSOFT, UNAVAILABLE_TEXT
        self.log(LOGWARN, "fail_open: accepting the message unscanned", transaction)
        if transaction.header is not None:
            self._remove_old_headers(transaction)
            transaction.header.add("X-Virus-Not-Scanned", "clamd %s" % (
                "timed out" if "did not answer" in why else "unavailable"), prepend=True)
        return DECLINED
