"""headers — check a message's header: required fields, no duplicated singular fields, Date range.

Runs at the end of DATA (``data_post``), after the core has added its Received and
Authentication-Results fields. In qpsmtpd 0.94 this plugin replaced ``check_basicheaders``,
which is an alias of it here (see below).

Arguments (``key value`` pairs, all optional), e.g.
``headers reject_type temp require From,Date future 2 past 15``:
  ``require LIST``      comma-separated field names that must be present with a non-empty
                        value, e.g. ``From,Date,Subject,Message-ID``. Default ``From``.
  ``future N``          refuse a message whose Date is more than N days ahead (N may be a
                        fraction, ``0`` turns the test off). Default: not tested.
  ``past N``            refuse a message whose Date is more than N days old. Default: not tested.
  ``days N``            the old ``check_basicheaders`` argument: sets ``future`` and ``past``
                        where they are not given. A lone number (``check_basicheaders 5``)
                        means the same.
  ``reject 0|1|naughty``  ``1`` (default) refuses; ``0`` only logs ("fail, tolerated");
                        ``naughty`` hands the refusal to the ``naughty`` plugin (connection
                        note ``naughty``).
  ``reject_type T``     ``perm``/``hard`` (default), ``temp``/``soft``, ``disconnect``,
                        ``temp_disconnect``.
  ``loglevel L``        per-plugin log level (``6``, ``LOGINFO``, ``+1``, ``-2``).

Checks, in this order:
  1. an empty message (no byte between DATA and the final dot) → ``You must send some data first``;
  2. no header at all → ``Headers are missing`` (cannot happen behind the core, which always
     adds its own fields; kept for plugins that drop the header);
  3. a relay client or a whitelisted host or sender (connection ``relay_client``, connection
     note ``whitelisthost``, transaction note ``whitelistsender``) skips the checks below;
  4. each ``require``d field that is missing or empty: ``We require a valid <Name> header``;
  5. each singular field present more than once (Date From Sender Reply-To To Cc Bcc
     Message-Id In-Reply-To References Subject):
     ``Only one <Name> header allowed. See RFC 5322, Section 3.6``;
  6. the first Date field, if it parses (RFC 5322 date, see below) and ``past``/``future``
     are set: ``The Date header is too far in the past`` / ``... too far in the future``.
     A date that does not parse is skipped (logged), as qpsmtpd does.
The Date range failure is answered first; otherwise the failures of 4 and 5 are all sent,
one line each (a multi-line reply), and logged as ``fail, RFC 5322 validation errors``.
Each failure of 4, 5 and 6 also lowers the connection's karma by one.

Replies (with the default ``reject_type``): ``552 <text>``; with ``temp``: ``452 <text>``;
e.g.::

    552-We require a valid Date header
    552 Only one Subject header allowed. See RFC 5322, Section 3.6

Notes: reads connection note ``whitelisthost`` and transaction note ``whitelistsender``;
writes connection notes ``karma`` and, with ``reject naughty``, ``naughty`` and
``naughty_reject_type``.

Per-recipient settings (recipient notes, README "Per-recipient policy"): ``headers_reject``
(``0``, ``1``, ``naughty``) and ``headers_reject_type`` override ``reject`` and ``reject_type`` for
that recipient (note → argument → default); with ``recipient_policy split`` the message is
refused for the recipients whose level refuses it and goes on for the others.

Config files: none.

The alias ``check_basicheaders`` takes the same arguments; loaded under that name the default
for ``require`` is ``From,Date``, as the old plugin required both.

Differences from qpsmtpd 0.94, on purpose:
  - a message with missing or duplicated fields gets the reasons above as its reply; qpsmtpd
    answered with the number of its DENY constant (``552 901``) because of a slip in its
    arguments, and its reasons only reached the client through the ``naughty`` plugin;
  - the reasons are stored for the ``naughty`` plugin only with ``reject naughty``; qpsmtpd
    stored them always, so with ``reject 0`` a later ``naughty`` still refused the connection;
  - an empty field value counts as missing (qpsmtpd's documentation says so; its code only
    treated the value ``0`` or no field as missing);
  - dates are parsed as RFC 5322 / RFC 2822 dates (Python's ``email.utils``), a date without a
    zone as local time; the rarer formats Perl's Date::Parse also accepted (e.g. ISO 8601)
    do not parse and are therefore not range-checked;
  - bad arguments (odd count, unknown key, non-numeric day count, unknown ``reject`` or
    ``reject_type``) stop start-up; qpsmtpd logged a warning or ignored them.
"""

import email.utils
import re
import time

from qpsmtpd_tx.codes import DECLINED, LOGINFO, LOGWARN
from qpsmtpd_tx.plugin import Plugin, PluginError

SINGULAR_HEADERS = ("Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc",
                    "Message-Id", "In-Reply-To", "References", "Subject")
DEFAULT_REQUIRE = ("From",)
OLD_NAME_REQUIRE = ("From", "Date")
OLD_NAME = "check_basicheaders"
REJECT_TYPES = ("perm", "hard", "temp", "soft", "disconnect", "temp_disconnect")
DAY = 24 * 3600

_FIELD_NAME = re.compile(r"[!-9;-~]+")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")

NO_DATA = "You must send some data first"
NO_HEADER = "Headers are missing"
TOO_OLD = "The Date header is too far in the past"
TOO_NEW = "The Date header is too far in the future"


def parse_days(key, value):
    """A day count argument as a float; PluginError if it is not a non-negative number."""
    if not _NUMBER.fullmatch(value):
        raise PluginError("%s must be a number of days, got %r" % (key, value))
    return float(value)


def date_timestamp(value):
    """The epoch seconds of an RFC 5322 date, local time if it has no zone; None if unparseable."""
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return email.utils.mktime_tz(parsed)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None


class Headers(Plugin):
    """Refuse messages with missing, duplicated or badly dated header fields."""

    def init(self, args):
        args = list(args)
        if len(args) == 1 and _NUMBER.fullmatch(args[0]):
            # the old check_basicheaders form: one number of days
            self.log(LOGWARN, "deprecated arguments. Update your config.")
            args = ["days", args[0]]
        elif "days" in args[::2]:
            self.log(LOGWARN, "deprecated argument 'days', update your config.")
        options = self.parse_kv_args(
            args, {"require", "future", "past", "days", "reject", "reject_type"})
        days = parse_days("days", options["days"]) if "days" in options else None
        self.future = parse_days("future", options["future"]) if "future" in options else days
        self.past = parse_days("past", options["past"]) if "past" in options else days

        if "require" in options:
            names = [n.strip() for n in options["require"].split(",") if n.strip()]
            for name in names:
                if not _FIELD_NAME.fullmatch(name):
                    raise PluginError("require: %r is not a header field name" % (name,))
            self.required = tuple(names)
        elif (self.path or "").split(":")[0] == OLD_NAME:
            self.required = OLD_NAME_REQUIRE
        else:
            self.required = DEFAULT_REQUIRE

        reject = options.get("reject", "1")
        if reject not in ("0", "1", "naughty"):
            raise PluginError("reject must be 0, 1 or naughty, got %r" % (reject,))
        self.reject = reject
        reject_type = options.get("reject_type", "perm")
        if reject_type.lower() not in REJECT_TYPES:
            raise PluginError("reject_type must be one of %s, got %r"
                              % (", ".join(REJECT_TYPES), reject_type))
        self.reject_type = reject_type
        self.read_reject_per_recipient("headers")

    # -- the hook ----------------------------------------------------------------------------

    def hook_data_post(self, transaction):
        if transaction.data_size == 0:
            return self.get_reject(transaction, NO_DATA, "no data")
        header = transaction.header
        if header is None:
            return self.get_reject(transaction, NO_HEADER, "missing headers")
        if self.is_immune(transaction):
            self.log(LOGINFO, "skip, %s" % self.immunity(transaction), transaction)
            return DECLINED

        errors = self.missing_required(transaction, header)
        errors += self.duplicated_singular(transaction, header)
        date_error = self.invalid_date_range(transaction, header)
        if date_error:
            return self.get_reject(transaction, date_error, date_error)
        if errors:
            return self.get_reject(transaction, "\n".join(errors), "RFC 5322 validation errors")
        self.log(LOGINFO, "pass", transaction)
        return DECLINED

    # -- the checks --------------------------------------------------------------------------

    @staticmethod
    def immunity(transaction):
        conn = transaction.connection
        if conn.relay_client:
            return "relay client"
        if conn.notes.get("whitelisthost"):
            return "whitelisted host"
        return "whitelisted sender"

    def missing_required(self, transaction, header):
        """The reasons for required fields that are missing or empty."""
        errors = []
        for name in self.required:
            value = header.get_first(name)
            if value is not None and value.strip():
                continue
            self.adjust_karma(transaction, -1)
            self.log(LOGINFO, "fail, no %s header" % name, transaction)
            errors.append("We require a valid %s header" % name)
        return errors

    def duplicated_singular(self, transaction, header):
        """The reasons for singular fields present more than once."""
        errors = []
        for name in SINGULAR_HEADERS:
            if header.count(name) <= 1:
                continue
            self.adjust_karma(transaction, -1)
            self.log(LOGINFO, "fail, too many %s headers" % name, transaction)
            errors.append("Only one %s header allowed. See RFC 5322, Section 3.6" % name)
        return errors

    def invalid_date_range(self, transaction, header, now=None):
        """The reason the first Date field is out of range, or None."""
        if not self.past and not self.future:
            return None
        date = header.get_first("Date")
        if not date:
            return None
        stamp = date_timestamp(date)
        if stamp is None:
            self.log(LOGINFO, "skip, date not parseable (%s)" % date, transaction)
            return None
        now = time.time() if now is None else now
        if self.past and stamp < now - self.past * DAY:
            self.log(LOGINFO, "fail, date too old (%s)" % date, transaction)
            self.adjust_karma(transaction, -1)
            return TOO_OLD
        if self.future and stamp > now + self.future * DAY:
            self.log(LOGINFO, "fail, date in future (%s)" % date, transaction)
            self.adjust_karma(transaction, -1)
            return TOO_NEW
        return None
