"""qmail_deliverable — refuse recipients that qmail-deliverabled says have no mailbox.

At RCPT, the recipient is asked of qmail-deliverabled (Qmail::Deliverable's daemon, which
reads qmail's and vpopmail's configuration) over its HTTP interface, without blocking the
server: ``GET http://HOST:PORT/qd1/deliverable?<address, URI-escaped>``; the answer's body
is a number (``204 No Content``: no answer). As in qpsmtpd 0.94:

- ``0`` (no such mailbox): karma -1 and ``550 Sorry, no mailbox by that name. qd (#5.1.1)``
  (``reject``/``reject_type`` as below);
- ``0x14`` (an ezmlm list) with the null sender ``<>``: karma -1 and
  ``550 mailing lists do not accept null senders``;
- any other number (``0xf1`` normal delivery, ``0xf2``–``0xf6`` vpopmail, ``0x11``,
  ``0x21``, ``0x22`` temporary problems, ``0xff`` not local…): logged, and the decision is
  left to the next plugin (``rcpt_ok``);
- qmail-deliverabled unreachable, an HTTP error, no answer within ``timeout``, an answer
  longer than 64 KiB, or no server for the domain: logged as ``error, …`` and the recipient
  is not refused (0.94: "If no connection can be made, deliverability is simply assumed").
Relay clients and whitelisted senders are not checked. An address qmail-deliverabled's
client would not send (not ``atext`` words joined by ``.`` and one ``@``) is logged as
``error (unknown) checking`` and not refused. Addresses are sent in lower case.

List it before ``rcpt_ok``.

Arguments (``key value`` pairs, all optional):
  ``server HOST:PORT``   the daemon (default ``127.0.0.1:8998``).
  ``server smtproutes:HOST:PORT``  for a recipient domain listed in the config file
                         ``smtproutes`` (qmail's ``domain:relay[:port]`` lines, looked up as
                         qmail does: the domain, then ``.parent`` suffixes, then the ``:``
                         default line), ask qmail-deliverabled on that route's host, at PORT;
                         other domains (and a route with an empty host) go to HOST.
  ``server smtproutes:PORT``  the same, but domains without a route are not checked.
  ``vpopmail_ext 0|1``   accepted for 0.94's lines; it changes nothing here (nor did it in
                         0.94 with the daemon: qmail-deliverabled decides).
  ``reject 0|1|naughty`` ``0`` logs only, ``naughty`` leaves the refusal to the ``naughty``
                         plugin; default 1. ``reject_type perm|temp|disconnect|…`` (default
                         ``perm``).
  ``timeout SECONDS``    (qpsmtpd-tx addition) how long to wait for the daemon (default 30).

Config files: ``smtproutes`` (with ``server smtproutes:…``; the config directory, else
``$QMAIL/control``), read at start-up and after a change.

Notes: connection note ``karma`` (lowered by 1 for a refused recipient).

Intended differences from qpsmtpd 0.94: ``reject 0`` is honoured (0.94 ignored it);
``smtproutes:PORT`` skips unrouted domains as 0.94's documentation says (0.94 asked the
host ``""``); bad arguments stop start-up (0.94 logged "Odd number of arguments").
"""

import re
from urllib.parse import quote

import treq
from twisted.internet import reactor
from twisted.web.client import HTTPConnectionPool

from qpsmtpd_tx.codes import DECLINED, DENY, LOGDEBUG, LOGINFO, LOGWARN
from qpsmtpd_tx.http_answer import bounded_agent, too_long
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import boolean, positive, reject_settings

DEFAULT_SERVER = "127.0.0.1:8998"
DEFAULT_TIMEOUT = 30
#: the most bytes of one answer we read (HTTP header and body; the answer is a number)
MAX_ANSWER = 65536
NO_MAILBOX = "Sorry, no mailbox by that name. qd (#5.1.1)"
NULL_TO_LIST = "mailing lists do not accept null senders"
#: the client's "communication error" value (Qmail::Deliverable::Client)
COMMUNICATION_ERROR = 0x2f
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
#: the addresses qmail-deliverabled's client sends (RFC 2822 atext words, one @)
VALID_ADDRESS = re.compile(r"(?!.*@.*@)(%s+(?:[@.]%s+)*)\.?\Z" % (_ATEXT, _ATEXT))

#: 0.94's log text for each known answer (``pass``: not refused)
MEANINGS = {
    0x11: "error, permission failure",
    0x12: "pass, qmail-command in dot-qmail",
    0x13: "pass, bouncesaying with program",
    0x14: "pass, ezmlm list",
    0x21: "Temporarily undeliverable: group/world writable",
    0x22: "Temporarily undeliverable: sticky home directory",
    0xf1: "pass, normal delivery",
    0xf2: "pass, vpopmail dir",
    0xf3: "pass, vpopmail alias",
    0xf4: "pass, vpopmail catchall",
    0xf5: "pass, vpopmail vuser",
    0xf6: "pass, vpopmail qmail-ext",
    0xfe: "error, SHOULD NOT HAPPEN",
    0xff: "fail, address not local",
}


class QueryFailed(Exception):
    """qmail-deliverabled gave no usable answer (its text is the log's ``error, …``)."""


def parse_smtproutes(lines):
    """{domain: relay host} from qmail's ``smtproutes`` lines (``domain:relay[:port]``, the
    relay maybe in brackets; an empty domain is the default route)."""
    routes = {}
    for line in lines:
        domain, _, rest = getattr(line, "text", line).partition(":")
        if not _:
            continue
        routes[domain.strip().lower()] = re.match(r"\s*\[?([^\]:\s]*)", rest).group(1)
    return routes


def smtproute(routes, domain):
    """The relay host of ``domain`` in ``routes`` as qmail looks it up, or None (none, or an
    empty one)."""
    domain = domain.lower()
    if domain in routes:
        return routes[domain] or None
    parts = domain.split(".")
    for i in range(len(parts)):
        wildcard = "." + ".".join(parts[i:])
        if wildcard in routes:
            return routes[wildcard] or None
    return routes.get("") or None


def parse_answer(code, body):
    """The number in qmail-deliverabled's answer (None for ``204``); QueryFailed otherwise."""
    if code == 204:
        return None
    if code != 200:
        raise QueryFailed("server unreachable or broken! (HTTP %d)" % (code,))
    text = body.decode("ascii", "replace").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise QueryFailed("answer is not a number: %r" % (text[:40],))


class QmailDeliverable(Plugin):
    """Asks qmail-deliverabled about each recipient at RCPT."""

    def init(self, args):
        options = self.parse_kv_args(args, ("server", "vpopmail_ext", "reject", "reject_type",
                                            "timeout"))
        self.reject, self.reject_type = reject_settings(options)
        if "vpopmail_ext" in options:
            boolean("vpopmail_ext", options["vpopmail_ext"])
        self.timeout = positive("timeout", options.get("timeout", str(DEFAULT_TIMEOUT)))
        server = options.get("server", DEFAULT_SERVER)
        self.use_routes = server.startswith("smtproutes:")
        if self.use_routes:
            rest = server[len("smtproutes:"):]
            fallback, _, port = rest.rpartition(":")
            self.fallback = fallback or None
            self.port = self._port(port, server)
            self.parsed_config("smtproutes", parse_smtproutes)
        else:
            host, _, port = server.rpartition(":")
            if not host:
                raise PluginError("server must be HOST:PORT or smtproutes:[HOST:]PORT, got %r"
                                  % (server,))
            self.server_address = "%s:%d" % (host, self._port(port, server))
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        self._agent = bounded_agent(reactor, self._pool, MAX_ANSWER)

    @staticmethod
    def _port(text, server):
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise PluginError("server must be HOST:PORT or smtproutes:[HOST:]PORT, got %r"
                              % (server,))
        return int(text)

    def server_for(self, domain):
        """``host:port`` of the qmail-deliverabled to ask about ``domain``, or None."""
        if not self.use_routes:
            return self.server_address
        host = smtproute(self.parsed_config("smtproutes", parse_smtproutes), domain or "")
        host = host or self.fallback
        return None if host is None else "%s:%d" % (host, self.port)

    async def deliverable(self, address, domain):
        """qmail-deliverabled's number for ``address`` (None: no answer); QueryFailed."""
        server = self.server_for(domain)
        if server is None:
            raise QueryFailed("No SERVER defined; connection not attempted")
        url = "http://%s/qd1/deliverable?%s" % (server, quote(address, safe=""))
        try:
            response = await treq.get(url, agent=self._agent, timeout=self.timeout,
                                      headers={"Connection": "close"})
            body = await treq.content(response)
        except Exception as e:   # refused, reset, timed out: any failure means "no answer"
            raise QueryFailed("Server %s unreachable or broken! (%s)" % (server, too_long(e) or e))
        return parse_answer(response.code, body)

    async def hook_rcpt(self, transaction, recipient, *args):
        if self.is_immune(transaction) or recipient.user is None:
            return DECLINED
        address = recipient.address
        self.log(LOGDEBUG, "Checking deliverability for recipient '%s'" % (address,), transaction)
        match = VALID_ADDRESS.match(address.lower())
        if match is None:
            self.log(LOGWARN, "error (unknown) checking '%s'" % (address,), transaction)
            return DECLINED
        try:
            rv = await self.deliverable(match.group(1), recipient.host)
        except QueryFailed as e:
            self.log(LOGINFO, "error, %s" % (e,), transaction)
            return DECLINED
        if rv is None:
            self.log(LOGWARN, "error (unknown) checking '%s'" % (address,), transaction)
            return DECLINED
        if rv == 0x14 and not (transaction.sender and transaction.sender.address):
            self.adjust_karma(transaction, -1)
            return DENY, NULL_TO_LIST
        if rv:
            self.log(LOGINFO, MEANINGS.get(rv, "error, unknown: 0x%02x" % (rv,)), transaction)
            return DECLINED
        self.adjust_karma(transaction, -1)
        return self.get_reject(transaction, NO_MAILBOX)
