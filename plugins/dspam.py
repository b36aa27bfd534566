"""dspam — classify each message with the dspam client program; tag it, refuse spam, train dspam.

At data_post a message of at most 500,000 bytes from a client that is not immune (relay
client, whitelisted host or sender) is written to a file in the spool directory as
``X-Envelope-From: <sender>``, the header, an empty line and the body, and dspam reads it
on its standard input (asynchronously, without a shell; qpsmtpd 0.94's command line)::

    <dspam_bin> --user <user> --mode=tum --process --deliver=summary --stdout

``<user>`` is the recipient's address (lower case) when there is one recipient, else the
name of the user the server runs as (dspam must ``Trust`` it). The first line of dspam's
output is its summary::

    user@example.com; result="Spam"; class="Spam"; probability=1.0000; confidence=1.00; signature=N/A

Arguments: ``key value`` pairs, all optional:
  ``dspam_bin PATH``     the program (default ``/usr/local/bin/dspam``). Missing: logged at
                         start-up (0.94's text); messages are then not classified (logged).
  ``reject VALUE``       a probability from 0 to 1: a message dspam classes as spam with a
                         probability above it and confidence 1 is refused; default ``1``
                         (never, as dspam's probability is at most 1); ``0`` never;
                         ``agree``: refuse only when dspam and spamassassin (run before)
                         both say spam. The per-recipient setting ``dspam_reject``.
  ``reject_type perm|temp|disconnect|temp_disconnect``  how to refuse (default ``perm``).
  ``autolearn naughty|karma|spamassassin|any``  retrain dspam (``--mode=toe
                         --source=error --class=spam|innocent``) when it disagrees with the
                         ``naughty`` plugin (a naughty connection is spam), with ``karma``
                         (below -2 spam, above 2 ham), or with spamassassin's own autolearn;
                         ``any``: the first that applies. At most once per message.
  ``learn_from_sa N``    the name of this before qpsmtpd 0.94: taken as ``autolearn
                         spamassassin`` (``N`` is not used), with a start-up warning.
  ``timeout SECONDS``    dspam is killed after this long (default 120; not in 0.94); the
                         message is then not classified (logged).
  ``loglevel LEVEL``     per-plugin log level.

Per-recipient setting (recipient note, see README "Per-recipient policy"):
  ``dspam_reject``       as ``reject``; strictest: the lowest probability above 0, then
                         ``agree``, then ``0``. With config ``recipient_policy split``
                         (default) dspam classifies the message once (with several
                         recipients as the server's user, see above) and each group of
                         recipients with the same value gets its own answer: spam is
                         refused for those whose level it passes (their copy quarantined,
                         see README "Per-recipient policy") and delivered to the others.
                         ``reject_type`` is the plugin's, for everyone.

Config files: none. Headers (at the top; an old ``X-DSPAM-Result`` is removed):
``X-DSPAM-Signature: <signature>`` then ``X-DSPAM-Result: <result>, probability=<p>,
confidence=<c>``. Notes: transaction note ``dspam`` = ``{"class", "result", "probability",
"confidence", "signature"}``; connection note ``karma`` -2 when dspam and spamassassin agree
on spam, +1 when they agree on ham with confidence above 0.9 (``reject agree`` only).

Replies:
  spam above ``reject``       ``552 dspam says, no spam please (#5.6.1)`` (``reject_type
                              temp``: ``452 … (#4.6.1)``; qpsmtpd's texts)
  ``reject agree``, both spam  ``552 we agree, no spam please``
  otherwise                   none (DECLINED)

Differences from qpsmtpd 0.94: dspam runs asynchronously, with a time limit, and is looked
for at each message (0.94 disabled itself for good when it was missing at start-up); the
message file has one empty line after the header (0.94 wrote two, CRLF); a single
recipient's address is used as the dspam user without a shell in between; bad arguments
stop start-up; the reject level can be set per recipient.
"""

import os
import pwd

from qpsmtpd_tx.codes import DECLINED, DENYSOFT, DENYSOFT_DISCONNECT, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.plugin_args import REJECT_TYPES
from qpsmtpd_tx.policy import Setting
from qpsmtpd_tx.scanner import ProgramScanner

MAX_SIZE = 500000
AUTOLEARN = ("naughty", "karma", "spamassassin", "any")
SUMMARY_FIELDS = ("result", "class", "probability", "confidence", "signature")


def reject_level(text):
    """A ``dspam_reject`` value: ``agree``, or a probability from 0 to 1 (a float)."""
    word = str(text).strip().lower()
    if word == "agree":
        return word
    value = float(word)
    if not 0 <= value <= 1:
        raise ValueError("dspam_reject must be agree or a number from 0 to 1, not %r" % (text,))
    return value


def strictest_reject(values):
    """The lowest probability above 0, else ``agree``, else 0 (never)."""
    numbers = [v for v in values if v != "agree" and v > 0]
    if numbers:
        return min(numbers)
    return "agree" if "agree" in values else 0.0


def parse_summary(line):
    """dspam's ``--deliver=summary`` line as a dict (SUMMARY_FIELDS, quotes removed), or None
    without a ``result``."""
    fields = {}
    for part in line.strip().split("; ")[1:]:
        key, _, value = part.partition("=")
        if key in SUMMARY_FIELDS:
            fields[key] = value.strip().strip('"')
    return fields if fields.get("result") else None


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


class DSpam(ProgramScanner):
    """Classify messages with dspam; tag, refuse or retrain as qpsmtpd's plugin does."""

    recipient_settings = (Setting("dspam_reject", "reject", 1.0, reject_level,
                                  strictest_reject),)
    max_size = MAX_SIZE

    def init(self, args):
        arguments = self.parse_kv_args(args, {"dspam_bin", "reject", "reject_type", "autolearn",
                                              "learn_from_sa", "timeout"})
        self.program = arguments.get("dspam_bin", "/usr/local/bin/dspam")
        self.timeout = self.timeout_argument(arguments)
        if "reject" in arguments:
            try:
                arguments["reject"] = reject_level(arguments["reject"])
            except ValueError:
                raise PluginError("reject must be agree or a number from 0 to 1, got %r"
                                  % arguments["reject"])
        self.reject_type = arguments.get("reject_type", "perm")
        if self.reject_type.lower() not in REJECT_TYPES:
            raise PluginError("reject_type must be one of %s, got %r"
                              % ("|".join(REJECT_TYPES), self.reject_type))
        self.autolearn = arguments.get("autolearn")
        if "learn_from_sa" in arguments:
            self.log(LOGWARN, "learn_from_sa is the name before qpsmtpd 0.94: using autolearn "
                     "spamassassin (spamassassin's own autolearn decides)")
            self.autolearn = self.autolearn or "spamassassin"
        if self.autolearn is not None and self.autolearn not in AUTOLEARN:
            raise PluginError("autolearn must be one of %s, got %r"
                              % ("|".join(AUTOLEARN), self.autolearn))
        if not os.path.exists(self.program):
            self.log(LOGERROR, "error, dspam CLI binary not found: install dspam and/or set "
                     "dspam_bin")
        elif not os.access(self.program, os.X_OK):
            self.log(LOGERROR, "error, no permission to run %s" % self.program)

    # -- classifying ----------------------------------------------------------------------------

    def skip_reason(self, transaction):
        if self.is_immune(transaction):
            return LOGINFO, "immune (relay client or whitelisted)"
        if transaction.data_size > MAX_SIZE:
            return LOGINFO, "too big (%d)" % transaction.data_size
        return None

    def message_prefix(self, transaction):
        sender = transaction.sender.format() if transaction.sender is not None else "<>"
        return ("X-Envelope-From: %s\n" % sender).encode("utf-8", "surrogateescape")

    def dspam_command(self, transaction, *mode):
        """dspam's command line for this message's user with ``mode`` options."""
        return [self.program, "--user", self.dspam_user(transaction)] + list(mode) + [
            "--deliver=summary", "--stdout"]

    def dspam_user(self, transaction):
        """The one recipient's address in lower case, else the user we run as."""
        if len(transaction.recipients) == 1:
            return transaction.recipients[0].address.lower()
        self.log(LOGINFO, "multiple recipients (%d), ignoring user prefs"
                 % len(transaction.recipients), transaction)
        return pwd.getpwuid(os.geteuid()).pw_name

    def scan(self, transaction, path):
        argv = self.dspam_command(transaction, "--mode=tum", "--process")
        return self.run(argv, stdin_path=path)

    async def _check(self, transaction, head, body):
        result = await self.scan_message(head, body, lambda path: self.scan(transaction, path))
        if result.failure is not None:
            return self.failed(transaction, result.failure)
        summary = parse_summary(result.lines[0] if result.lines else "")
        if summary is None:
            self.log(LOGWARN, "error, no dspam response. Check logs for errors.", transaction)
            return DECLINED
        transaction.notes["dspam"] = summary
        self.attach_headers(transaction, summary)
        await self.learn(transaction, summary)
        return self.decide(transaction, summary)

    def attach_headers(self, transaction, summary):
        """X-DSPAM-Signature and X-DSPAM-Result at the top (an old Result removed)."""
        if transaction.header is None:
            return
        transaction.header.delete("X-DSPAM-Result")
        self.add_headers(transaction, [
            ("X-DSPAM-Signature", summary.get("signature", "")),
            ("X-DSPAM-Result", "%s, probability=%s, confidence=%s" % (
                summary["result"], summary.get("probability", ""),
                summary.get("confidence", "")))], prepend=True)

    # -- training -------------------------------------------------------------------------------

    def learn_as(self, transaction, summary):
        """``spam``, ``innocent`` or None: what ``autolearn`` says to retrain this message as."""
        if self.autolearn is None:
            return None
        result = summary["result"]
        if self.autolearn in ("naughty", "any") and self.is_naughty(transaction) \
                and result == "Innocent":
            self.log(LOGINFO, "training naughty FN message as spam", transaction)
            return "spam"
        karma = transaction.connection.notes.get("karma")
        if self.autolearn in ("karma", "any") and karma is not None:
            if karma < -2 and result == "Innocent":
                self.log(LOGINFO, "training bad karma (%s) FN as spam" % karma, transaction)
                return "spam"
            if karma > 2 and result == "Spam":
                self.log(LOGINFO, "training good karma (%s) FP as ham" % karma, transaction)
                return "innocent"
        if self.autolearn in ("spamassassin", "any"):
            sa = transaction.notes.get("spamassassin") or {}
            if not sa.get("is_spam"):
                if not self.is_naughty(transaction):
                    self.log(LOGERROR, "SA results missing", transaction)
                return None
            if not sa.get("autolearn"):
                self.log(LOGERROR, "SA autolearn unset", transaction)
                return None
            if sa["is_spam"] == "Yes" and sa["autolearn"] == "spam" and result == "Innocent":
                self.log(LOGINFO, "training SA FN as spam", transaction)
                return "spam"
            if sa["is_spam"] == "No" and sa["autolearn"] == "ham" and result == "Spam":
                self.log(LOGINFO, "training SA FP as ham", transaction)
                return "innocent"
        return None

    async def learn(self, transaction, summary):
        """Retrain dspam on this message (with its new X-DSPAM headers) if autolearn says so."""
        kind = self.learn_as(transaction, summary)
        if kind is None:
            return
        argv = self.dspam_command(transaction, "--mode=toe", "--source=error",
                                  "--class=%s" % kind)
        head = self.message_prefix(transaction) + transaction.header_bytes()
        try:
            body = transaction.body.open()
        except OSError as e:
            self.log(LOGERROR, "cannot train dspam: %s" % e, transaction)
            return
        result = await self.scan_message(head, body, lambda path: self.run(argv, path))
        if result.failure is not None:
            self.log(LOGERROR, "cannot train dspam: %s" % result.failure, transaction)

    # -- the verdict ----------------------------------------------------------------------------

    def decide(self, transaction, summary):
        """qpsmtpd's log_and_return: pass, or refuse spam as ``dspam_reject`` says, once per
        group of recipients with the same ``dspam_reject``."""
        if not summary.get("class"):
            self.log(LOGWARN, "skip, no dspam class detected", transaction)
            return DECLINED
        return self.per_recipient_result(transaction, [
            (recipients, self.decide_for(transaction, summary, values["dspam_reject"]))
            for values, recipients in self.recipient_groups(transaction)])

    def decide_for(self, transaction, summary, reject):
        """The verdict for recipients whose ``dspam_reject`` is ``reject``."""
        status = "%s, %s c." % (summary.get("class"), summary.get("confidence"))
        if reject == "agree":
            return self.reject_agree(transaction, summary)
        if not reject:
            self.log(LOGINFO, "skip, reject disabled (%s)" % status, transaction)
            return DECLINED
        if summary["class"] == "Innocent":
            self.log(LOGINFO, "pass, %s" % status, transaction)
            return DECLINED
        if transaction.connection.relay_client:
            self.log(LOGINFO, "skip, allowing spam, user authenticated (%s)" % status,
                     transaction)
            return DECLINED
        probability = _number(summary.get("probability"))
        if probability <= reject:
            self.log(LOGINFO, "pass, %s probability is too low (%s < %s)" % (
                summary["class"], summary.get("probability"), reject), transaction)
            return DECLINED
        if _number(summary.get("confidence")) != 1:
            self.log(LOGINFO, "pass, %s confidence is too low (%s)" % (
                summary["class"], summary.get("confidence")), transaction)
            return DECLINED
        self.log(LOGINFO, "fail, %s, (%s confident)" % (summary["class"],
                                                        summary.get("confidence")), transaction)
        code = self.get_reject_type()
        status_class = 4 if code in (DENYSOFT, DENYSOFT_DISCONNECT) else 5
        return code, "dspam says, no spam please (#%d.6.1)" % status_class

    def reject_agree(self, transaction, summary):
        """``reject agree``: refuse only if spamassassin says spam too."""
        sa = transaction.notes.get("spamassassin") or {}
        status = "%s, %s c" % (summary["class"], summary.get("confidence"))
        if not sa.get("is_spam"):
            self.log(LOGINFO, "pass, cannot agree, SA results missing (%s)" % status,
                     transaction)
            return DECLINED
        if summary["class"] == "Spam":
            if sa["is_spam"] == "Yes":
                self.adjust_karma(transaction, -2)
                self.log(LOGINFO, "fail, agree, %s" % status, transaction)
                return self.get_reject_type(), "we agree, no spam please"
            self.log(LOGINFO, "fail, disagree, %s" % status, transaction)
            return DECLINED
        if summary["class"] == "Innocent":
            if sa["is_spam"] == "No":
                if _number(summary.get("confidence")) > 0.9:
                    self.adjust_karma(transaction, 1)
                self.log(LOGINFO, "pass, agree, %s" % status, transaction)
                return DECLINED
            self.log(LOGINFO, "pass, disagree, %s" % status, transaction)
            return DECLINED
        self.log(LOGINFO, "pass, other %s" % status, transaction)
        return DECLINED
