"""A STAND-IN CVM module for the tests (no CVM package in Debian), on a unix socket.

Written from the CVM version 1 protocol description
(https://untroubled.org/cvm/protocol-1.html), and strict: it reads the request until the
client shuts its sending side, and answers CVME_BAD_CLIDATA (2, a temporary error) to
anything but byte 1, three NUL-terminated strings and one empty string within 512 bytes.
It knows :data:`ACCOUNTS` and records every request in ``requests``.

    module = StandInCvm()
    reactor.listenUNIX(path, module)
"""

from twisted.internet import protocol
from twisted.internet.interfaces import IHalfCloseableProtocol
from zope.interface import implementer

#: (account, domain) -> password
ACCOUNTS = {("alice", "example.com"): "s3cret pass", ("bob", "localhost"): "bobpw"}


@implementer(IHalfCloseableProtocol)
class _CvmConnection(protocol.Protocol):
    def connectionMade(self):
        self.data = b""

    def dataReceived(self, data):
        self.data += data

    def readConnectionLost(self):
        module = self.factory
        module.requests.append(self.data)
        if module.mode == "silent":
            return
        if module.mode == "close":
            self.transport.loseConnection()
            return
        self.transport.write(bytes([module.answer(self.data)]) + module.facts)
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass


class StandInCvm(protocol.Factory):
    """A stand-in CVM v1 module on a unix socket (see the module docstring)."""

    protocol = _CvmConnection
    facts = b"\x01alice\x00\x03500\x00\x00"

    def __init__(self):
        self.mode = "normal"       # "silent": never answers; "close": closes without answer
        self.error_code = None     # a code to answer instead of checking
        self.requests = []

    def answer(self, data):
        if self.error_code is not None:
            return self.error_code
        fields = data[1:].split(b"\0")
        if len(data) > 512 or data[:1] != b"\x01" or len(fields) != 5 or fields[3:] != [b"", b""]:
            return 2
        account, domain, password = (f.decode() for f in fields[:3])
        return 0 if ACCOUNTS.get((account, domain)) == password else 100
