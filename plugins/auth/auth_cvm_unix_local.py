"""auth/auth_cvm_unix_local — SMTP AUTH through a CVM module listening on a unix socket.

CVM (Bruce Guenther's Credential Validation Modules, https://untroubled.org/cvm/) checks a
user name and password, e.g. ``cvm-unix`` against the system's accounts. The plugin speaks
CVM protocol version 1 to a module run in local (unix socket) mode, as qpsmtpd 0.94's
plugin does: it sends byte 1, the account name, the domain (the part after ``@`` of the
user name, ``localhost`` when there is none) and the password, each ended by a NUL, then an
empty string, and shuts its sending side down; the module's first byte is the result:
0 accepted, 100 wrong credentials, anything else a temporary error. The request may hold at
most 512 bytes (the protocol's limit). Asynchronous: the server goes on serving meanwhile.

Mechanisms: PLAIN and LOGIN (CVM v1 needs the clear password; 0.94 does not offer
CRAM-MD5 either).

Arguments: ``cvm_socket PATH [enable_smtp yes|no] [enable_ssmtp yes|no] [timeout SECONDS]
[loglevel LEVEL]``
  ``cvm_socket``    the module's unix socket (required), e.g.
                    ``/var/lib/cvm/cvm-unix-local.socket``.
  ``enable_smtp``   ``yes``: check AUTH on connections to ports 25 and 587; default ``no``:
                    there the plugin declines (and AUTH fails unless another auth plugin
                    accepts it).
  ``enable_ssmtp``  the same for port 465 (SMTPS); default ``yes``. Connections to other
                    ports are always checked.
  ``timeout``       seconds one check may take, connecting included (default 10).

Config files: none.

Replies (through the core): ``235 PLAIN authentication successful for USER - auth success
for USER``; wrong credentials (100) ``535 5.7.8 Authentication credentials invalid``; a
module that cannot be reached, gives no or another answer, or takes longer than
``timeout``: ``454 4.7.0 Temporary authentication failure``. Neither the password nor the
answer's facts are logged (the core logs the user name).

Intended differences from qpsmtpd 0.94:
* 0.94 read the port from ``$PORT`` (set by tcpserver; else 25) once at start-up and, when
  disabled, registered no hook at all; here the port is each connection's own local port,
  and a disabled port makes the plugin decline that connection's AUTH (still advertised).
* 0.94 stayed silent (disabled) when the socket did not exist at start-up; here start-up
  logs a warning and each AUTH until the socket is there is answered 454, as when the
  module cannot be reached (0.94 answered DENY then), and an unknown result code (0.94:
  DECLINED) is 454 too, as the CVM protocol asks.
"""

import os
import stat

from twisted.internet import defer
from twisted.internet.endpoints import connectProtocol

from qpsmtpd_tx.auth_backend import AuthBackend, BackendUnavailable
from qpsmtpd_tx.codes import DECLINED, DENY, LOGDEBUG, LOGINFO, LOGWARN, OK
from qpsmtpd_tx.daemon_client import RequestExchange
from qpsmtpd_tx.endpoints import describe_failure, unix_socket
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.plugin_args import boolean

#: CVM version 1: the most a request (and an answer) may hold
MAX_PACKET = 512
#: the result codes of CVM version 1
SUCCESS, PERMANENT_FAILURE = 0, 100
SMTP_PORTS = (25, 587)
SSMTP_PORTS = (465,)


def cvm1_request(account, domain, password):
    """The bytes of a CVM version 1 request for a plain-text password."""
    fields = [account, domain, password]
    return b"\x01" + b"".join(field.encode("utf-8") + b"\0" for field in fields) + b"\0"


class AuthCvmUnixLocal(AuthBackend):
    """Check PLAIN and LOGIN credentials with a CVM module over its unix socket."""

    def init(self, args):
        options = self.parse_kv_args(args, {"cvm_socket", "enable_smtp", "enable_ssmtp",
                                            "timeout"})
        if not options.get("cvm_socket"):
            raise PluginError("requires the cvm_socket argument (the CVM module's unix socket)")
        self.address = unix_socket("cvm_socket", options["cvm_socket"])
        self.enable_smtp = boolean("enable_smtp", options.get("enable_smtp", "no"), "yes or no")
        self.enable_ssmtp = boolean("enable_ssmtp", options.get("enable_ssmtp", "yes"),
                                    "yes or no")
        self.set_timeout(options.get("timeout"))
        if not self.server.check_only and not _is_socket(self.address.path):
            self.log(LOGWARN, "cvm_socket %s is missing or not a socket: AUTH gets a temporary "
                     "failure until it is there" % self.address.path)

    def _enabled(self, transaction):
        port = transaction.connection.local_port
        if port in SMTP_PORTS and not self.enable_smtp:
            return "enable_smtp=no"
        if port in SSMTP_PORTS and not self.enable_ssmtp:
            return "enable_ssmtp=no"
        return None

    async def check(self, transaction, method, user, clear, digest, ticket):
        disabled = self._enabled(transaction)
        if disabled:
            self.log(LOGDEBUG, "skip: %s" % disabled, transaction)
            return DECLINED
        if clear is None:
            return DECLINED
        account, _, domain = user.partition("@")
        request = cvm1_request(account, domain or "localhost", clear)
        if "\0" in user or "\0" in clear or len(request) > MAX_PACKET:
            self.log(LOGINFO, "fail: credentials a CVM v1 request cannot carry", transaction)
            return DENY, "authcvm, invalid username"
        answer = await self._ask(request)
        if not answer:
            raise BackendUnavailable("no answer from the CVM module at %s" % self.address)
        if answer[0] == SUCCESS:
            self.log(LOGINFO, "pass: authenticated", transaction)
            return OK, "auth success for %s" % user
        if answer[0] == PERMANENT_FAILURE:
            self.log(LOGINFO, "fail: authentication failure", transaction)
            return DENY, "auth failure (100)"
        raise BackendUnavailable("the CVM module at %s answered with error code %d"
                                 % (self.address, answer[0]))

    async def _ask(self, request):
        exchange = RequestExchange([request], MAX_PACKET, half_close=True)
        try:
            await connectProtocol(self.address.endpoint(self.timeout), exchange)
        except defer.CancelledError:
            raise
        except Exception as e:
            raise BackendUnavailable("cannot connect to the CVM module at %s: %s"
                                     % (self.address, describe_failure(e)))
        try:
            return await exchange.done
        except defer.CancelledError:
            raise
        except Exception as e:
            if exchange.transport is not None:
                exchange.transport.abortConnection()
            raise BackendUnavailable("%s (CVM module at %s)" % (describe_failure(e),
                                                                self.address))


def _is_socket(path):
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False
