"""The envelope commands of a session: HELO/EHLO, MAIL and RCPT (AUTH is in ``auth.py``).

Each runs its ``*_parse`` hook (or the built-in parser), then its hook, and answers as the reply
table (:mod:`qpsmtpd_tx.replies`) says; the core (:meth:`~qpsmtpd_tx.core.SMTPCore.refusal`)
says whether the command is allowed now. Checks come in qpsmtpd's order: a syntax error is
reported before a missing HELO or MAIL.
"""

from twisted.internet.defer import Deferred, maybeDeferred

from qpsmtpd_tx import codes, policy, replies
from qpsmtpd_tx.command import (CommandSyntaxError, parse_helo, parse_mail_from, parse_rcpt_to,
                                recipient_address, sender_address)
from qpsmtpd_tx.core import State
from qpsmtpd_tx.printable import is_printable

#: RFC 5321 4.5.3.1.8: too many recipients is a 452, so the client sends the rest later
TOO_MANY_RECIPIENTS = "4.5.3 Too many recipients"


class EnvelopeCommands:
    """The :class:`~qpsmtpd_tx.session.SMTPSession` part that builds the envelope."""

    # -- HELO / EHLO --------------------------------------------------------------------------

    def cmd_helo(self, rest):
        """HELO: as qpsmtpd's, a 250 without extensions."""
        return self._hello("helo", rest)

    def cmd_ehlo(self, rest):
        """EHLO: a 250 with the extensions (SIZE, AUTH, what plugins add)."""
        return self._hello("ehlo", rest)

    def _hello(self, verb, rest):
        return self._run(verb + "_parse", (rest,), self._hello_parsed, verb, rest)

    def _hello_parsed(self, parsed, verb, rest):
        if parsed.code == codes.OK and parsed.value is not None:
            host, extra = parsed.value
        elif not replies.answer(self, verb + "_parse", parsed):
            return None
        else:
            host, extra = parse_helo(rest)
        if not host:
            return self.respond(501, "%s requires domain/address - see RFC-2821 4.1.1.1" % verb)
        if not all(is_printable(word) for word in [host] + list(extra)):
            # No domain or address literal holds one; in Received it would start a new field.
            return self.respond(501, "5.5.4 Invalid characters in %s argument" % verb)
        refusal = self.core.refusal(verb)
        if refusal is not None:
            return self.respond(503, refusal)
        return self._run(verb, (host,) + tuple(extra), self._hello_respond, verb, host)

    def _hello_respond(self, result, verb, host):
        if not replies.answer(self, verb, result, verb=verb.upper()):
            return None
        conn = self.connection
        conn.hello = verb
        conn.hello_host = host
        # what ehlo hooks added (STARTTLS...) is in the transaction the reset replaces
        capabilities = list(self.transaction.notes.get("capabilities") or [])
        self._reset_transaction()
        first = "%s Hi %s [%s]" % (self.server.me, self._remote_info(), conn.remote_ip)
        if verb == "helo":
            self.core.helo()
            return self.respond(250, first + "; I am so happy to meet you.")
        lines = [first, "PIPELINING", "8BITMIME"]
        if self.server.databytes:
            lines.append("SIZE %d" % self.server.databytes)
        lines.extend(capabilities)
        mechanisms = self._auth_mechanisms()
        if mechanisms:
            lines.append("AUTH " + " ".join(mechanisms))
        self.core.helo(auth_offered=bool(mechanisms))
        self.respond(250, lines)

    def _remote_info(self):
        conn = self.connection
        return conn.remote_info or conn.remote_host or "Unknown"

    def _auth_mechanisms(self):
        auth = self.chain.auth
        if auth is None:
            return []
        mechanisms = auth.mechanisms()
        if not mechanisms:
            return []
        if self.chain.tls_before_auth and not self.connection.tls:
            return []
        return mechanisms

    # -- MAIL ---------------------------------------------------------------------------------

    def cmd_mail(self, rest):
        """MAIL FROM: a new transaction (a MAIL within one drops it, as qpsmtpd)."""
        refusal = self.core.refusal("mail")
        if self.core.state in (State.MAIL, State.RCPT):
            self.core.reset()
        self._reset_transaction()
        if refusal is not None:
            return self.respond(503, refusal)
        self.connection.notes["envelope_from"] = rest
        return self._parse_address("mail", rest, self._mail_parsed)

    def _parse_address(self, kind, rest, then):
        """Run ``<kind>_parse`` (or the built-in parser) and ``<kind>_pre``; call ``then``."""
        def parsed(result):
            if result.code == codes.OK and result.value is not None:
                path, params = result.value
            elif not replies.answer(self, kind + "_parse", result):
                return None
            else:
                try:
                    path, params = (parse_mail_from if kind == "mail" else parse_rcpt_to)(rest)
                except CommandSyntaxError as e:
                    return self.respond(501, str(e))
            return self._run(kind + "_pre", (path, params), lambda r: then(
                r.lines[0] if r.code == codes.OK and r.lines else path, params))

        return self._run(kind + "_parse", (rest,), parsed)

    def _mail_parsed(self, path, params):
        try:
            sender = sender_address(path)
        except CommandSyntaxError as e:
            return self.respond(501, str(e))
        size = params.get("size")
        if self.server.databytes and size and size.isdigit() and int(size) > self.server.databytes:
            return self.respond(552, "Message too big!")
        return self._run("mail", (sender, params), self._mail_respond, sender)

    def _mail_respond(self, result, sender):
        if result.code in codes.DENY_CODES:
            self._log_mail_denied(result, sender)
        if not replies.answer(self, "mail", result, sender=sender.format()):
            return None
        self.transaction.sender = sender
        self.core.mail()
        self.server.metrics.transaction()
        self.respond(250, "%s, sender OK - how exciting to get mail from you!" % sender.format())

    def _log_mail_denied(self, result, sender):
        """qpsmtpd's ``deny mail from <addr> (reason)`` (``denysoft`` for 4xx) at LOGINFO."""
        soft = result.code in (codes.DENYSOFT, codes.DENYSOFT_DISCONNECT)
        reason = " ".join(result.lines) if result.lines else "%s, %sdenied" % (
            sender.format(), "temporarily " if soft else "")
        self.log(codes.LOGINFO, "deny%s mail from %s (%s)"
                 % ("soft" if soft else "", sender.format(), reason))

    # -- RCPT ---------------------------------------------------------------------------------

    def cmd_rcpt(self, rest):
        """RCPT TO: one recipient (or the alias targets a plugin gave it)."""
        # As qpsmtpd: a syntax error is reported before a missing MAIL.
        self.connection.notes["envelope_rcpt"] = rest
        return self._parse_address("rcpt", rest, self._rcpt_parsed)

    def _rcpt_parsed(self, path, params):
        refusal = self.core.refusal("rcpt")
        if refusal is not None:
            return self.respond(503, refusal)
        try:
            rcpt = recipient_address(path)
        except CommandSyntaxError as e:
            return self.respond(501, str(e))
        if not self._room_for_recipients(1):
            return self.respond(452, TOO_MANY_RECIPIENTS)
        return self._run("rcpt", (rcpt, params), self._rcpt_respond, rcpt)

    def _room_for_recipients(self, count):
        """True if ``count`` more recipients stay within ``max_recipients`` (0: no limit)."""
        limit = self.server.max_recipients
        return not limit or len(self.transaction.recipients) + count <= limit

    def _rcpt_respond(self, result, rcpt):
        if not replies.answer(self, "rcpt", result):
            return None
        if self._needs_other_transaction(rcpt):
            return self.respond(452, policy.DIFFERENT_POLICY_TEXT)
        confirmers = self.chain.recipient_confirmers
        if confirmers:
            d = self._confirm(confirmers, policy.expand_alias(rcpt)[0])
            return d.addCallbacks(self._rcpt_confirmed, self._confirm_failed,
                                  callbackArgs=(rcpt,))
        return self._rcpt_confirmed(None, rcpt)

    def _confirm(self, confirmers, recipients):
        """Ask each plugin's ``confirm_recipient`` about each of ``recipients`` (the accepted
        recipient or its alias targets), in turn; a Deferred firing with the first refusal
        ``(code, text)``, or None when all are confirmed."""
        async def ask():
            for recipient in recipients:
                for plugin in confirmers:
                    refusal = await maybeDeferred(plugin.confirm_recipient, self.transaction,
                                                  recipient)
                    if refusal is not None:
                        return refusal
            return None
        return Deferred.fromCoroutine(ask())

    def _confirm_failed(self, failure):
        self.log(codes.LOGERROR, "confirming a recipient failed: %s" % failure.getErrorMessage())
        return self.respond(451, "4.3.0 Internal error, try again later")

    def _rcpt_confirmed(self, refusal, rcpt):
        if refusal is not None:
            code, text = refusal
            self.log(codes.LOGINFO, "%s not confirmed: %d %s" % (rcpt.format(), code, text))
            return self.respond(code, text)
        if not self._add_recipient(rcpt):
            return self.respond(452, TOO_MANY_RECIPIENTS)
        self.core.rcpt()
        return self.respond(250, "%s, recipient ok" % rcpt.format())

    def _add_recipient(self, rcpt):
        """Add an accepted recipient, or the alias targets a notes source gave it.

        Targets already in the transaction are not added twice (see policy.expand_alias).
        Returns False, adding nothing, when that would exceed ``max_recipients``.
        """
        recipients, invalid = policy.expand_alias(rcpt)
        for target in invalid:
            self.log(codes.LOGERROR, "%s: alias target %r is not an address, skipped"
                     % (rcpt.format(), target))
        if recipients[0] is rcpt:
            if not self._room_for_recipients(1):
                return False
            self.transaction.add_recipient(rcpt)
            return True
        new = [target for target in recipients if target not in self.transaction.recipients]
        if not self._room_for_recipients(len(new)):
            self.log(codes.LOGINFO, "%s: its %d alias targets would exceed max_recipients"
                     % (rcpt.format(), len(new)))
            return False
        self.log(codes.LOGINFO, "%s is an alias of %s"
                 % (rcpt.format(), ", ".join(r.format() for r in recipients)))
        for target in new:
            self.transaction.add_recipient(target)
        return True

    def _needs_other_transaction(self, rcpt):
        """True if ``rcpt``'s filter settings differ from this transaction's (grouping mode)."""
        policy_plugins = self.chain.policy_plugins
        if self.server.recipient_policy != policy.GROUP or not policy_plugins:
            return False
        recipients = self.transaction.recipients
        if not recipients:
            return False
        difference = policy.first_difference(policy.policy_key(policy_plugins, rcpt),
                                             policy.policy_key(policy_plugins, recipients[0]))
        if difference is None:
            return False
        plugin, note, value, other = difference
        self.log(codes.LOGINFO, "%s has other filter settings than %s (%s %s: %r, not %r): "
                 "deferred to another transaction"
                 % (rcpt.format(), recipients[0].format(), plugin, note, value, other))
        return True
