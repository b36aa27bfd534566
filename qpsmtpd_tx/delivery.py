"""The message phase of a session: DATA, the headers, then Received → data_post → queue.

After ``354`` the core frames the message; at its end the session adds the
Authentication-Results and Received fields, runs ``data_post``, settles the per-recipient
outcomes (:mod:`qpsmtpd_tx.outcomes`, :mod:`qpsmtpd_tx.refused`), runs ``queue_pre`` and
``queue`` (once per copy of the message when recipients' headers differ) and answers as the
reply table (:mod:`qpsmtpd_tx.replies`) says. One LOGNOTICE line per message records the
outcome.
"""

import time

from qpsmtpd_tx import authresults, codes, outcomes, refused, replies
from qpsmtpd_tx.core import State
from qpsmtpd_tx.message import Header
from qpsmtpd_tx.received import received_header


class MessageDelivery:
    """The :class:`~qpsmtpd_tx.session.SMTPSession` part that takes and delivers the message."""

    def cmd_data(self, rest):
        """DATA: the ``data`` hooks, then 354 if the core allows it now."""
        return self._run("data", (), self._data_respond)

    def _data_respond(self, result):
        if not replies.answer(self, "data", result):
            return None
        txn = self.transaction
        refusal = self.core.refusal("data", has_sender=txn.sender is not None,
                                    has_recipients=bool(txn.recipients))
        if refusal is not None:
            return self.respond(503, refusal)
        self.core.start_data(max_size=self.server.databytes)
        self.respond(354, "go ahead")

    def _data_headers(self, event):
        header = self.transaction.header = Header.parse(event.block)
        self.transaction.received_fields = tuple(header.fields)
        if not self.hooks.registered["data_headers_end"]:
            return None
        return self._run("data_headers_end", (), self._data_headers_respond)

    def _data_headers_respond(self, result):
        replies.answer(self, "data_headers_end", result)

    def _data_end(self, event):
        txn = self.transaction
        txn.data_size = event.size
        txn.body.finish()
        if event.too_big:
            self.log(codes.LOGALERT, "Message too big: size %d > databytes %d"
                     % (event.size, self.server.databytes))
            self.respond(552, "Message too big!")
            self.server.metrics.replied("databytes", 552, None, ends_message=True)
            return self._finish_message()
        return self._add_core_headers()

    def _add_core_headers(self):
        txn = self.transaction
        if txn.header is None:
            txn.header = Header()
        if authresults.add(txn.header, self.server.me, self.connection, txn):
            self.log(codes.LOGINFO, "removed an incoming Authentication-Results field "
                     "claiming to be ours (%s)" % self.server.me)
        if not self.hooks.registered["received_line"]:
            return self._add_received(None)
        return self._run("received_line", (self._proto(), self._auth_comment(), self._tls_comment()),
                         self._add_received)

    def _add_received(self, result):
        txn = self.transaction
        if result is not None and result.code == codes.OK and result.lines:
            value = "\n".join(result.lines)
        else:
            value = received_header(self.server.me, self.connection, self._proto(), time.time())
        txn.header.add("Received", value, prepend=True)
        return self._run("data_post", (), self._data_post_respond)

    def _proto(self):
        conn = self.connection
        if conn.hello != "ehlo":
            return "SMTP"       # RFC 3848 defines the S and A suffixes for ESMTP only
        return "ESMTP" + ("S" if conn.tls else "") + ("A" if conn.auth_user else "")

    def _auth_comment(self):
        conn = self.connection
        if not conn.auth_user:
            return ""
        return "(smtp-auth username %s, mechanism %s)" % (conn.auth_user, conn.auth_mechanism)

    def _tls_comment(self):
        return self.connection.notes.get("tls_cipher_comment", "")

    def _data_post_respond(self, result):
        code = result.code
        if code in codes.DENY_CODES:
            # logged before the reply, as the code the table answers with
            self._log_outcome(552 if code in (codes.DENY, codes.DENY_DISCONNECT) else 452,
                              result.lines or ["denied by %s" % result.plugin.name])
        if not replies.answer(self, "data_post", result):
            return None
        return self._settle_recipients()

    def _settle_recipients(self):
        """Apply the recipients' own outcomes (recipient_policy split), then queue."""
        txn = self.transaction
        found = txn.notes.get(outcomes.NOTE)
        if found is None or not found.refused:
            return self._run("queue_pre", (), self._queue_pre_respond)
        verdict = outcomes.data_reply(txn.recipients, found.refused)
        if verdict.code is not None:
            self._log_outcome(verdict.code, [verdict.text])
            self.respond(verdict.code, verdict.text)
            self.server.metrics.replied("recipients", verdict.code, None, ends_message=True)
            return self._finish_message()
        pending = refused.dispose(self, verdict.refused)
        if pending is None:
            return self._run("queue_pre", (), self._queue_pre_respond)
        return pending.addCallbacks(lambda _: self._run("queue_pre", (), self._queue_pre_respond),
                                    self._quarantine_failed)

    def _quarantine_failed(self, failure):
        self.log(codes.LOGERROR, "cannot quarantine: %s" % failure.getErrorMessage())
        self._log_outcome(451, [refused.QUARANTINE_FAILED_TEXT])
        self.respond(451, refused.QUARANTINE_FAILED_TEXT)
        self.server.metrics.replied("quarantine", 451, None, ends_message=True)
        self._finish_message()

    def _queue_pre_respond(self, result):
        if result.code not in (0, codes.OK, codes.DECLINED, codes.DONE):
            self.log(codes.LOGERROR, "queue_pre plugin returned %s" % codes.code_name(result.code))
        if not replies.answer(self, "queue_pre", result):
            return None
        copies = outcomes.copies(self.transaction)
        if len(copies) == 1:
            # one copy, perhaps with changes made for its recipients while others were refused
            self.transaction.header = copies[0][1]
            return self._run("queue", (), self._queue_respond)
        txn = self.transaction
        return self._queue_copy(copies, 0, None, (list(txn.recipients), txn.header))

    def _queue_copy(self, copies, index, first, whole):
        """Queue copy ``index``: its recipients and header are put on the transaction (``whole``
        has the message's own, put back at the end) and the queue hooks run."""
        txn = self.transaction
        txn.recipients, txn.header = list(copies[index][0]), copies[index][1]
        return self._run("queue", (), self._copy_queued, copies, index, first, whole)

    def _copy_queued(self, result, copies, index, first, whole):
        """The first copy's reply answers the message, unless a copy fails: its reply does."""
        txn = self.transaction
        self.log(codes.LOGINFO, "copy %d of %d (%s): %s %s" % (
            index + 1, len(copies), ", ".join(r.format() for r in txn.recipients),
            codes.code_name(result.code), result.text))
        first = first or result
        if result.code == codes.OK and index + 1 < len(copies):
            return self._queue_copy(copies, index + 1, first, whole)
        txn.recipients, txn.header = whole
        if result.code != codes.OK and index:
            self.log(codes.LOGERROR, "copies 1-%d were queued before copy %d failed: a retry "
                     "by the client delivers them again" % (index, index + 1))
        replies.answer(self, "queue", result if result.code != codes.OK else first)

    def _queue_respond(self, result):
        replies.answer(self, "queue", result)

    def _queue_post(self, finished):
        """Run the ``queue_post`` hooks for the transaction whose message was just answered."""
        if self.hooks.registered["queue_post"]:
            self.hooks.run_no_respond("queue_post", finished)

    def _log_outcome(self, code, lines):
        """One LOGNOTICE line per message: who, to whom, how big, and the answer."""
        if not self.server.log_enabled(codes.LOGNOTICE):
            return
        txn = self.transaction
        self.log(codes.LOGNOTICE, "message %s from %s to %s, %d bytes: %d %s" % (
            txn.id, txn.sender.format() if txn.sender else "<>",
            ",".join(r.format() for r in txn.recipients), txn.data_size, code, " ".join(lines)))

    def _finish_message(self):
        """The message is answered: back to command mode with a new transaction."""
        if self.core.state is State.DATA:
            self.core.data_end()
        self.connection.transaction_count += 1
        self._reset_transaction()
