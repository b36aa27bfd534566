"""rcpt_ok — accept recipients in local domains, and any recipient from a relay client.

Put it last among the ``rcpt`` plugins: it answers OK or DENY for every recipient.

Arguments: none.

Config files:
  ``me``              this host's name; always a local domain.
  ``rcpthosts``       one domain per line; ``.example.com`` also matches every subdomain
                      (re-read after SIGHUP).
  ``morercpthosts``   more domains (exact names), as a plain file or ``morercpthosts.cdb``.

Decision, in order:
  - the connection is a relay client (``relay`` plugin, AUTH) or whitelisted → OK
  - the local part holds ``%``, ``!`` or (quoted) ``@`` → ``550 Relaying denied (#5.7.1)``
  - ``<postmaster>`` without a domain → OK (as the local host)
  - the domain is ``me``, in ``rcpthosts`` or in ``morercpthosts`` → OK
  - ``morercpthosts.cdb`` is not a valid cdb file → DECLINED: no decision (``450 No plugin
    decided if relaying is allowed`` if no later plugin decides), logged at LOGERROR once
    until the file changes
  - otherwise → ``550 Relaying denied (#5.7.1)``

Other local parts without a domain, such as ``<abuse>``, never reach this plugin: the address
parser refuses them (``501 could not parse recipient``), as qpsmtpd 0.94's does; RFC 5321 only
requires ``<postmaster>`` to work without a domain.

Difference from qpsmtpd 0.94, on purpose: 0.94 accepts ``<victim%elsewhere.example@local>``,
``<elsewhere.example!victim@local>`` and ``<"victim@elsewhere.example"@local>`` for a local
domain. Postfix (``allow_percent_hack``, ``swap_bangpath`` and ``resolve_dequoted_address``,
all on by default) routes such addresses to elsewhere.example, which makes the server an
open relay once it hands them to ``queue/postfix-queue`` or ``queue/smtp-forward``. So a
client that is neither a relay client nor whitelisted gets ``Relaying denied`` for them
(whatever the domain), logged as
``fail: <address>: routing character '%' in the local part``. Relay clients may still use
them: they may relay anyway.

Replies: ``250 <address>, recipient ok`` (the core's text for OK), or
``550 Relaying denied (#5.7.1)`` (qpsmtpd's ``Qpsmtpd::DSN->relaying_denied``).

Notes: reads connection ``relay_client``, connection note ``whitelisthost``, transaction note
``whitelistsender``.
"""

from qpsmtpd_tx.codes import DECLINED, DENY, LOGINFO, OK
from qpsmtpd_tx.plugin import RELAYING_DENIED, Plugin

class RcptOk(Plugin):
    """Accept local recipients and everything from relay clients."""

    def init(self, args):
        super().init(args)
        self.local_domains()

    def local_domains(self, transaction=None):
        """``(exact names, .suffixes)`` from ``me`` and ``rcpthosts``; re-read after SIGHUP."""
        return self.parsed_config("rcpthosts", self._parse_rcpthosts, transaction)

    def _parse_rcpthosts(self, lines):
        domains = [self.server.me] + [line.text for line in lines]
        exact = {d.split()[0].lower() for d in domains if d.strip() and not d.startswith(".")}
        suffixes = tuple(d.split()[0].lower() for d in domains if d.startswith("."))
        return exact, suffixes

    def hook_rcpt(self, transaction, recipient, params):
        if self.is_immune(transaction):
            return OK
        refusal = self.refuse_routing_recipient(transaction, recipient)
        if refusal is not None:
            return refusal
        host = self.recipient_host(recipient)
        if host is None:
            return OK
        exact, suffixes = self.local_domains(transaction)
        if host in exact or (suffixes and host.endswith(suffixes)):
            self.log(LOGINFO, "pass: %s in rcpthosts" % host, transaction)
            return OK
        more = self.config_map("morercpthosts", transaction)
        if more is None:
            return DECLINED     # a broken morercpthosts.cdb (logged): no decision here
        if host in more:
            self.log(LOGINFO, "pass: %s found in morercpthosts" % host, transaction)
            return OK
        self.log(LOGINFO, "fail: %s not in rcpthosts" % host, transaction)
        return DENY, RELAYING_DENIED

    def recipient_host(self, recipient):
        """The recipient's domain (lower case); ``me`` for a bare ``postmaster``."""
        if recipient.host:
            return recipient.host.lower()
        if (recipient.user or "").lower() == "postmaster":
            return self.server.me.lower()
        return None
