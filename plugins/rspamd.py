"""rspamd — scan each message with rspamd (its HTTP API, ``/checkv2``) and act on its answer.

qpsmtpd has no rspamd plugin; this one is new. At ``data_post`` the whole message (header,
with the core's Received and Authentication-Results, and body) is POSTed to rspamd's normal
worker with the envelope as rspamd's request headers; rspamd's ``action`` decides.

Arguments (``key value`` pairs, all optional):
  ``url URL``           rspamd's normal worker, ``http://`` or ``https://``. ``/checkv2`` is
                        appended when the URL has no path (or ``/``); a URL with a path is used
                        as it is. Default ``http://127.0.0.1:11333``.
  ``timeout S``         give up after S seconds (connecting, sending, rspamd's answer; fractions
                        allowed). Default 15 (rspamd's own ``task_timeout`` is 8 s).
  ``fail_open 0|1``     what a failed scan does (rspamd unreachable, no answer in time, an
                        answer that is not rspamd's): ``0`` (default) answers
                        ``452 Unable to scan for spam`` (the client retries later); ``1``
                        accepts the message unscanned, with the header
                        ``X-Spam-Not-Scanned``. Both log the reason at LOGERROR. (``yes``,
                        ``no``, ``true``, ``false``, ``on``, ``off`` work too.)
  ``settings_id ID``    the rspamd settings profile (``Settings-ID``) for every recipient whose
                        note ``rspamd_settings_id`` does not name one. Default: none (rspamd
                        applies its default settings and its own settings rules).
  ``loglevel L``        per-plugin log level (``6``, ``LOGINFO``, ``+1``, ``-2``).

Per-recipient note read: ``rspamd_settings_id`` — the rspamd settings profile of this recipient
(an id defined in rspamd's ``local.d/settings.conf``: ``strict { id = "strict"; apply { actions
{ reject = 5; … } } }``). A profile id is printable ASCII without spaces; another value is
ignored (the argument or default applies). The message is scanned once per distinct profile
of its recipients (each scan carries that profile's recipients as ``Rcpt``, so that
rspamd sees each recipient once: per-recipient ratelimits and maps). With the config
``recipient_policy split`` (the default) each profile's answer applies to its own
recipients: refused for some (the message goes on for the others, see README "Per-recipient
policy"; a temporary answer for any profile defers the whole message), and the headers below
are those of each profile's answer, in its recipients' copy. With ``group`` recipients with
different profiles are split into separate transactions (``452 4.5.3``); with ``strictest``
the most severe answer applies to everyone (order: reject, soft reject, greylist, rewrite
subject, add header, no action).

Why no ``rspamd_reject_score``: the spam thresholds live in rspamd, per profile (the ``actions``
of a settings profile), so per-recipient thresholds are profiles chosen by ``Settings-ID``.
A second threshold here could only duplicate them, could not loosen rspamd's own ``reject``,
and would ignore what rspamd decides without a score (GTUBE, ``force_actions``, ratelimits).

Request: ``POST <url>`` with the message as body (LF line endings, as spooled) and the headers
  ``IP``           the client's IP address (connection ``remote_ip``), when known;
  ``Helo``         the HELO/EHLO argument, when given;
  ``Hostname``     the client's reverse-DNS name (``unknown`` when the lookup found none); not
                   sent when the server does no lookups (``--no-rdns``);
  ``From``         the envelope sender, ``<user@host>`` or ``<>``;
  ``Rcpt``         one header per envelope recipient of the scan's profile, ``<user@host>``,
                   in order (after alias expansion: the addresses the message goes to; not
                   those a filter before refused);
  ``Queue-Id``     the transaction id (``transaction.id``, also in our log lines);
  ``User``         the authenticated user, only after a successful AUTH;
  ``MTA-Name``     the ``me`` config item (rspamd uses it in the headers it writes);
  ``Settings-ID``  the profile, when the recipients have one (see above).

Answer (rspamd's JSON) → reply:
  ``reject``                   ``552`` with rspamd's ``messages.smtp_message`` when it gives one,
                               else ``552 Spam message rejected``.
  ``soft reject``              ``452`` with ``messages.smtp_message``, else
                               ``452 Try again later``.
  ``greylist``                 ``452`` with ``messages.smtp_message``, else
                               ``452 Try again later``.
  ``discard``, ``quarantine``  (rspamd ``force_actions``) ``552`` as ``reject``, logged: this
                               plugin cannot drop or hold an accepted message.
  ``rewrite subject``          accepted; the Subject is replaced by rspamd's ``subject`` field
                               (else ``*** SPAM *** <subject>``, rspamd's default template).
  ``add header``, ``no action`` accepted.
  any other action, a status other than 200, an answer that is not rspamd's JSON, an answer
  (HTTP header and body) longer than 1 MiB: a failed scan (``fail_open``), as are a
  connection failure and the ``timeout``. Scores that are not finite numbers count as 0.
  Temporary answers are ``452``, the code qpsmtpd gives every ``data_post`` DENYSOFT (the
  spamassassin and clamdscan plugins answer the same). rspamd answers an error for a message
  above its own size limit (``max_message``, 50 MiB by default), a failed scan too: keep
  ``databytes`` below it.

Headers of an accepted message. Fields ``X-Spam-Flag``, ``X-Spam-Status``, ``X-Spam-Level`` and
``X-Spam-Not-Scanned`` already in the message are removed first (a sender cannot pre-set
them); then, after a scan, at the top of the header, in this order:
  ``X-Spam-Flag: YES``           only when the action is ``add header`` or ``rewrite subject``;
  ``X-Spam-Status: Yes|No, score=S required=R action=A [profile=ID] tests=SYM,SYM…``
                                 ``Yes`` exactly when ``X-Spam-Flag`` is added; ``S`` rspamd's
                                 score and ``R`` its ``required_score`` (the reject threshold of
                                 the profile), two decimals; ``A`` the action with ``_`` for
                                 spaces (``no_action``, ``add_header``, ``rewrite_subject``);
                                 ``profile`` the Settings-ID sent, if any; ``tests`` rspamd's
                                 symbols, sorted (folded onto continuation lines when long);
  ``X-Spam-Level: ***``          one ``*`` per whole point of the score (at most 50); none
                                 below 1;
  then the changes rspamd asks for in ``milter``: ``remove_headers`` (``{"Name": N}``: ``0``
  every field of that name, ``N > 0`` the N-th, ``N < 0`` the N-th from the end), then
  ``add_headers`` (``{"Name": value}``, ``{"Name": {"value": V, "order": N}}`` or a list of
  those; ``order`` ``N >= 0`` inserts the field at position N of the header, counted from 0 at
  the top, else it is appended). They come last, so a header that rspamd's ``milter_headers``
  module writes (``X-Spam-Status`` too) replaces ours. Other ``milter`` requests
  (``change_from``, ``add_rcpt``, ``del_rcpt``…) are logged and ignored.
After a failed scan with ``fail_open 1``: ``X-Spam-Not-Scanned: rspamd could not be asked
(<why>)`` at the top, and nothing else.

Log: one LOGINFO line per scan (action, score, profile, symbols); failures at LOGERROR.

Config files: none.
"""

import json
import math
import re
from urllib.parse import urlsplit

import treq
from twisted.internet import defer, task
from twisted.web.client import HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from qpsmtpd_tx import outcomes, policy
from qpsmtpd_tx.codes import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd_tx.http_answer import bounded_agent, too_long
from qpsmtpd_tx.message import is_field_name
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import boolean
from qpsmtpd_tx.policy import Setting

DEFAULT_URL = "http://127.0.0.1:11333"
DEFAULT_TIMEOUT = 15.0
#: the most bytes of one answer (HTTP header and body) we take: rspamd's JSON is a few KiB
MAX_ANSWER = 1 << 20

REJECT_TEXT = "Spam message rejected"
TRY_AGAIN_TEXT = "Try again later"
FAILED_TEXT = "Unable to scan for spam"
DEFAULT_SUBJECT = "*** SPAM *** %s"

#: rspamd's actions, most severe first; discard and quarantine are answered as reject
SEVERITY = {"reject": 6, "discard": 6, "quarantine": 6, "soft reject": 5, "greylist": 4,
            "rewrite subject": 3, "add header": 2, "no action": 1}
SPAM_ACTIONS = ("add header", "rewrite subject")

#: the fields this plugin writes (removed from the message before it writes them)
OWN_HEADERS = ("X-Spam-Flag", "X-Spam-Status", "X-Spam-Level", "X-Spam-Not-Scanned")

_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_PROFILE = re.compile(r"[!-~]+")


def parse_settings_id(value):
    """A settings profile id: printable ASCII without spaces (ValueError otherwise)."""
    value = str(value).strip()
    if not _PROFILE.fullmatch(value):
        raise ValueError("not a settings id: %r" % (value,))
    return value


def first_profile(values):
    """Profiles have no order of strictness: the message is scanned once per profile instead
    (see the module documentation); for other callers, the first recipient's profile."""
    return values[0]


class ScanError(Exception):
    """A scan failed; the text says why (it goes into the log and the Unscanned header)."""


@implementer(IBodyProducer)
class MessageProducer:
    """Sends the header bytes, then the body from an open file, in chunks (for treq)."""

    chunk_size = 65536

    def __init__(self, header, body_file, body_size, cooperator=task):
        self.header = header
        self.body_file = body_file
        self.length = len(header) + body_size
        self._cooperator = cooperator
        self._task = None

    def _chunks(self, consumer):
        try:
            consumer.write(self.header)
            yield None
            while True:
                chunk = self.body_file.read(self.chunk_size)
                if not chunk:
                    return
                consumer.write(chunk)
                yield None
        finally:
            self.close()

    def startProducing(self, consumer):
        self._task = self._cooperator.cooperate(self._chunks(consumer))
        return self._task.whenDone().addCallback(lambda _: None)

    def pauseProducing(self):
        try:
            self._task.pause()
        except task.TaskFinished:
            pass

    def resumeProducing(self):
        try:
            self._task.resume()
        except task.TaskFinished:
            pass

    def stopProducing(self):
        if self._task is not None:
            try:
                self._task.stop()
            except task.TaskFinished:
                pass
        self.close()

    def close(self):
        if self.body_file is not None:
            self.body_file.close()
            self.body_file = None


class Rspamd(Plugin):
    """Ask rspamd about each message; reject, defer, tag or rewrite as it says."""

    recipient_settings = (
        Setting("rspamd_settings_id", "settings_id", None, parse_settings_id, first_profile),
    )

    def init(self, args):
        options = self.parse_kv_args(args, {"url", "timeout", "fail_open", "settings_id"})
        self.url = self._parse_url(options.get("url", DEFAULT_URL))
        timeout = options.get("timeout", str(DEFAULT_TIMEOUT))
        if not _NUMBER.fullmatch(timeout) or float(timeout) <= 0:
            raise PluginError("timeout must be a number of seconds above 0, got %r" % timeout)
        self.timeout = float(timeout)
        self.fail_open = boolean("fail_open", options.get("fail_open", "0"))
        if "settings_id" in options:
            try:
                options["settings_id"] = parse_settings_id(options["settings_id"])
            except ValueError:
                raise PluginError("settings_id must be printable ASCII without spaces, got %r"
                                  % options["settings_id"])
        from twisted.internet import reactor
        self.reactor = reactor
        # rspamd answers "Connection: close"; no connection is kept between scans (a POST
        # on a connection the server has closed meanwhile would fail instead of being retried).
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        self._agent = bounded_agent(reactor, self._pool, MAX_ANSWER)
        self._pending = set()

    @staticmethod
    def _parse_url(url):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PluginError("url must be an http:// or https:// URL, got %r" % url)
        try:
            parts.port
        except ValueError:
            raise PluginError("bad port in url %r" % url)
        if parts.path in ("", "/"):
            url = url.rstrip("/") + "/checkv2"
        return url

    # -- the hook ------------------------------------------------------------------------------

    def hook_data_post(self, transaction):
        # Everything taken from the transaction is taken now, in the reactor thread, before
        # any wait: the header bytes, one open body file per scan, the envelope.
        groups = outcomes.group_by(outcomes.accepted(transaction),
                                   lambda r: self.setting(r, "rspamd_settings_id"))
        if not groups:
            groups.append((self.setting(None, "rspamd_settings_id"), []))
        header = transaction.header_bytes()
        scans = []
        for profile, recipients in groups:
            producer = MessageProducer(header, transaction.body.open(), transaction.body.size)
            scans.append(self._scan(
                producer, self.request_headers(transaction, profile, recipients), transaction))
        d = defer.DeferredList(scans, consumeErrors=True)
        d.addCallback(self._answered, transaction, groups)
        # a fault of ours is a failed scan too, never a silent accept
        d.addErrback(lambda failure: self._failed(transaction, ScanError(
            "cannot use the answer: %s" % failure.getErrorMessage())))
        return d

    def request_headers(self, transaction, profile, recipients=None):
        """rspamd's request headers for ``transaction`` scanned with ``profile`` for
        ``recipients`` (the ``Rcpt`` headers; default: every recipient), as pairs."""
        conn = transaction.connection
        headers = []
        if conn.remote_ip:
            headers.append(("IP", conn.remote_ip))
        if conn.hello_host:
            headers.append(("Helo", conn.hello_host))
        if conn.remote_host:
            headers.append(("Hostname", "unknown" if conn.remote_host == "Unknown"
                            else conn.remote_host))
        if transaction.sender is not None:
            headers.append(("From", transaction.sender.format()))
        for recipient in transaction.recipients if recipients is None else recipients:
            headers.append(("Rcpt", recipient.format()))
        if transaction.id:
            headers.append(("Queue-Id", transaction.id))
        if conn.auth_user:
            headers.append(("User", conn.auth_user))
        me = getattr(self.server, "me", None)
        if me:
            headers.append(("MTA-Name", me))
        if profile is not None:
            headers.append(("Settings-ID", profile))
        return [(name, _header_safe(value)) for name, value in headers]

    # -- talking to rspamd ---------------------------------------------------------------------

    def _scan(self, producer, header_pairs, transaction):
        """A Deferred firing with rspamd's answer (a dict), or failing with ScanError."""
        headers = Headers()
        for name, value in header_pairs:
            headers.addRawHeader(name.encode("ascii"), value.encode("utf-8", "surrogateescape"))
        headers.addRawHeader(b"Content-Type", b"message/rfc822")

        async def scan():
            response = await treq.request("POST", self.url, data=producer, headers=headers,
                                          agent=self._agent, reactor=self.reactor)
            body = await treq.content(response)
            return response.code, body

        d = defer.Deferred.fromCoroutine(scan())
        d.addTimeout(self.timeout, self.reactor)
        self._pending.add(d)

        def done(result):
            self._pending.discard(d)
            producer.close()
            return result

        def failed(failure):
            raise ScanError(self._describe(failure.value))

        d.addBoth(done)
        d.addCallbacks(self._parse_answer, failed)
        return d

    def _describe(self, error):
        if isinstance(error, (defer.TimeoutError, defer.CancelledError)):
            return "no answer within %g s" % self.timeout
        if too_long(error) is not None:
            return str(too_long(error))
        causes = [r.value for r in getattr(error, "reasons", None) or []] or [error]
        if any(isinstance(c, (defer.TimeoutError, defer.CancelledError)) for c in causes):
            return "no answer within %g s" % self.timeout
        text = "; ".join(str(c) or type(c).__name__ for c in causes)
        return "cannot connect to %s: %s" % (self.url, text)

    @staticmethod
    def _parse_answer(result):
        code, body = result
        text = body.decode("utf-8", "replace")
        if code != 200:
            raise ScanError("HTTP %d: %s" % (code, _short(text)))
        try:
            answer = json.loads(text)
        except (ValueError, RecursionError):    # RecursionError: arrays nested too deep
            raise ScanError("the answer is not JSON: %s" % _short(text))
        if not isinstance(answer, dict) or not isinstance(answer.get("action"), str):
            raise ScanError("the answer has no action: %s" % _short(text))
        if answer["action"] not in SEVERITY:
            raise ScanError("unknown action %r" % answer["action"])
        return answer

    # -- acting on the answer ------------------------------------------------------------------

    def _answered(self, results, transaction, groups):
        answers = []
        for (ok, value), (profile, _) in zip(results, groups):
            if not ok:
                return self._failed(transaction, value.value if isinstance(
                    value.value, ScanError) else ScanError(str(value.value)))
            answers.append((value, profile))
        for answer, profile in answers:
            self._log_answer(transaction, answer, profile)
        if getattr(self.server, "recipient_policy", policy.SPLIT) == policy.SPLIT:
            # each profile's answer for its own recipients
            return self.per_recipient_result(transaction, [
                (recipients, self._act(transaction, recipients, answer, profile))
                for (answer, profile), (_, recipients) in zip(answers, groups)])
        answer, profile = max(answers, key=lambda a: SEVERITY[a[0]["action"]])
        return self._act(transaction, outcomes.accepted(transaction), answer, profile)

    def _act(self, transaction, recipients, answer, profile):
        """The result of rspamd's ``answer`` for ``recipients``; their copy's headers."""
        action = answer["action"]
        message = _smtp_message(answer)
        if SEVERITY[action] == SEVERITY["reject"]:
            if action != "reject":
                self.log(LOGWARN, "rspamd asked to %s the message: rejecting it instead"
                         % action, transaction)
            return DENY, message or REJECT_TEXT
        if action in ("soft reject", "greylist"):
            return DENYSOFT, message or TRY_AGAIN_TEXT
        milter = answer.get("milter")
        if isinstance(milter, dict):
            self._log_milter(transaction, milter)
        self.edit_header(transaction, recipients, change_headers, answer, profile)
        return DECLINED

    def _failed(self, transaction, error):
        reason = str(error)
        if self.fail_open:
            self.log(LOGERROR, "cannot scan: %s; accepting the message unscanned (fail_open 1)"
                     % reason, transaction)
            header = transaction.header
            if header is not None:
                for name in OWN_HEADERS:
                    header.delete(name)
                header.add("X-Spam-Not-Scanned", "rspamd could not be asked (%s)"
                           % _header_safe(reason), prepend=True)
            return DECLINED
        self.log(LOGERROR, "cannot scan: %s; answering 452 %s (fail_open 0)"
                 % (reason, FAILED_TEXT), transaction)
        return DENYSOFT, FAILED_TEXT

    def _log_answer(self, transaction, answer, profile):
        symbols = answer.get("symbols") if isinstance(answer.get("symbols"), dict) else {}
        listed = " ".join("%s(%.2f)" % (name, _number(s.get("score") if isinstance(s, dict)
                                                       else 0))
                          for name, s in sorted(symbols.items()))
        self.log(LOGINFO, "rspamd: %s, score %.2f/%.2f%s%s" % (
            answer["action"], _number(answer.get("score")), _number(answer.get("required_score")),
            ", profile %s" % profile if profile is not None else "",
            ", symbols " + listed if listed else ""), transaction)

    def _log_milter(self, transaction, milter):
        """Log the ``milter`` requests that :func:`apply_milter` leaves out."""
        adds = milter.get("add_headers")
        for name in adds if isinstance(adds, dict) else ():
            if not is_field_name(name):
                self.log(LOGWARN, "rspamd asked to add a header with a bad name %r" % name,
                         transaction)
        others = sorted(k for k in milter if k not in ("add_headers", "remove_headers"))
        if others:
            self.log(LOGINFO, "ignoring rspamd's milter requests %s" % ", ".join(others),
                     transaction)

    # -- stopping ------------------------------------------------------------------------------

    def stop(self):
        """Cancel scans in flight; close the connection pool."""
        for d in list(self._pending):
            d.cancel()
        return self._pool.closeCachedConnections()


# -- helpers -----------------------------------------------------------------------------------


def change_headers(header, answer, profile):
    """The header changes of an accepted message (see the module documentation): ours, the
    rewritten Subject, then rspamd's ``milter`` requests."""
    action = answer["action"]
    for name in OWN_HEADERS:
        header.delete(name)
    score = _number(answer.get("score"))
    ours = []
    if action in SPAM_ACTIONS:
        ours.append(("X-Spam-Flag", "YES"))
    ours.append(("X-Spam-Status", spam_status(answer, profile)))
    if score >= 1:
        ours.append(("X-Spam-Level", "*" * min(50, int(math.floor(score)))))
    for name, value in reversed(ours):
        header.add(name, value, prepend=True)
    if action == "rewrite subject":
        subject = answer.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            subject = DEFAULT_SUBJECT % (header.get_first("Subject", "") or "")
        header.replace("Subject", subject)
    milter = answer.get("milter")
    if isinstance(milter, dict):
        apply_milter(header, milter)


def apply_milter(header, milter):
    """rspamd's ``remove_headers`` then ``add_headers`` requests (bad names skipped)."""
    removes = milter.get("remove_headers")
    if isinstance(removes, dict):
        for name, which in removes.items():
            if is_field_name(name) and isinstance(which, int):
                remove_field(header, name, which)
    adds = milter.get("add_headers")
    if isinstance(adds, dict):
        for name, spec in adds.items():
            if is_field_name(name):
                for value, order in _header_specs(spec):
                    add_field(header, name, value, order)


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _short(text, limit=200):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _header_safe(value):
    """A request header value on one line."""
    return " ".join(str(value).split())


def _smtp_message(answer):
    messages = answer.get("messages")
    if isinstance(messages, dict):
        message = messages.get("smtp_message")
        if isinstance(message, str) and message.strip():
            lines = [line.strip() for line in message.replace("\r", "\n").split("\n")]
            return "\n".join(line for line in lines if line)
    return None


def _header_specs(spec):
    """``(value, order)`` pairs of one ``add_headers`` entry (order None: append)."""
    items = spec if isinstance(spec, list) else [spec]
    for item in items:
        if isinstance(item, dict):
            value, order = item.get("value"), item.get("order")
        else:
            value, order = item, None
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            yield str(value), (order if isinstance(order, int)
                                         and not isinstance(order, bool) else None)


def spam_status(answer, profile):
    """The value of our X-Spam-Status field for ``answer``."""
    action = answer["action"]
    words = ["Yes," if action in SPAM_ACTIONS else "No,",
             "score=%.2f" % _number(answer.get("score")),
             "required=%.2f" % _number(answer.get("required_score")),
             "action=%s" % action.replace(" ", "_")]
    if profile is not None:
        words.append("profile=%s" % profile)
    symbols = answer.get("symbols")
    names = sorted(symbols) if isinstance(symbols, dict) else []
    names = [n for n in names if _PROFILE.fullmatch(n)]
    if names:
        tests = ["tests=" + names[0]] + names[1:]
        words.extend(name + ("," if i < len(tests) - 1 else "") for i, name in enumerate(tests))
    return _fold(words, len("X-Spam-Status: "))


def _fold(words, start, width=78):
    """Join ``words`` with spaces, breaking onto continuation lines before ``width``."""
    lines, line, used = [], [], start
    for word in words:
        if line and used + 1 + len(word) > width:
            lines.append(" ".join(line))
            line, used = [], 1
        used += (1 if line else 0) + len(word)
        line.append(word)
    lines.append(" ".join(line))
    return "\n\t".join(lines)


def remove_field(header, name, which):
    """Remove fields named ``name``: all (``which`` 0), the N-th (N > 0), the N-th from the
    end (N < 0)."""
    lname = name.lower()
    positions = [i for i, (n, _) in enumerate(header.fields) if n.lower() == lname]
    if which == 0:
        drop = set(positions)
    elif 0 < which <= len(positions):
        drop = {positions[which - 1]}
    elif 0 < -which <= len(positions):
        drop = {positions[which]}
    else:
        drop = set()
    header.fields = [f for i, f in enumerate(header.fields) if i not in drop]


def add_field(header, name, value, order=None):
    """Add a field: at position ``order`` (0 = the top) when it is 0 or more, else at the end."""
    if order is None or order < 0:
        header.add(name, value)
        return
    header.add(name, value)
    field = header.fields.pop()
    header.fields.insert(min(order, len(header.fields)), field)
