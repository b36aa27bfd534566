"""spamassassin — score each message with SpamAssassin's spamd; tag it or refuse it.

At data_post the message (with an ``X-Envelope-From:`` line first, CRLF line endings) is sent
to spamd with the SPAMC/1.4 command ``HEADERS``, as qpsmtpd's plugin does. spamd's
``X-Spam-*`` headers are added to the message, the subject is prefixed above
``munge_subject_threshold``, and the message is refused at or above the reject threshold.
Everything is asynchronous (spamd over TCP or a unix socket, one connection per message,
with a timeout); the message is measured in the server's I/O thread pool and then sent a
megabyte at a time as spamd takes it, so a large ``size_limit`` does not cost memory.

Arguments: ``key value`` pairs, all optional (``spamassassin reject 7 leave_old_headers drop``):
  ``reject N|userprefs``  refuse the message when its score is at or above N (qpsmtpd's
                          ``score >= reject``). ``userprefs``: spamd's own required score
                          (``required=`` in its answer: the site's or the user's
                          ``required_score``). ``0`` (and the default): never refuse, only tag.
                          This is the per-recipient setting ``spamassassin_reject_threshold``.
                          ``reject_threshold N`` is accepted for ``reject`` (qpsmtpd's old name).
  ``reject_type T``       what a refusal is: ``perm`` (default: ``552``), ``temp`` (``452``),
                          ``disconnect``, ``temp_disconnect``.
  ``munge_subject_threshold N``  prefix the Subject with ``subject_prefix`` when the score is
                          above both N and spamd's required score (qpsmtpd's rule). Default
                          and ``0``: never. Per-recipient setting
                          ``spamassassin_munge_subject_threshold``.
  ``subject_prefix P``    the prefix (one word here; the config file ``subject_prefix`` may
                          hold spaces). Default: the config file, else ``*** SPAM ***``.
  ``spamd_socket S``      where spamd listens: an absolute path (a unix socket), ``host:port``
                          or ``[IPv6]:port``. Default ``localhost:783``.
  ``spamd_user U``        the ``User:`` sent to spamd (default: the user the server runs as).
                          ``vpopmail``: a message with ONE recipient is scanned as that
                          recipient's address, for spamd's per-user preferences.
  ``headers none``        add no headers and do not munge the subject (the scan result is
                          still in the note, and ``reject`` still applies). ``all``: default.
  ``leave_old_headers drop|rename|keep``  what to do with ``X-Spam-*`` headers the message
                          already has, for each header spamd gives: ``rename`` (default) to
                          ``X-Old-Spam-*``, ``drop`` them, or ``keep`` them.
  ``relayclient skip|scan``  relay clients (``relay``, AUTH) are not scanned: ``skip``, the
                          default, as in qpsmtpd 0.94 (which skips them whatever the argument
                          says); ``scan`` scans them too. Whitelisted hosts and senders
                          (``whitelisthost``, ``whitelistsender`` notes) are never scanned.
  ``size_limit BYTES``    messages bigger than this are not scanned (default 500000).
  ``timeout SECONDS``     for connecting to spamd and for its whole answer (default 120).
  ``fail_open 0|1``       when spamd cannot be reached, times out or answers garbage:
                          ``0`` (default) refuses the message temporarily; ``1`` accepts it
                          unscanned. Either way the reason is logged (LOGERROR).
  ``loglevel LEVEL``      per-plugin log level.

Per-recipient settings (recipient notes, see README "Per-recipient policy"; each overrides
the argument of the same meaning for that recipient):
  ``spamassassin_reject_threshold``         a number, ``userprefs``, or ``0`` (never);
                                            strictest = the lowest.
  ``spamassassin_munge_subject_threshold``  a number or ``0`` (never); strictest = lowest.
With config ``recipient_policy split`` (default) spamd scores the message once and each
group of recipients with the same thresholds gets its own outcome: refused (the message goes
on for the others; see README "Per-recipient policy"), accepted, and its copy's Subject
munged by its own munge threshold. The ``X-Spam-*`` headers are spamd's, the same in every
copy (spamd scored once; ``required`` there is spamd's score, not a recipient's threshold).
With ``group`` every message has one value of each; with ``strictest`` the message gets the
lowest (``userprefs`` counts as spamd's required score).

Config files: ``subject_prefix`` (first line).

Headers added (at the top, unless ``headers none``): every ``X-Spam-*`` header spamd's
answer holds (with Debian's default rules ``X-Spam-Checker-Version``, ``X-Spam-Flag: YES``
for spam, ``X-Spam-Level``, ``X-Spam-Status: Yes, score=… required=… tests=…``) except
``X-Spam-Report`` and ``X-Spam-Prev-Subject``; ``X-Spam-User: <user>, N recipients`` when
the message has several recipients (an LDA may rescan it per user); with ``fail_open 1``
and no scan, ``X-Spam-Not-Scanned: <why>`` (and old ``X-Spam-*`` headers are renamed or
dropped as above, so none of the sender's can pass for ours).

Notes: sets transaction note ``spamassassin``, a dict of the ``X-Spam-Status`` fields
(``is_spam`` ``Yes``/``No``, ``score`` and ``required`` as numbers, ``tests``, ``autolearn``,
``version``…). Adjusts connection note ``karma``: -1 for spam, and -1/+1 for autolearn
spam/ham, as qpsmtpd.

Replies:
  score at or above the threshold   ``552 spam score exceeded threshold`` (qpsmtpd's text;
                                    ``452`` with ``reject_type temp``)
  spamd unreachable, timed out, or a bad answer (``fail_open 0``): one longer than 1 MiB,
  or whose score is malformed or not a finite number (``nan`` would refuse every message)
                                    ``452 Unable to scan for spam`` (DENYSOFT at data_post)
  otherwise                         none (DECLINED)

Differences from qpsmtpd 0.94: ``reject userprefs``, ``size_limit`` and ``relayclient scan``
come from later qpsmtpd versions or are new; 0.94 accepts the message unscanned, silently
but for a log line, when spamd is down (here: ``452`` unless ``fail_open 1``); the thresholds
can be set per recipient; ``subject_prefix`` may also be an argument; the X-Spam-* headers
keep spamd's order; bad arguments stop start-up.
"""

import itertools
import math
import os
import pwd
import re

from twisted.internet import defer, reactor
from twisted.internet.endpoints import connectProtocol

from qpsmtpd_tx.codes import DECLINED, DENY, DENYSOFT, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd_tx.daemon_client import RequestExchange
from qpsmtpd_tx.endpoints import describe_failure as _describe, host_port, unix_socket
from qpsmtpd_tx.message import Header
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import boolean as _boolean, positive as _positive
from qpsmtpd_tx.policy import Setting
from qpsmtpd_tx.streaming import crlf_length, message_chunks

DEFAULT_SOCKET = "localhost:783"
DEFAULT_SIZE_LIMIT = 500000
DEFAULT_TIMEOUT = 120.0
DEFAULT_SUBJECT_PREFIX = "*** SPAM ***"
REJECT_TEXT = "spam score exceeded threshold"
UNAVAILABLE_TEXT = "Unable to scan for spam"
#: the largest answer read from spamd (HEADERS returns only the header block)
MAX_ANSWER = 1 << 20
#: the X-Spam-* headers cleaned up when a message passes unscanned
STANDARD_HEADERS = ("X-Spam-Checker-Version", "X-Spam-Flag", "X-Spam-Level", "X-Spam-Status",
                    "X-Spam-Report", "X-Spam-User")
#: spamd headers not copied into the message (as qpsmtpd)
SKIPPED_HEADERS = ("x-spam-report", "x-spam-prev-subject")

#: a reject threshold taken from spamd's answer (its ``required`` score)
USERPREFS = "userprefs"

_SPAM_LINE = re.compile(r"(True|False|Yes|No)\s*;\s*(-?[\d.]+)\s*/\s*(-?[\d.]+)", re.I)
_X_SPAM = re.compile(r"(X-Spam-[!-9;-~]*):[ \t]?(.*)\Z", re.I)


class SpamdError(Exception):
    """No usable answer from spamd; the text says why."""


# -- threshold values ---------------------------------------------------------------------------


def _number(text):
    """A threshold number from a note or argument; ``0`` → None (never)."""
    if isinstance(text, bool):
        raise ValueError(text)
    value = float(text) if isinstance(text, (int, float)) else float(str(text).strip())
    if math.isnan(value) or math.isinf(value):
        raise ValueError(text)
    return None if value == 0 else value


def _finite(text):
    """A score of spamd's answer as a float; ValueError for NaN and infinities too (NaN is
    neither below nor above a threshold, so it would refuse every message)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def reject_threshold(text):
    """A reject threshold: a number, ``userprefs``, or None for ``0`` (never refuse)."""
    if isinstance(text, str) and text.strip().lower() == USERPREFS:
        return USERPREFS
    return _number(text)


class LowestOf(tuple):
    """The strictest of several reject thresholds that include ``userprefs``: the lowest of
    them once spamd's required score is known."""


def lowest_threshold(values):
    """Strictest reject threshold: the lowest; None (never) only if every value is None."""
    kept = {v for v in values if v is not None}
    numbers = [v for v in kept if not isinstance(v, str)]
    if USERPREFS in kept:
        return LowestOf(sorted(numbers) + [USERPREFS]) if numbers else USERPREFS
    return min(numbers) if numbers else None


def effective_threshold(value, required):
    """The number a threshold value stands for, given spamd's required score (None: never)."""
    if isinstance(value, LowestOf):
        numbers = [effective_threshold(v, required) for v in value]
        numbers = [n for n in numbers if n is not None]
        return min(numbers) if numbers else None
    if value == USERPREFS:
        return required
    return value


def lowest_number(values):
    """Strictest munge threshold: the lowest number; None (never) if there is none."""
    numbers = [v for v in values if v is not None]
    return min(numbers) if numbers else None


# -- talking to spamd -----------------------------------------------------------------------------


def parse_spamd_socket(text):
    """The :class:`ServerAddress` of a ``spamd_socket`` value (an absolute path or host:port)."""
    if "/" in text:
        if not text.startswith("/"):
            raise PluginError("spamd_socket %r: a unix socket needs an absolute path" % text)
        return unix_socket("spamd_socket", text)
    address = host_port(text)
    if address is None:
        raise PluginError("spamd_socket %r: expected /path/to/socket or host:port" % text)
    return address


def parse_answer(data):
    """``(spam_line, headers)`` from spamd's answer to HEADERS.

    ``spam_line`` is ``(is_spam, score, required)`` from the ``Spam:`` field, or None;
    ``headers`` the ``X-Spam-*`` headers of the returned header block as ``[name, value]``
    in order, folded values kept folded (``\\n`` + the continuation line).
    """
    head, separator, rest = data.partition(b"\r\n\r\n")
    if not separator:
        if not data:
            raise SpamdError("spamd closed the connection without an answer")
        raise SpamdError("incomplete answer from spamd: %r" % data[:80])
    lines = head.decode("utf-8", "replace").split("\r\n")
    m = re.match(r"SPAMD/[\d.]+\s+(\d+)\s*(.*)", lines[0])
    if not m:
        raise SpamdError("garbled answer from spamd: %r" % lines[0][:80])
    if m.group(1) != "0":
        raise SpamdError("spamd answered %r" % lines[0][:200])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    length = fields.get("content-length")
    if length is not None and length.isdigit() and len(rest) < int(length):
        raise SpamdError("answer from spamd cut short (%d of %s bytes)" % (len(rest), length))
    spam_line = None
    s = _SPAM_LINE.match(fields.get("spam", ""))
    if s:
        try:
            spam_line = (s.group(1).lower() in ("true", "yes"), float(s.group(2)),
                         float(s.group(3)))
        except ValueError:      # the pattern lets "1.2.3" and "." through
            raise SpamdError("malformed score in spamd's answer: %r" % fields["spam"][:80])

    headers, in_header = [], False
    for raw in rest.split(b"\n"):
        line = raw.rstrip(b"\r").decode("utf-8", "surrogateescape")
        x = _X_SPAM.match(line)
        if x:
            headers.append([x.group(1), x.group(2).rstrip()])
            in_header = True
        elif in_header and line[:1] in (" ", "\t") and line.strip():
            headers[-1][1] += "\n" + line.rstrip()
        else:
            in_header = False
    return spam_line, headers


def parse_status(value):
    """qpsmtpd's reading of ``X-Spam-Status``: ``{"is_spam": "Yes", "score": "6.0", …}``."""
    words = value.split()
    if not words:
        return {}
    result = {"is_spam": words[0].rstrip(",")}
    for word in words[1:]:
        key, _, val = word.partition("=")
        result[key] = val
    if "hits" in result and "score" not in result:
        result["score"] = result.pop("hits")
    return result


# -- the plugin -----------------------------------------------------------------------------------


class SpamAssassin(Plugin):
    """Score messages with spamd; add its headers; refuse by per-recipient thresholds."""

    recipient_settings = (
        Setting("spamassassin_reject_threshold", "reject", None, reject_threshold,
                lowest_threshold),
        Setting("spamassassin_munge_subject_threshold", "munge_subject_threshold", None,
                _number, lowest_number),
    )

    KNOWN = {"reject", "reject_threshold", "reject_type", "munge_subject_threshold",
             "subject_prefix", "spamd_socket", "spamd_user", "headers", "leave_old_headers",
             "relayclient", "size_limit", "timeout", "fail_open"}

    def init(self, args):
        arguments = self.parse_kv_args(args, self.KNOWN)
        if "reject_threshold" in arguments:
            if "reject" in arguments and arguments["reject"] != arguments["reject_threshold"]:
                raise PluginError("reject and reject_threshold (its old name) disagree")
            arguments["reject"] = arguments.pop("reject_threshold")
        for setting in self.recipient_settings:
            value = arguments.get(setting.argument)
            if value is not None:
                try:
                    setting.convert(value)
                except ValueError:
                    raise PluginError("%s must be a number%s, got %r" % (
                        setting.argument, " or userprefs" if setting.argument == "reject" else "",
                        value))
        self.reject_type = arguments.get("reject_type", "perm")
        if self.reject_type.lower() not in ("perm", "hard", "temp", "soft", "disconnect",
                                            "temp_disconnect"):
            raise PluginError("reject_type must be perm, temp, disconnect or temp_disconnect")
        self.address = parse_spamd_socket(
            arguments.get("spamd_socket", DEFAULT_SOCKET))
        self.spamd_user = arguments.get("spamd_user") or _running_user()
        self.add_headers = arguments.get("headers", "all").lower()
        if self.add_headers not in ("all", "none"):
            raise PluginError("headers must be none or all, got %r" % arguments["headers"])
        self.add_headers = self.add_headers == "all"
        self.old_headers = arguments.get("leave_old_headers", "rename").lower()
        if self.old_headers not in ("drop", "rename", "keep"):
            raise PluginError("leave_old_headers must be drop, rename or keep, got %r"
                              % arguments["leave_old_headers"])
        relayclient = arguments.get("relayclient", "skip").lower()
        if relayclient not in ("skip", "scan"):
            raise PluginError("relayclient must be skip or scan, got %r" % relayclient)
        self.scan_relay_clients = relayclient == "scan"
        self.size_limit = _positive("size_limit", arguments.get("size_limit", DEFAULT_SIZE_LIMIT),
                                    int)
        self.timeout = _positive("timeout", arguments.get("timeout", DEFAULT_TIMEOUT))
        self.fail_open = _boolean("fail_open", arguments.get("fail_open", "0"))
        self.subject_prefix_argument = arguments.get("subject_prefix")
        if self.subject_prefix_argument is None:
            self.config_scalar("subject_prefix")    # a file that cannot be read stops start-up

    # -- data_post ------------------------------------------------------------------------------

    def hook_data_post(self, transaction):
        conn = transaction.connection
        if conn.relay_client and not self.scan_relay_clients:
            self.log(LOGINFO, "skip, relay client", transaction)
            return DECLINED
        if conn.notes.get("whitelisthost") or transaction.notes.get("whitelistsender"):
            self.log(LOGINFO, "skip, whitelisted", transaction)
            return DECLINED
        if transaction.data_size > self.size_limit:
            self.log(LOGINFO, "skip, too large (%d > %d)" % (transaction.data_size,
                                                            self.size_limit), transaction)
            return DECLINED
        # Take the message now, before any wait (see Transaction.body.open).
        sender = transaction.sender.format() if transaction.sender is not None else "<>"
        envelope = ("X-Envelope-From: %s\n" % sender).encode("utf-8", "surrogateescape")
        message = (envelope, transaction.header_bytes(), transaction.body.open())
        return defer.Deferred.fromCoroutine(self._check(transaction, message))

    def _user(self, transaction):
        if self.spamd_user == "vpopmail" and len(transaction.recipients) == 1:
            return transaction.recipients[0].address
        return self.spamd_user

    async def _check(self, transaction, message):
        user = self._user(transaction)
        try:
            scanning = defer.Deferred.fromCoroutine(self._ask_spamd(message, user))
            scanning.addTimeout(self.timeout, reactor)
            spam_line, headers = await scanning
        except Exception as e:
            return self._unavailable(transaction, e)
        finally:
            message[2].close()
        results = self._results(spam_line, headers)
        if results is None:
            return self._unavailable(transaction, SpamdError("no score in spamd's answer"))
        transaction.notes["spamassassin"] = results
        self._karma(transaction, results)
        if self.add_headers and transaction.header is not None:
            self._insert_headers(transaction, headers, user)
        # one score, each group of recipients' thresholds applied to it
        verdicts = []
        for values, recipients in self.recipient_groups(transaction):
            if self.add_headers and transaction.header is not None:
                self._munge_subject(transaction, recipients, results,
                                    values["spamassassin_munge_subject_threshold"])
            verdicts.append((recipients, self._verdict(
                transaction, results, values["spamassassin_reject_threshold"])))
        return self.per_recipient_result(transaction, verdicts)

    async def _ask_spamd(self, message, user):
        envelope, header, body = message
        head = envelope + header
        # Content-length counts the CRLF line endings: one pass over the spool in a thread,
        # then the message is sent a chunk at a time as the socket drains.
        length = await self.server.run_blocking(crlf_length, head, body)
        request = ("HEADERS SPAMC/1.4\r\nContent-length: %d\r\nUser: %s\r\n\r\n"
                   % (length, user)).encode("utf-8", "surrogateescape")
        exchange = RequestExchange(
            itertools.chain([request], message_chunks(head, body, crlf=True)), MAX_ANSWER)
        try:
            await connectProtocol(self.address.endpoint(self.timeout), exchange)
        except Exception as e:
            raise SpamdError("cannot connect to spamd at %s: %s" % (self.address, _describe(e)))
        try:
            answer = await exchange.done
        except defer.CancelledError:
            raise
        except Exception as e:
            raise SpamdError("%s (spamd at %s)" % (_describe(e), self.address))
        return parse_answer(answer)

    def _results(self, spam_line, headers):
        """The ``spamassassin`` note: X-Spam-Status fields, score and required as numbers."""
        results = {}
        for name, value in headers:
            if name.lower() == "x-spam-status":
                results = parse_status(value)
        try:
            score = _finite(results["score"])
            required = _finite(results["required"])
        except (KeyError, ValueError):
            if spam_line is None:
                return None
            is_spam, score, required = spam_line
            results.setdefault("is_spam", "Yes" if is_spam else "No")
        if spam_line is not None:  # the protocol's own numbers win
            score, required = spam_line[1], spam_line[2]
        results["score"], results["required"] = score, required
        return results

    def _cleanup(self, transaction, name):
        """Rename the message's ``name`` headers to ``X-Old-…`` or drop them (leave_old_headers)."""
        if self.old_headers == "keep":
            return
        header = transaction.header
        old = header.get(name)
        if not old:
            return
        header.delete(name)
        if self.old_headers == "rename":
            old_name = "X-Old-" + name[2:] if name.lower().startswith("x-") else "Old-" + name
            for value in reversed(old):
                header.add(old_name, value, prepend=True)

    def _insert_headers(self, transaction, headers, user):
        header = transaction.header
        self._cleanup(transaction, "X-Spam-User")
        new = [(n, v) for n, v in headers if n.lower() not in SKIPPED_HEADERS]
        for name in reversed(list({n.lower(): n for n, _ in new}.values())):
            self._cleanup(transaction, name)
        count = len(transaction.recipients)
        if count > 1:
            header.add("X-Spam-User", "%s, %d recipients" % (user, count), prepend=True)
        for name, value in reversed(new):
            header.add(name, value, prepend=True)

    def _munge_subject(self, transaction, recipients, results, threshold):
        """Prefix the Subject of ``recipients``' copy when the score is above ``threshold``."""
        if threshold is None:
            self.log(LOGDEBUG, "skipping munge, no threshold set", transaction)
            return
        score = results["score"]
        if not (score > results["required"] and score > threshold):
            return
        prefix = self.subject_prefix_argument or self.config_scalar(
            "subject_prefix", DEFAULT_SUBJECT_PREFIX)
        subject = transaction.header.get_first("Subject", "")
        self.edit_header(transaction, recipients, Header.replace, "Subject",
                         "%s %s" % (prefix, subject))

    def _karma(self, transaction, results):
        """qpsmtpd's karma: -1 for spam, -1/+1 for autolearn spam/ham (once per message)."""
        if str(results.get("is_spam", "")).lower() == "yes":
            self.adjust_karma(transaction, -1)
        learn = results.get("autolearn")
        if learn in ("ham", "spam"):
            self.adjust_karma(transaction, 1 if learn == "ham" else -1)

    def _verdict(self, transaction, results, setting):
        """The result for recipients whose reject threshold is ``setting``."""
        score, required = results["score"], results["required"]
        spam = str(results.get("is_spam", "")).lower() == "yes"
        status = "%s, %s" % ("Spam" if spam else "Ham", score)
        learn = results.get("autolearn")
        learn = ", learn=%s" % learn if learn else ""
        threshold = effective_threshold(setting, required)
        if threshold is None:
            self.log(LOGINFO, "pass, %s, reject disabled%s" % (status, learn), transaction)
            return DECLINED
        if score < threshold:
            self.log(LOGINFO, "%s, %s < %s%s" % ("fail, tolerated" if spam else "pass", status,
                                                 threshold, learn), transaction)
            return DECLINED
        self.log(LOGINFO, "fail, %s >= %s%s" % (status, threshold, learn), transaction)
        return self.get_reject_type(DENY), REJECT_TEXT

    def _unavailable(self, transaction, error):
        why = _describe(error)
        if why == "timed out":
            why = "spamd at %s did not answer within %g seconds" % (self.address, self.timeout)
        self.log(LOGERROR, "cannot scan: %s" % why, transaction)
        if not self.fail_open:
            return DENYSOFT, UNAVAILABLE_TEXT
        self.log(LOGWARN, "fail_open: accepting the message unscanned", transaction)
        if self.add_headers and transaction.header is not None:
            for name in STANDARD_HEADERS:
                self._cleanup(transaction, name)
            transaction.header.delete("X-Spam-Not-Scanned")
            transaction.header.add("X-Spam-Not-Scanned", "spamd could not be asked (%s)" % (
                "timed out" if "did not answer" in why else "unavailable"), prepend=True)
        return DECLINED


def _running_user():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
