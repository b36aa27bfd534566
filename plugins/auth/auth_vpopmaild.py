"""auth/auth_vpopmaild — SMTP AUTH against vpopmail's vpopmaild daemon, over TCP.

For each AUTH it connects to vpopmaild, reads its greeting (a line starting ``+OK``), sends
``login USER PASSWORD`` and reads one line: ``+OK`` (or ``+OK+``, a multi-line answer)
means the credentials are right, ``-ERR …`` that they are not. Then it closes the
connection. Asynchronous: the server goes on serving meanwhile.

Mechanisms: PLAIN and LOGIN (vpopmaild needs the clear password; 0.94 does not offer
CRAM-MD5 either). Users log in as vpopmail knows them, normally ``user@domain``.

Arguments: ``[host HOST] [port PORT] [timeout SECONDS] [loglevel LEVEL]``
  ``host``     vpopmaild's host name or address (default ``localhost``).
  ``port``     its TCP port (default 89).
  ``timeout``  seconds one check may take, connecting included (default 10).

Config files: none.

Replies (through the core): ``235 PLAIN authentication successful for USER -
auth_vpopmaild``; ``-ERR`` ``535 5.7.8 Authentication credentials invalid``; vpopmaild
unreachable, a greeting or answer that is neither ``+OK`` nor ``-ERR`` (or over 1000
bytes), a closed connection or no answer within ``timeout``: ``454 4.7.0 Temporary
authentication failure``. vpopmaild's ``-ERR`` line is logged; the password is not.

Intended differences from qpsmtpd 0.94:
* a user name or password holding white space or control characters is refused (535)
  without asking vpopmaild: the command line splits its words at spaces, so
  ``login u@d right-password anything`` would check only ``right-password``, and a line
  break would start a command of the client's choosing (0.94 sent them as they were);
* the command ends in ``\\r\\n`` (0.94 sent ``\\n\\r``, leaving a stray ``\\r`` line);
* an unreachable or garbled vpopmaild is a temporary failure (454); 0.94 declined (535);
* ``timeout`` is new (0.94 waited as long as the socket did).
"""

from twisted.internet import defer
from twisted.internet.endpoints import connectProtocol
from twisted.protocols.basic import LineOnlyReceiver

from qpsmtpd_tx.auth_backend import AuthBackend, BackendUnavailable
from qpsmtpd_tx.codes import DECLINED, LOGINFO, LOGNOTICE, OK
from qpsmtpd_tx.endpoints import ServerAddress, describe_failure
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.printable import printable

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 89
#: the longest line taken from vpopmaild
MAX_LINE = 1000


class _Login(LineOnlyReceiver):
    """Greeting, ``login``, answer. ``answer`` fires with vpopmaild's answer line, or fails
    with BackendUnavailable."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE

    def __init__(self, command):
        self.command = command
        self.greeted = False
        self.answer = defer.Deferred(lambda _: self.transport and self.transport.abortConnection())

    def lineReceived(self, line):
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if not self.greeted:
            if not text.startswith("+OK"):
                return self._fail("greeting %r is not +OK" % printable(text, limit=100))
            self.greeted = True
            self.transport.write(self.command)
            return None
        if not self.answer.called:
            self.answer.callback(text)
        self.transport.loseConnection()
        return None

    def lineLengthExceeded(self, line):
        self._fail("a line longer than %d bytes" % MAX_LINE)

    def _fail(self, why):
        if not self.answer.called:
            self.answer.errback(BackendUnavailable(why))
        self.transport.abortConnection()

    def connectionLost(self, reason):
        if not self.answer.called:
            self.answer.errback(BackendUnavailable("the connection closed before the answer"))


class AuthVpopmaild(AuthBackend):
    """Check PLAIN and LOGIN credentials with vpopmaild's ``login`` command."""

    def init(self, args):
        options = self.parse_kv_args(args, {"host", "port", "timeout"})
        host = options.get("host") or DEFAULT_HOST
        port = options.get("port") or str(DEFAULT_PORT)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise PluginError("port must be a TCP port number, got %r" % port)
        self.address = ServerAddress(host=host, port=int(port))
        self.set_timeout(options.get("timeout"))

    async def check(self, transaction, method, user, clear, digest, ticket):
        if clear is None:
            return DECLINED
        if _unsendable(user) or _unsendable(clear):
            self.log(LOGINFO, "fail: white space or control characters in the user name or "
                     "password", transaction)
            return DECLINED
        login = _Login(("login %s %s\r\n" % (user, clear)).encode("utf-8"))
        try:
            await connectProtocol(self.address.endpoint(self.timeout), login)
        except defer.CancelledError:
            raise
        except Exception as e:
            raise BackendUnavailable("cannot connect to vpopmaild at %s: %s"
                                     % (self.address, describe_failure(e)))
        try:
            answer = await login.answer
        except BackendUnavailable as e:
            raise BackendUnavailable("vpopmaild at %s: %s" % (self.address, e))
        if answer.startswith("+OK"):
            self.log(LOGINFO, "pass, clear", transaction)
            return OK, "auth_vpopmaild"
        if answer.startswith("-ERR"):
            self.log(LOGNOTICE, "fail, %s" % printable(answer, limit=200), transaction)
            return DECLINED
        raise BackendUnavailable("vpopmaild at %s answered %r" % (self.address,
                                                                  printable(answer, limit=100)))


def _unsendable(text):
    return not text or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text)
