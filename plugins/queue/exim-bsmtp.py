"""queue/exim-bsmtp — hand each accepted message to Exim as batched SMTP (``exim -bS``).

For every message the plugin runs Exim's batched SMTP receiver directly (never through a
shell, no temporary file) and writes on its standard input::

    HELO <me>
    MAIL FROM:<sender>
    RCPT TO:<recipient>        (one line per recipient)
    DATA
    <header and body, LF line endings, a leading "." doubled>
    .
    QUIT

Addresses are written as SMTP paths (``<user@host>``, ``<>`` for the null sender, a local
part that needs quoting stays quoted). In this mode Exim answers nothing when all is well
and exits 0; on an error it writes one SMTP-style reply line (plus "Transaction started in
line N" / "Error detected in line N") on its standard output, a longer text on its standard
error, and exits 2 (1 when a message was accepted before the error). The client is answered
only once Exim has exited, so a ``250`` means Exim has the message in its spool.

Exim keeps the envelope sender only for a trusted caller: the user qpsmtpd-tx runs as must be
in Exim's ``trusted_users`` (Debian: the macro ``MAIN_TRUSTED_USERS = uucp : qpsmtpd`` in
``/etc/exim4/exim4.conf.localmacros``, then ``update-exim4.conf``), else every message
appears to come from that user. Exim's non-SMTP ACL (``acl_not_smtp``),
``message_size_limit``, ``recipients_max`` and its rewriting apply to these messages; its
SMTP ACLs (``acl_smtp_rcpt`` …) do not.

With ``pool N`` the plugin instead keeps up to N ``exim -bs`` processes (Exim's SMTP on its
standard input and output) and sends each message to an idle one as an SMTP transaction:
``RSET`` (from the second message on), MAIL, the RCPTs (pipelined; Exim offers PIPELINING),
DATA, the message (CRLF, dot-stuffed), and the client gets ``250 Queued!`` only after Exim's
``250 OK id=…`` for that message (Exim has it in its spool then). That saves starting Exim
for every message (see bench/README.md). In this mode Exim applies its SMTP ACLs
(``acl_smtp_rcpt``, ``acl_smtp_data`` …; the message arrives as ``local-esmtp`` from the
calling user) and not ``acl_not_smtp``; the ``trusted_users`` rule is the same.

Arguments: ``[exim_path PATH] [timeout SECONDS] [loglevel L] [pool N] [pool_idle SECONDS]
[pool_messages N] [EXIM-ARGUMENT …]``
  ``exim_path``  the program (default ``/usr/sbin/rsmtp``, Debian's name for ``exim4 -bS``);
                 an absolute path. ``-bS`` is always passed (redundant for rsmtp, harmless).
                 If it is not executable at start-up a warning is logged and each message
                 gets a 451 until it is.
  ``timeout``    seconds Exim may take to read the message and exit (default 300); when they
                 run out Exim is killed (SIGKILL) and the client gets a 451.
  ``pool``       run up to N long-lived ``exim -bs`` (default 0: one ``exim -bS`` per
                 message, as qpsmtpd). The bound holds: when all N are busy a message waits
                 for one (at most ``timeout`` seconds, then ``451 Internal error enqueuing
                 mail (no exim process free within N seconds)``). ``exim_path`` must then
                 be Exim itself (default ``/usr/sbin/exim4``; called as ``rsmtp`` Exim
                 reads batched SMTP: start-up error). ``timeout`` is then the limit for
                 each of Exim's replies: a process that does not answer in time is killed
                 (``451 … (exim timed out after N seconds)``) and a new one started for the
                 next message; one that exits (``451 … (exim crashed)``) likewise. Exim's
                 4xx/5xx to MAIL, a RCPT, DATA or the message: as in the table below, and the
                 process goes on with the next message. A reused process found gone or
                 answering ``421`` (e.g. Exim's ``smtp_accept_max_per_connection``) before
                 the final dot was written: the message goes once more to a new process;
                 nothing is sent again after the final dot. At shutdown idle processes get
                 QUIT. Each process's end is logged at LOGINFO: ``exim -bs (pid N) ended:
                 exit status 0, after M messages``.
  ``pool_idle``  seconds an idle process is kept, then QUIT (default 60; Exim itself gives
                 up after ``smtp_receive_timeout``, 5 minutes).
  ``pool_messages`` messages per process, then QUIT (default 100; Exim's own limit,
                 ``smtp_accept_max_per_connection``, is 1000).
  ``EXIM-ARGUMENT …``  the first word that starts with ``-`` and every word after it are passed
                 to Exim as they are, after ``-bS``: e.g. ``-C /etc/exim4/frontend.conf`` (an
                 alternative configuration), ``-odq`` (queue only), ``-oMr qpsmtpd``
                 (protocol name for Exim's logs and Received header). The same for every
                 message. Exim honours ``-C`` from a caller other than root only with
                 reduced privileges unless the file is listed in Debian's
                 ``/etc/exim4/trusted_configs``.
  e.g. ``queue/exim-bsmtp exim_path /usr/sbin/exim4 timeout 60 -C /etc/exim4/frontend.conf``

Config files: ``me`` (the HELO name; Exim's ``-bS`` treats HELO as RSET and only records it).
The program inherits the server's environment (Exim clears most of it itself).

Replies:
  Exim exits 0                         ``250 Queued!``
  Exim writes a 5xx reply              DENY with Exim's text → ``552 <text>``
                                       (e.g. ``552 Message size exceeds maximum permitted``,
                                       ``552 <acl_not_smtp's message>``)
  Exim writes a 4xx reply              DECLINED with Exim's text → ``451 <text>``, unless a
                                       later queue plugin takes the message (e.g.
                                       ``451 too many recipients``)
  Exim exits 1 with a reply            ``250 Queued!`` (Exim's status 1 means the message was
                                       accepted before the error; the error is logged)
  any other non-zero exit without a reply
                                       ``451 Internal error enqueuing mail``
  killed by a signal                   ``451 Internal error enqueuing mail (exim crashed)``
  timeout                              ``451 Internal error enqueuing mail (exim timed out
                                       after N seconds)``
  cannot be run                        ``451 Internal error enqueuing mail (cannot run exim)``
  exit 0, but Exim closed its input before reading the whole batch (or left part of it
  unread in its input pipe; the server keeps a handle on the pipe to count that)
                                       ``451 Internal error enqueuing mail (exim did not read
                                       the whole message)``
Every failure is logged at LOGERROR with the exit status and Exim's output (its standard
error at LOGDEBUG when the reply on standard output already says why). A temporary failure
is DECLINED, so the next queue plugin may still take the message; a permanent one is final.
After a timeout Exim may already have the message in its spool (it is killed at any point):
keep ``timeout`` well above Exim's normal reception time. Exim's background delivery process
may keep Exim's standard error open; the plugin does not wait for it (the verdict is taken
when Exim has exited and closed its standard output).

Exim's own rules apply to the content: its SMTP input treats a lone CR inside a line as a
line end, and the message it stores has LF line endings.

Differences from qpsmtpd 0.94:
  - 0.94 turns every reply line from Exim, 4xx included, into DENY (552): its test for a
    temporary code can never succeed. Here a 4xx is temporary (451 with Exim's text) and only
    a 5xx is permanent.
  - 0.94 writes the batch to a temporary file and runs ``PATH -bS < FILE`` through the
    shell, blocking its process until Exim exits; here the batch is streamed to Exim's
    standard input without a shell, asynchronously, with a timeout.
  - 0.94 does not double a leading dot in header lines and writes addresses unquoted (a local
    part with a space breaks Exim's parsing of the command); here both are correct.
  - ``pool`` (long-lived ``exim -bs`` processes) is new.
  - Extra Exim arguments and ``timeout`` are new; HELO names ``me`` (0.94: the host name).
    An exit status of 1 with a reply (message accepted, a later error) is a 250 here, a 451
    in 0.94 (a duplicate at the client's retry). 0.94 refuses a transaction without a parsed
    header (``Mail unqueuable``); the core always has one here.
  - An unknown argument or a relative ``exim_path`` stops start-up (0.94 ignores unknown
    arguments).
"""

import os
import re

from twisted.internet import defer, protocol, reactor
from twisted.internet.interfaces import IPullProducer
from zope.interface import implementer

from qpsmtpd_tx import pool as pools
from qpsmtpd_tx.childpipe import ChildInput
from qpsmtpd_tx.childprocess import spawn_with_timeout
from qpsmtpd_tx.codes import DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.smtp_child import CannotRun, start_session
from qpsmtpd_tx.smtp_client import (NextHopError, NextHopTimeout, Refused, safe_to_retry,
                                    send_transaction)
from qpsmtpd_tx.streaming import message_chunks

DEFAULT_PATH = "/usr/sbin/rsmtp"
#: with ``pool``: Exim itself (called as rsmtp, Exim reads batched SMTP whatever it is told)
POOL_DEFAULT_PATH = "/usr/sbin/exim4"
DEFAULT_TIMEOUT = 300.0
#: ``pool``: seconds an idle ``exim -bs`` is kept (below Exim's smtp_receive_timeout, 5
#: minutes) and messages per process (below smtp_accept_max_per_connection, 1000)
POOL_IDLE = 60.0
POOL_MESSAGES = 100
#: at most this much of Exim's standard output and standard error is kept
_MAX_OUTPUT = 8192
#: seconds to wait for Exim's standard output to close after it exited
_STDOUT_GRACE = 2.0
_CHUNK = 65536

INTERNAL_ERROR = "Internal error enqueuing mail"
_REPLY = re.compile(r"(\d\d\d)(?:[ -](.*))?\Z")
_TRANSACTION_LINE = "Transaction started in line "


def batch_envelope(helo, sender, recipients):
    """The commands before the message: HELO, MAIL, one RCPT per recipient, DATA (bytes)."""
    def path(address):
        text = address.format() if address is not None else "<>"
        return text.encode("utf-8", "surrogateescape")
    lines = [b"HELO " + helo.encode("utf-8", "surrogateescape"), b"MAIL FROM:" + path(sender)]
    lines += [b"RCPT TO:" + path(r) for r in recipients]
    lines.append(b"DATA")
    return b"\n".join(lines) + b"\n"


def dot_stuff(data, at_line_start):
    """Double each leading dot in one chunk of LF lines; returns (bytes, ends at a line start)."""
    if not data:
        return data, at_line_start
    out = data.replace(b"\n.", b"\n..")
    if at_line_start and data[:1] == b".":
        out = b"." + out
    return out, data.endswith(b"\n")


def parse_reply(output):
    """Exim's reply on its standard output in -bS mode: ``(code, [text lines])`` or None.

    The reply is the first line starting with three digits; the lines up to "Transaction
    started in line N" continue its text (an ACL message may hold several lines).
    """
    lines = output.decode("utf-8", "replace").replace("\r", "").split("\n")
    for i, line in enumerate(lines):
        match = _REPLY.match(line)
        if not match:
            continue
        text = [match.group(2) or ""]
        for more in lines[i + 1:]:
            if more.startswith(_TRANSACTION_LINE) or not more:
                break
            text.append(more)
        return int(match.group(1)), text
    return None


@implementer(IPullProducer)
class _BatchProducer:
    """Writes the envelope commands, the dot-stuffed message, ``.`` and QUIT to Exim's stdin."""

    def __init__(self, child, envelope, header, body):
        self.child = child
        self.envelope = envelope
        self.body = body
        self._chunks = message_chunks(header, body, _CHUNK)
        self.at_line_start = True
        self.finished = False
        self.stopped = False

    def resumeProducing(self):
        if self.finished or self.stopped:
            return
        transport = self.child.input.writer
        if self.envelope is not None:
            data, self.envelope = self.envelope, None
            transport.write(data)
            return
        data = next(self._chunks, b"")
        if data:
            stuffed, self.at_line_start = dot_stuff(data, self.at_line_start)
            transport.write(stuffed)
            return
        self.finished = True
        self.body.close()
        transport.write((b"" if self.at_line_start else b"\n") + b".\nQUIT\n")
        transport.unregisterProducer()
        transport.loseConnection()

    def stopProducing(self):
        # Exim closed its input (it exited, or gave up on the message) before we were done.
        self.stopped = True
        self.body.close()


class _EximProcess(protocol.ProcessProtocol):
    """Feeds one ``exim -bS`` and reports how it ended: ``done`` fires with the exit reason
    (a ProcessDone / ProcessTerminated), or ``None`` after a timeout."""

    def __init__(self, envelope, header, body):
        self.input = ChildInput()
        self.producer = _BatchProducer(self, envelope, header, body)
        #: Exim read every byte of the batch (known once it has exited)
        self.read_all = False
        self.done = defer.Deferred()
        self.stdout = b""
        self.stderr = b""
        self.stdout_closed = False
        self.status = None
        self.exited = False
        self._grace = None

    def connectionMade(self):
        self.input.writer.registerProducer(self.producer, False)

    def childDataReceived(self, fd, data):
        if fd == 1 and len(self.stdout) < _MAX_OUTPUT:
            self.stdout += data[:_MAX_OUTPUT - len(self.stdout)]
        elif fd == 2 and len(self.stderr) < _MAX_OUTPUT:
            self.stderr += data[:_MAX_OUTPUT - len(self.stderr)]

    def childConnectionLost(self, fd):
        if fd == 1:
            self.stdout_closed = True
            self._maybe_done()

    def processExited(self, reason):
        # Exim's background delivery process inherits its standard error (and may hold it
        # for as long as the delivery takes): decide once Exim itself has exited and its
        # standard output is read, not when every descriptor is closed.
        self.exited = True
        self.status = reason.value
        if not self._maybe_done() and self._grace is None and not self.done.called:
            self._grace = reactor.callLater(_STDOUT_GRACE, self._finish)

    def processEnded(self, reason):
        if not self.exited:
            self.exited = True
            self.status = reason.value
        self._finish()

    def _maybe_done(self):
        if self.exited and self.stdout_closed:
            self._finish()
            return True
        return False

    def _finish(self, timed_out=False):
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        if not self.producer.finished:
            self.producer.stopProducing()
        if not self.done.called:
            # Exim has exited (or was killed): what it left in its input pipe is unread.
            self.read_all = self.input.finish()
            self.done.callback(None if timed_out else self.status)


class EximBsmtp(Plugin):
    """Queue through ``exim -bS``, asynchronously."""

    def init(self, args):
        args = list(args)
        self.exim_path = DEFAULT_PATH
        self.timeout = DEFAULT_TIMEOUT
        self.exim_args = []
        options = []
        while args:
            if args[0].startswith("-"):
                self.exim_args = args
                break
            options += args[:2]
            args = args[2:]
        settings = self.parse_kv_args(options, ("exim_path", "timeout") + tuple(pools.SETTINGS))
        pool = {"pool": 0, "pool_idle": POOL_IDLE, "pool_messages": POOL_MESSAGES}
        for name in pools.SETTINGS:
            if name in settings:
                try:
                    pool[name] = pools.parse_setting(name, settings[name])
                except ValueError as e:
                    raise PluginError(str(e))
        self.exim_path = settings.get("exim_path", POOL_DEFAULT_PATH if pool["pool"]
                                      else DEFAULT_PATH)
        if not os.path.isabs(self.exim_path):
            raise PluginError("exim_path must be an absolute path, got %r" % (self.exim_path,))
        if pool["pool"] and os.path.basename(self.exim_path) == "rsmtp":
            raise PluginError("pool needs Exim itself as exim_path (e.g. /usr/sbin/exim4): "
                              "called as rsmtp, Exim reads batched SMTP (-bS), not -bs")
        if "timeout" in settings:
            try:
                self.timeout = float(settings["timeout"])
            except ValueError:
                raise PluginError("timeout must be a number of seconds, got %r"
                                  % (settings["timeout"],))
            if not self.timeout > 0:
                raise PluginError("timeout must be positive, got %r" % (settings["timeout"],))
        self.argv = [self.exim_path, "-bS"] + self.exim_args
        self.pool = None
        if pool["pool"]:
            self.argv = [self.exim_path, "-bs"] + self.exim_args
            self.pool = pools.Pool(self._start_exim, pool["pool"], pool["pool_idle"],
                                   pool["pool_messages"], max_open=pool["pool"])
        if not os.access(self.exim_path, os.X_OK):
            self.log(LOGWARN, "could not find exim at %s (not an executable file): messages get "
                     "451 until it is; set exim_path in the plugins file" % self.exim_path)

    def stop(self):
        """Say QUIT to the idle ``exim -bs`` processes of the pool."""
        if self.pool is not None:
            return self.pool.stop()

    def hook_queue(self, transaction):
        # Everything Exim needs is taken now, in the reactor thread: the body stays readable
        # through our own file object even if the client leaves and the spool is deleted.
        if self.pool is not None:
            return defer.Deferred.fromCoroutine(self._run_pooled(
                transaction, transaction.header_bytes(), transaction.body.open()))
        envelope = batch_envelope(self.server.me or "localhost", transaction.sender,
                                  transaction.recipients)
        header = transaction.header_bytes()
        body = transaction.body.open()
        return self._run(transaction, envelope, header, body)

    # -- pool: long-lived ``exim -bs`` processes ----------------------------------------------

    async def _start_exim(self, transaction):
        if not os.access(self.exim_path, os.X_OK):
            raise CannotRun("cannot run %s: not an executable file" % self.exim_path)
        session = await start_session(self.argv, self.timeout, self.server.me or "localhost")
        self.log(LOGDEBUG, "started %s (pid %s)" % (" ".join(self.argv), session.pid), transaction)
        session.when_closed().addCallback(lambda _: self.log(
            LOGINFO, "exim -bs (pid %s) ended: %s, after %d messages" % (
                session.pid, session.ended, session.uses)))
        return session

    async def _run_pooled(self, transaction, header, body):
        """The message through a pooled ``exim -bs``; a 250 only after Exim's 250 for it."""
        def retrying(e):
            self.log(LOGWARN, "%s on a reused exim process; once more on a new one" % e,
                     transaction)
        try:
            return await self.pool.run(
                lambda session: self._send_pooled(session, transaction, header, body),
                safe_to_retry, retrying, wait_timeout=self.timeout, context=transaction)
        except Refused as refused:
            reply = refused.reply
            self._log_output(LOGERROR, "stderr", getattr(refused, "stderr", b""), transaction)
            self.log(LOGERROR, "exim refused %s: %s" % (refused.stage, reply), transaction)
            if reply.code // 100 == 5:
                return DENY, "\n".join(reply.lines) or INTERNAL_ERROR
            if reply.code // 100 == 4:
                return DECLINED, "\n".join(reply.lines) or INTERNAL_ERROR
            return DECLINED, INTERNAL_ERROR
        except NextHopTimeout as e:
            self.log(LOGERROR, "%s: killed" % e, transaction)
            return DECLINED, "%s (exim timed out after %g seconds)" % (INTERNAL_ERROR, self.timeout)
        except CannotRun as e:
            self.log(LOGERROR, str(e), transaction)
            return DECLINED, INTERNAL_ERROR + " (cannot run exim)"
        except (NextHopError, pools.PoolStopped) as e:
            self.log(LOGERROR, str(e), transaction)
            return DECLINED, INTERNAL_ERROR + " (exim crashed)"
        except defer.TimeoutError:
            self.log(LOGERROR, "all %d exim processes busy for %g seconds" % (
                self.pool.max_open, self.timeout), transaction)
            return DECLINED, "%s (no exim process free within %g seconds)" % (
                INTERNAL_ERROR, self.timeout)
        finally:
            body.close()

    async def _send_pooled(self, session, transaction, header, body):
        sender = transaction.sender.format() if transaction.sender is not None else "<>"
        try:
            await send_transaction(session, sender, [r.format() for r in transaction.recipients],
                                   header, body, reset=session.uses > 0)
            reply = await session.reply()
            if reply.code // 100 != 2:
                raise Refused("end of data", reply)
        except Refused as refused:
            refused.stderr, session.stderr = session.stderr, b""
            raise
        self.log(LOGINFO, "Enqueued to exim via SMTP (pid %s): %s" % (session.pid, reply),
                 transaction)
        return OK, "Queued!"

    # -- one ``exim -bS`` per message ----------------------------------------------------------

    def _run(self, transaction, envelope, header, body):
        if not os.access(self.exim_path, os.X_OK):
            body.close()
            self.log(LOGERROR, "cannot run %s: not an executable file" % self.exim_path,
                     transaction)
            return DECLINED, INTERNAL_ERROR + " (cannot run exim)"
        child = _EximProcess(envelope, header, body)
        try:
            process = spawn_with_timeout(child, self.argv, {0: child.input.child_fd, 1: "r", 2: "r"},
                                         self.timeout, child.done,
                                         lambda: child._finish(timed_out=True))
        except OSError as e:
            child.input.close()
            body.close()
            self.log(LOGERROR, "cannot run %s: %s" % (self.exim_path, e.strerror or e),
                     transaction)
            return DECLINED, INTERNAL_ERROR + " (cannot run exim)"
        pid = process.pid
        self.log(LOGDEBUG, "running %s (pid %s)" % (" ".join(self.argv), pid), transaction)
        done = child.done
        done.addCallback(self._ended, transaction, child, pid)
        return done

    def _log_output(self, level, name, data, transaction):
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                self.log(level, "exim %s: %s" % (name, line), transaction)

    def _ended(self, status, transaction, child, pid):
        what = "%s (pid %s)" % (self.exim_path, pid)
        if status is None:
            self._log_output(LOGERROR, "stderr", child.stderr, transaction)
            self.log(LOGERROR, "%s killed after %g seconds" % (what, self.timeout), transaction)
            return DECLINED, "%s (exim timed out after %g seconds)" % (INTERNAL_ERROR, self.timeout)
        signum = getattr(status, "signal", None)
        if signum is not None:
            self._log_output(LOGERROR, "stderr", child.stderr, transaction)
            self.log(LOGERROR, "%s killed by signal %s" % (what, signum), transaction)
            return DECLINED, INTERNAL_ERROR + " (exim crashed)"
        code = getattr(status, "exitCode", None) or 0
        reply = parse_reply(child.stdout)
        if code == 0:
            if child.stdout.strip():
                self._log_output(LOGERROR, "stdout", child.stdout, transaction)
            if child.stderr.strip():
                self._log_output(LOGWARN, "stderr", child.stderr, transaction)
            if child.producer.stopped or not child.read_all:
                self.log(LOGERROR, "%s exited 0 without reading the whole message" % what,
                         transaction)
                return DECLINED, INTERNAL_ERROR + " (exim did not read the whole message)"
            self.log(LOGINFO, "Enqueued to exim via BSMTP (pid %s)" % pid, transaction)
            return OK, "Queued!"
        self._log_output(LOGERROR, "stdout", child.stdout, transaction)
        self._log_output(LOGDEBUG if reply else LOGERROR, "stderr", child.stderr, transaction)
        if reply is not None and code == 1:
            # Exim: "1 if one or more messages were accepted before the error" — we send
            # one message, so it is in Exim's spool; a 4xx now would make a duplicate.
            self.log(LOGERROR, "%s exited 1 after accepting the message; error after it: %d %s"
                     % (what, reply[0], " ".join(reply[1])), transaction)
            return OK, "Queued!"
        if reply is not None and 400 <= reply[0] < 600:
            permanent = reply[0] >= 500
            self.log(LOGERROR, "BSMTP enqueue failed (%s); exit status %d from %s: %d %s" % (
                "permanent" if permanent else "temporary", code, what, reply[0],
                " ".join(reply[1])), transaction)
            return (DENY if permanent else DECLINED), "\n".join(reply[1]) or INTERNAL_ERROR
        self.log(LOGERROR, "BSMTP enqueue failed; exit status %d from %s" % (code, what),
                 transaction)
        return DECLINED, INTERNAL_ERROR
