"""qpsmtpd's reply semantics as one table: hook × return code → reply, default text, follow-up.

Read it beside qpsmtpd 0.94's ``Qpsmtpd/SMTP.pm``: each row is one ``elsif ($rc == ...)`` branch
of a ``*_respond`` sub. A hook's result is answered with the row for its code, else its ``ANY``
row; with no row, the command's own success path runs (the caller's code: HELO's 250 and
capabilities, MAIL's sender check, the next hook...). A hook whose plugin did not answer in
time uses its ``TIMEOUT`` row, else :data:`TIMED_OUT` (451 with the timeout text).

The default text is sent when the plugin gave none; an :class:`Only` text is sent whatever the
plugin said. ``{name}`` fields in texts are filled from :func:`answer`'s keywords (``me`` is
always there). The follow-up steps run in order after the reply:

``RESET``       the transaction is dropped (a refused DATA; VRFY's DENY does it too in qpsmtpd)
``DISCONNECT``  the connection is closed once the reply is written
``FINISH``      the message is answered: back to command mode with a new transaction
``OUTCOME``     the one LOGNOTICE line per message (who, to whom, size, the reply)
``QUEUE_POST``  the ``queue_post`` hooks run for the finished transaction
"""

import attr

from qpsmtpd_tx import SOFTWARE_NAME
from qpsmtpd_tx.codes import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, DONE, OK

#: row keys besides return codes: any code without its own row; a plugin that timed out
ANY, TIMEOUT = "any", "timeout"
RESET, DISCONNECT, FINISH, OUTCOME, QUEUE_POST = (
    "reset", "disconnect", "finish", "outcome", "queue_post")
#: in the follow-up column: this result takes the success path (needed beside an ANY row)
SUCCESS = "success"
#: HELO's rows are EHLO's too
_ALSO = {"helo": ("helo", "ehlo"), "helo_parse": ("helo_parse", "ehlo_parse")}


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
MESSAGE_DONE = (OUTCOME, FINISH)

# hook                results           reply  default text                               follow-up
_ROWS = (
    ("pre-connection", DENIED,           550, "Sorry, service not available for you", (DISCONNECT,)),
    ("pre-connection", SOFT,             451, "Sorry, try again later", (DISCONNECT,)),
    ("pre-connection", TIMEOUT,          451, "", (DISCONNECT,)),
    ("connect", DENIED,                  550, "Connection from you denied, bye bye.", (DISCONNECT,)),
    ("connect", SOFT,                    450, "Connection from you temporarily denied, bye bye.",
     (DISCONNECT,)),
    ("connect", TIMEOUT,                 451, "", (DISCONNECT,)),
    ("helo_parse", DENY,                 501, "Syntax error in command", ()),
    ("helo", DENY,                       550, "{verb} denied", ()),
    ("helo", DENY_DISCONNECT,            550, "{verb} denied", (DISCONNECT,)),
    ("helo", DENYSOFT,                   450, "{verb} temporarily denied", ()),
    ("helo", DENYSOFT_DISCONNECT,        450, "{verb} temporarily denied", (DISCONNECT,)),
    ("helo", DONE,                       None, "", ()),
    ("mail_parse", DENY,                 501, "Syntax error in command", ()),
    ("mail", DENY,                       550, "{sender}, denied", ()),
    ("mail", DENY_DISCONNECT,            550, "{sender}, denied", (DISCONNECT,)),
    ("mail", DENYSOFT,                   450, "{sender}, temporarily denied", ()),
    ("mail", DENYSOFT_DISCONNECT,        421, "{sender}, temporarily denied", (DISCONNECT,)),
    ("mail", DONE,                       None, "", ()),
    ("rcpt_parse", DENY,                 501, "Syntax error in command", ()),
    ("rcpt", DENY,                       550, "relaying denied", ()),
    ("rcpt", DENY_DISCONNECT,            550, "delivery denied", (DISCONNECT,)),
    ("rcpt", DENYSOFT,                   450, "relaying denied", ()),
    ("rcpt", DENYSOFT_DISCONNECT,        421, "relaying denied", (DISCONNECT,)),
    ("rcpt", DONE,                       None, "", ()),
    ("rcpt", OK,                         None, "", SUCCESS),
    ("rcpt", ANY,                        450, Only("No plugin decided if relaying is allowed"), ()),
    ("help", DENIED,                     500, "Syntax error, command not recognized", ()),
    ("help", DONE,                       None, "", ()),
    ("help", OK,                         214, HELP_TEXT, ()),
    ("help", ANY,                        214, Only(HELP_TEXT), ()),
    ("noop", DENY,                       500, "Stop wasting my time.", ()),
    ("noop", DENY_DISCONNECT,            500, "Stop wasting my time.", (DISCONNECT,)),
    ("noop", DONE,                       None, "", ()),
    ("noop", ANY,                        250, Only("OK"), ()),
    ("vrfy", DONE,                       None, "", ()),
    ("vrfy", DENY,                       554, "Access Denied", (RESET,)),
    ("vrfy", OK,                         250, "User OK", ()),
    ("vrfy", ANY,                        252, Only("Just try sending a mail and we'll see how it "
                                                   "turns out ..."), ()),
    ("quit", DONE,                       None, "", (DISCONNECT,)),
    ("quit", ANY,                        221, Only("{me} closing connection. Have a wonderful day."),
     (DISCONNECT,)),
    ("quit", TIMEOUT,                    221, Only("{me} closing connection. Have a wonderful day."),
     (DISCONNECT,)),
    ("data", DONE,                       None, "", ()),
    ("data", DENY,                       554, "Message denied", (RESET,)),
    ("data", DENYSOFT,                   451, "Message denied temporarily", (RESET,)),
    ("data", DENY_DISCONNECT,            554, "Message denied", (DISCONNECT,)),
    ("data", DENYSOFT_DISCONNECT,        421, "Message denied temporarily", (DISCONNECT,)),
    ("data_headers_end", DENY_DISCONNECT, 554, "Message denied", (DISCONNECT,)),
    ("data_headers_end", DENYSOFT_DISCONNECT, 421, "Message denied temporarily", (DISCONNECT,)),
    ("data_headers_end", TIMEOUT,        451, "", (DISCONNECT,)),
    ("received_line", TIMEOUT,           451, "", MESSAGE_DONE),
    ("data_post", DENY,                  552, "Message denied", (FINISH,)),
    ("data_post", DENY_DISCONNECT,       552, "Message denied", (FINISH, DISCONNECT)),
    ("data_post", DENYSOFT,              452, "Message denied temporarily", (FINISH,)),
    ("data_post", DENYSOFT_DISCONNECT,   452, "Message denied temporarily", (FINISH, DISCONNECT)),
    ("data_post", DONE,                  None, "", (FINISH,)),
    ("data_post", TIMEOUT,               451, "", MESSAGE_DONE),
    ("queue_pre", (0, OK, DECLINED),     None, "", SUCCESS),
    ("queue_pre", DONE,                  None, "", (FINISH,)),
    ("queue_pre", ANY,                   451, Only("Internal error - try again later - queue_pre "
                                                   "failed"), (FINISH,)),
    ("queue_pre", TIMEOUT,               451, "", MESSAGE_DONE),
    ("queue", OK,                        250, "Queued", MESSAGE_DONE + (QUEUE_POST,)),
    ("queue", DENY,                      552, "Message denied", MESSAGE_DONE + (QUEUE_POST,)),
    ("queue", DENYSOFT,                  452, "Message denied temporarily",
     MESSAGE_DONE + (QUEUE_POST,)),
    ("queue", DONE,                      None, "", (FINISH, QUEUE_POST)),
    ("queue", ANY,                       451, "Queuing declined or disabled; try again later",
     MESSAGE_DONE + (QUEUE_POST,)),
    ("queue", TIMEOUT,                   451, "", MESSAGE_DONE),
    ("unrecognized_command", DENY,       500, "Unrecognized command", ()),
    ("unrecognized_command", DENY_DISCONNECT, 521, "Unrecognized command", (DISCONNECT,)),
    ("unrecognized_command", DONE,       None, "", ()),
    ("unrecognized_command", ANY,        500, Only("Unrecognized command"), ()),
)
#: what a hook without a ``TIMEOUT`` row answers when its plugin did not answer in time
TIMED_OUT = Reply(451, "", ())


def _table(rows):
    table = {}
    for hook, results, code, text, then in rows:
        for result in results if isinstance(results, tuple) else (results,):
            for name in _ALSO.get(hook, (hook,)):
                table.setdefault(name, {})[result] = (
                    None if then == SUCCESS else Reply(code, text, then))
    return table


#: hook → {return code, ANY or TIMEOUT → Reply, or None: the success path}
REPLIES = _table(_ROWS)


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
    reply = reply_for(hook, result)
    if reply is None:
        return True
    lines = None
    if reply.code is not None:
        text = reply.text.format(me=session.server.me, **fields)
        lines = result.lines if result.lines and not isinstance(reply.text, Only) else [text]
        session.respond(reply.code, lines)
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
