"""random_error — fail at random, to test how clients and other servers handle temporary errors.

Hooks: connect, helo, ehlo, mail, rcpt, data, data_post. At each of them the plugin fails with
a probability chosen so that a message going through the six checks of one delivery
(connect, helo/ehlo, mail, rcpt, data, data_post) fails with about PERCENT % overall: each
check fails with ``1 - (1 - PERCENT/100) ** (1/6)``. A failure is ``DENYSOFT_DISCONNECT`` two
times in five and ``DENYSOFT`` otherwise, with the text ``random failure``. Never load it on
a production server.

Arguments: ``[PERCENT]`` — the overall failure rate in percent (default 1; ``0`` also means 1,
as in qpsmtpd, while ``0.0`` means never; fractions allowed; a negative number disables the
plugin; 100 or more fails every check). Anything else stops start-up.

Config files: none.

Notes: at connect the plugin writes PERCENT to the connection note ``random_fail_%``, and
every check reads the rate from that note: a plugin listed after this one may change it for
the rest of the connection.

Replies (``random failure`` is the text), by hook — DENYSOFT / DENYSOFT_DISCONNECT:
  connect ``450`` (both close the connection), helo/ehlo ``450`` / ``450`` + close,
  mail ``450`` / ``421`` + close, rcpt ``450`` / ``421`` + close, data ``451`` / ``421``
  + close, data_post ``452`` / ``452`` + close.

Testing: the plugin draws from its attribute ``random`` (a ``random.Random``); a test may
replace it with anything that has a ``random()`` method returning floats in [0, 1).

Differences from qpsmtpd 0.94, on purpose: a non-numeric argument stops start-up (0.94 read
it as 0, i.e. 1 %).
"""

import random

from qpsmtpd_tx.codes import DECLINED, DENYSOFT, DENYSOFT_DISCONNECT, LOGERROR, LOGINFO
from qpsmtpd_tx.plugin import Plugin, PluginError

NOTE = "random_fail_%"
MESSAGE = "random failure"
#: the checks one delivery goes through
CHECKS = 6


def pass_threshold(percent):
    """The value a draw in [0, 1) must stay below for one check to pass."""
    success = 1 - percent / 100.0
    if success <= 0:
        return 0.0
    return success ** (1.0 / CHECKS)


class RandomError(Plugin):
    """DENYSOFT or DENYSOFT_DISCONNECT at random in the hooks of a delivery."""

    def init(self, args):
        if len(args) > 1:
            raise PluginError("usage: random_error [PERCENT], got %r" % (" ".join(args),))
        self.percent = 1.0
        if args:
            try:
                value = float(args[0])
            except ValueError:
                value = float("nan")
            if value != value or value in (float("inf"), float("-inf")):
                raise PluginError("PERCENT must be a number, got %r" % (args[0],))
            # Perl's truth: only "0" itself means the default ("0.0" means never).
            self.percent = 1.0 if args[0] == "0" else value
        self.random = random.Random()

    def maybe_fail(self, transaction, *args):
        """One check: DECLINED, or a temporary failure."""
        value = transaction.connection.notes.get(NOTE, self.percent)
        try:
            percent = float(value)
        except (TypeError, ValueError):
            self.log(LOGERROR, "skip, note %s is not a number: %r" % (NOTE, value), transaction)
            return DECLINED
        threshold = pass_threshold(percent)
        self.log(LOGINFO, "to fail, rand(1) must be more than %s" % (threshold,), transaction)
        if self.random.random() < threshold:
            return DECLINED
        if self.random.random() * 5 < 2:
            return DENYSOFT_DISCONNECT, MESSAGE
        return DENYSOFT, MESSAGE

    def hook_connect(self, transaction):
        transaction.connection.notes[NOTE] = self.percent
        return self.maybe_fail(transaction)

    hook_helo = hook_ehlo = hook_mail = hook_rcpt = hook_data = hook_data_post = maybe_fail
