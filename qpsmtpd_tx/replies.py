"""qpsmtpd's reply semantics as one table: hook × return code → reply, default text, follow-up.

Read it beside qpsmtpd 0.94's ``Qpsmtpd/SMTP.pm``: each row is one ``elsif ($rc == ...)`` branch
of a ``*_respond`` sub. A hook's result is answered with the row for its code, else its ``ANY``
row; with no row, the command's own success path runs (the caller's code: HELO's 250 and
capabilities, MAIL's sender check, the next hook...). A hook whose plugin did not answer in
time uses its ``TIMEOUT`` row, else :data:`TIMED_OUT` (451 with the timeout text).

The default text is sent when the plugin gave none; an :class:`Only` text is sent whatever the
plugin said. ``{name}`` fields in texts are filled from :func:`answer`'s keywords (``me`` is
always there). The follow-up steps (words) run in order after the reply:

``reset``       the transaction is dropped (a refused DATA; VRFY's DENY does it too in qpsmtpd)
``disconnect``  the connection is closed once the reply is written
``finish``      the message is answered: back to command mode with a new transaction
``outcome``     the one LOGNOTICE line per message (who, to whom, size, the reply)
``queue_post``  the ``queue_post`` hooks run for the finished transaction
"""

import attr

from qpsmtpd_tx import SOFTWARE_NAME
from qpsmtpd_tx.codes import (CODE_NAMES, DECLINED, DENY, DENY_DISCONNECT, DENYSOFT,
                              DENYSOFT_DISCONNECT, DONE, OK)

#: row keys besides return codes: any code without its own row; a plugin that timed out
ANY, TIMEOUT = "any", "timeout"
RESET, DISCONNECT, FINISH, OUTCOME, QUEUE_POST = STEPS = (
    "reset", "disconnect", "finish", "outcome", "queue_post")
#: in place of a row: this result takes the success path (needed beside an ANY row)
SUCCESS = "success"


class Only(str):
    """A reply text sent as it is, even when the plugin returned a message."""


@attr.s(frozen=True, slots=True)
class Reply:
    """One row's answer: ``code`` (None: no reply), default ``text``, follow-up steps."""

    code = attr.ib()
    text = attr.ib()
    then = attr.ib()


DENIED = (DENY, DENY_DISCONNECT)
SOFT = (DENYSOFT, DENYSOFT_DISCONNECT)
HELP_TEXT = ("This is %s\nA drop-in replacement for qpsmtpd, on Twisted\n"
             "To report problems, mail the postmaster of this host." % SOFTWARE_NAME)
BYE = Only("{me} closing connection. Have a wonderful day.")
MESSAGE_DONE = "outcome finish"
QUEUED = "outcome finish queue_post"

# hook: {result(s): (reply code or None, "follow-up steps", default text)}, in SMTP.pm's order
_TABLE = {
    "unrecognized_command": {
        DENY: (500, "", "Unrecognized command"),
        DENY_DISCONNECT: (521, "disconnect", "Unrecognized command"),
        DONE: (None, "", ""),
        ANY: (500, "", Only("Unrecognized command")),
    },
    "pre-connection": {
        DENIED: (550, "disconnect", "Sorry, service not available for you"),
        SOFT: (451, "disconnect", "Sorry, try again later"),
        TIMEOUT: (451, "disconnect", ""),
    },
    "connect": {
        DENIED: (550, "disconnect", "Connection from you denied, bye bye."),
        SOFT: (450, "disconnect", "Connection from you temporarily denied, bye bye."),
        TIMEOUT: (451, "disconnect", ""),
    },
    "helo_parse": {DENY: (501, "", "Syntax error in command")},
    "helo": {
        DENY: (550, "", "{verb} denied"),
        DENY_DISCONNECT: (550, "disconnect", "{verb} denied"),
        DENYSOFT: (450, "", "{verb} temporarily denied"),
        DENYSOFT_DISCONNECT: (450, "disconnect", "{verb} temporarily denied"),
        DONE: (None, "", ""),
    },
    "mail_parse": {DENY: (501, "", "Syntax error in command")},
    "mail": {
        DENY: (550, "", "{sender}, denied"),
        DENY_DISCONNECT: (550, "disconnect", "{sender}, denied"),
        DENYSOFT: (450, "", "{sender}, temporarily denied"),
        DENYSOFT_DISCONNECT: (421, "disconnect", "{sender}, temporarily denied"),
        DONE: (None, "", ""),
    },
    "rcpt_parse": {DENY: (501, "", "Syntax error in command")},
    "rcpt": {
        DENY: (550, "", "relaying denied"),
        DENY_DISCONNECT: (550, "disconnect", "delivery denied"),
        DENYSOFT: (450, "", "relaying denied"),
        DENYSOFT_DISCONNECT: (421, "disconnect", "relaying denied"),
        DONE: (None, "", ""),
        OK: SUCCESS,
        ANY: (450, "", Only("No plugin decided if relaying is allowed")),
    },
    "help": {
        DENIED: (500, "", "Syntax error, command not recognized"),
        DONE: (None, "", ""),
        OK: (214, "", HELP_TEXT),
        ANY: (214, "", Only(HELP_TEXT)),
    },
    "noop": {
        DENY: (500, "", "Stop wasting my time."),
        DENY_DISCONNECT: (500, "disconnect", "Stop wasting my time."),
        DONE: (None, "", ""),
        ANY: (250, "", Only("OK")),
    },
    "vrfy": {
        DONE: (None, "", ""),
        DENY: (554, "reset", "Access Denied"),
        OK: (250, "", "User OK"),
        ANY: (252, "", Only("Just try sending a mail and we'll see how it turns out ...")),
    },
    "quit": {
        DONE: (None, "disconnect", ""),
        ANY: (221, "disconnect", BYE),
        TIMEOUT: (221, "disconnect", BYE),
    },
    "data": {
        DONE: (None, "", ""),
        DENY: (554, "reset", "Message denied"),
        DENYSOFT: (451, "reset", "Message denied temporarily"),
        DENY_DISCONNECT: (554, "disconnect", "Message denied"),
        DENYSOFT_DISCONNECT: (421, "disconnect", "Message denied temporarily"),
    },
    "data_headers_end": {
        DENY_DISCONNECT: (554, "disconnect", "Message denied"),
        DENYSOFT_DISCONNECT: (421, "disconnect", "Message denied temporarily"),
        TIMEOUT: (451, "disconnect", ""),
    },
    "received_line": {TIMEOUT: (451, MESSAGE_DONE, "")},
    "data_post": {
        DENY: (552, "finish", "Message denied"),
        DENY_DISCONNECT: (552, "finish disconnect", "Message denied"),
        DENYSOFT: (452, "finish", "Message denied temporarily"),
        DENYSOFT_DISCONNECT: (452, "finish disconnect", "Message denied temporarily"),
        DONE: (None, "finish", ""),
        TIMEOUT: (451, MESSAGE_DONE, ""),
    },
    "queue_pre": {
        (0, OK, DECLINED): SUCCESS,
        DONE: (None, "finish", ""),
        ANY: (451, "finish", Only("Internal error - try again later - queue_pre failed")),
        TIMEOUT: (451, MESSAGE_DONE, ""),
    },
    "queue": {
        OK: (250, QUEUED, "Queued"),
        DENY: (552, QUEUED, "Message denied"),
        DENYSOFT: (452, QUEUED, "Message denied temporarily"),
        DONE: (None, "finish queue_post", ""),
        ANY: (451, QUEUED, "Queuing declined or disabled; try again later"),
        TIMEOUT: (451, MESSAGE_DONE, ""),
    },
}
_TABLE["ehlo_parse"], _TABLE["ehlo"] = _TABLE["helo_parse"], _TABLE["helo"]
#: what a hook without a ``TIMEOUT`` row answers when its plugin did not answer in time
TIMED_OUT = Reply(451, "", ())


def _expand(table):
    """One :class:`Reply` (or None: success) per hook and single result."""
    replies = {}
    for hook, rows in table.items():
        replies[hook] = {}
        for results, row in rows.items():
            if row != SUCCESS and not set(row[1].split()) <= set(STEPS):
                raise ValueError("%s: unknown follow-up in %r" % (hook, row[1]))
            for result in results if isinstance(results, tuple) else (results,):
                replies[hook][result] = (
                    None if row == SUCCESS else Reply(row[0], row[2], tuple(row[1].split())))
    return replies


#: hook → {return code, ANY or TIMEOUT → Reply, or None: the success path}
REPLIES = _expand(_TABLE)
#: every code a HookResult can hold (0: no plugin registered the hook)
_EVERY_CODE = frozenset((0,) + tuple(CODE_NAMES))
#: hook → the codes it answers with its success path: :func:`answer` tells the usual answer
#: by one look here, without the table lookup (a call) of :func:`reply_for`
_SUCCEEDS = {hook: frozenset(code for code in _EVERY_CODE if rows.get(code, rows.get(ANY)) is None)
             for hook, rows in REPLIES.items()}


def reply_for(hook, result):
    """The table's :class:`Reply` for a hook's :class:`~qpsmtpd_tx.hooks.HookResult`, or None
    when the command's success path should run."""
    rows = REPLIES.get(hook, {})
    if result.timed_out:
        return rows.get(TIMEOUT, TIMED_OUT)
    if result.code in rows:
        return rows[result.code]
    return rows.get(ANY)


def answer(session, hook, result, **fields):
    """Answer ``result`` of ``hook`` as the table says; True if the success path should run.

    Sends the reply (the plugin's text, or the default with ``fields`` filled in) and runs the
    follow-up steps on ``session``.
    """
    if result.code in _SUCCEEDS.get(hook, _EVERY_CODE) and not result.timed_out:
        return True
    reply = reply_for(hook, result)
    if reply is None:
        return True
    lines = None
    if reply.code is not None:
        text = reply.text.format(me=session.server.me, **fields)
        lines = result.lines if result.lines and not isinstance(reply.text, Only) else [text]
        session.respond(reply.code, lines)
    session.server.metrics.replied(hook, reply.code, result.plugin, FINISH in reply.then)
    finished = session.transaction
    for step in reply.then:
        if step == OUTCOME:
            if lines is not None:
                session._log_outcome(reply.code, lines)
        elif step == RESET:
            session._reset_after_refusal()
        elif step == DISCONNECT:
            session.disconnect()
        elif step == FINISH:
            session._finish_message()
        elif step == QUEUE_POST:
            session._queue_post(finished)
    return False
