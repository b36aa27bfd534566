"""A hook's answer at once when it is already known.

A hook that returns a Deferred costs the server a time limit (a timer set and cancelled)
and a detour through callbacks, even when the Deferred has already fired, as it has for
most messages once the DNS cache is warm and the body is small (dkim, dmarc, arc,
sender_permitted_from with a connection's cached result). The hook runner
(:mod:`qpsmtpd_tx.hooks`) passes every answer through :func:`now_if_ready`, which hands
such a result over directly, so no plugin has to. A plugin that can know a result at once
makes no Deferred at all: :func:`then` chains a step on a value or on a Deferred alike.
"""

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


def now_if_ready(answer):
    """The result of the Deferred ``answer`` if it has already succeeded; else ``answer``
    itself (pending or failed, for the hook machinery to wait for or log; or no Deferred)."""
    # (``isinstance(answer, Deferred)`` runs ABCMeta's __instancecheck__, Python code, for
    # anything else: Deferred is an Awaitable; nothing registers virtual subclasses of it)
    if Deferred not in type(answer).__mro__:
        return answer
    box = []

    def keep(result):
        box.append(result)
        return result

    answer.addBoth(keep)
    if box and not isinstance(box[0], Failure):
        return box[0]
    return answer


def then(value, step, *args):
    """``step(value, *args)`` now if ``value`` is not a Deferred; else a Deferred of it, run
    when ``value`` fires (as ``value.addCallback(step, *args)``)."""
    if Deferred in type(value).__mro__:    # (see now_if_ready)
        return value.addCallback(step, *args)
    return step(value, *args)
