"""A scripted stand-in milter for the ``milter`` plugin's tests: the replies that the real
milters installed here (clamav-milter, opendkim) never send — body replacement, recipient
and sender changes, discard, quarantine, progress, skip, malformed replies, silence — on
a 127.0.0.1 port. It is a stand-in, not a milter: it answers by its script and records what
it received. The packet layout is written out here (not taken from qpsmtpd_tx.milter), so a
mistake in our codec does not cancel out.

``StandinMilter(testcase, script, optneg=...)`` listens at once (``port``); ``script`` maps a
command character (``"C"`` connect, ``"H"``, ``"M"``, ``"R"``, ``"T"`` data, ``"L"``
header, ``"N"`` end of header, ``"B"`` body, ``"E"`` end of message) to a list of replies
(each built by :func:`reply`) sent for every such command, or to ``HANG`` (no answer) or
``CLOSE`` (close the connection). A command not in the script is answered ``continue``,
except those the negotiated protocol says not to answer. ``received`` lists
``(connection number, command, data)``; ``connections`` counts the connections,
``open_connections`` those still open.
"""

import struct

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

HANG, CLOSE = "hang", "close"
#: the milter protocol's "no reply" flags, per command character
NO_REPLY = {"C": 0x1000, "H": 0x2000, "M": 0x4000, "R": 0x8000, "T": 0x10000, "L": 0x80,
            "N": 0x40000, "B": 0x80000}


def reply(command, data=b""):
    """One reply packet (``command`` a one-character str)."""
    return struct.pack("!I", len(data) + 1) + command.encode() + data


def strings(*values):
    """NUL-terminated strings, as replies carry them."""
    return b"".join(v.encode() + b"\0" for v in values)


def index(number):
    """A 32-bit index (INSHEADER, CHGHEADER)."""
    return struct.pack("!I", number)


class _Conversation(Protocol):
    def connectionMade(self):
        self.factory.open += 1
        self.factory.connections += 1
        self.number = self.factory.connections
        self.buffer = b""

    def connectionLost(self, reason):
        self.factory.open -= 1

    def dataReceived(self, data):
        self.buffer += data
        while len(self.buffer) >= 4:
            (length,) = struct.unpack("!I", self.buffer[:4])
            if len(self.buffer) < 4 + length:
                return
            packet, self.buffer = self.buffer[4:4 + length], self.buffer[4 + length:]
            self.packet(packet[:1].decode("latin-1"), packet[1:])

    def packet(self, command, data):
        milter = self.factory.milter
        milter.received.append((self.number, command, data))
        if command == "O":
            self.transport.write(milter.optneg)
            return
        if command in ("D", "A", "Q"):
            return
        action = milter.script.get(command)
        if action == HANG:
            return
        if action == CLOSE:
            self.transport.loseConnection()
            return
        if action is None:
            if milter.protocol & NO_REPLY.get(command, 0):
                return
            action = [reply("c")]
        if callable(action):
            action(self.transport, data)
            return
        self.transport.write(b"".join(action))


class StandinMilter:
    """The stand-in (see the module documentation); stopped at the end of ``testcase``."""

    def __init__(self, testcase, script=None, actions=0x17f, protocol=0, version=6,
                 macros=b""):
        self.script = dict(script or {})
        self.protocol = protocol
        self.optneg = reply("O", struct.pack("!III", version, actions, protocol) + macros)
        self.received = []
        factory = Factory.forProtocol(_Conversation)
        factory.milter = self
        factory.connections = factory.open = 0
        self.factory = factory
        self.listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        testcase.addCleanup(self.listening.stopListening)

    @property
    def open_connections(self):
        """How many of them are open now."""
        return self.factory.open

    @property
    def connections(self):
        """How many connections the plugin opened."""
        return self.factory.connections

    def commands(self):
        """The command characters received, in order (all connections)."""
        return "".join(command for _, command, _ in self.received)

    def data_of(self, command):
        """The data of every packet ``command`` received."""
        return [data for _, c, data in self.received if c == command]

    def macros(self, stage):
        """The macros (name → value) of the last MACRO packet for ``stage``."""
        for data in reversed(self.data_of("D")):
            if data[:1].decode() == stage:
                parts = data[1:].split(b"\0")[:-1]
                return {parts[i].decode(): parts[i + 1].decode()
                        for i in range(0, len(parts), 2)}
        return None
