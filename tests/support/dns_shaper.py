"""A DNS relay that delays or drops answers, for the tests' private DNS server.

Run as its own process (:mod:`tests.support.dns` starts it)::

    python dns_shaper.py LISTEN_ADDRESS UPSTREAM_ADDRESS CONTROL_SOCKET

It listens on ``LISTEN_ADDRESS`` port 53, UDP and TCP, and passes every query on to
``UPSTREAM_ADDRESS`` port 53 (NSD); the answers are NSD's, byte for byte (over UDP the
message id is rewritten on the way up and back, so that the queries of all clients share one
upstream socket). What it does to a query depends on the rules for its name, the longest
matching zone suffix winning:

- no rule: the answer is passed back at once;
- ``delay SECONDS``: the answer is passed back SECONDS after it came (a ``callLater``, no
  thread, so thousands of waiting answers cost only memory);
- ``silent``: the query is dropped, nothing is sent back (over TCP the connection stays open).

The rules are set at run time through the unix socket ``CONTROL_SOCKET``, one command a
line, each answered with one line starting ``ok`` (or ``error: …``) once it is in force:
``delay SUFFIX SECONDS``, ``silent SUFFIX``, ``clear SUFFIX``, ``clear`` (every rule),
``stats`` (``ok queries=N answered=N dropped=N tcp=N``, ``tcp`` of them over TCP), ``ping``.
"""

import socket
import struct
import sys

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.protocols.basic import Int16StringReceiver, LineOnlyReceiver

PORT = 53
RECEIVE_BUFFER = 4 << 20


def question_name(message):
    """The lower-cased name of the first question of a DNS message, as a list of labels
    (bytes); None if the message is too short or malformed."""
    labels = []
    offset = 12
    try:
        while True:
            length = message[offset]
            if length == 0:
                return labels
            if length & 0xC0:
                return None
            labels.append(message[offset + 1:offset + 1 + length].lower())
            offset += 1 + length
    except IndexError:
        return None


class Rules:
    """The rules in force: zone suffix (labels) → ``("delay", seconds)`` or ``("silent",)``;
    and counts of what was done."""

    def __init__(self):
        self.by_suffix = {}
        self.queries = self.answered = self.dropped = self.tcp_queries = 0

    def action(self, message):
        """The rule for ``message``'s question (longest suffix first), or None."""
        labels = question_name(message)
        if labels is None or not self.by_suffix:
            return None
        for start in range(len(labels)):
            rule = self.by_suffix.get(tuple(labels[start:]))
            if rule is not None:
                return rule
        return None

    def command(self, line):
        """Apply one control line; the reply line."""
        words = line.split()
        if words == ["ping"]:
            return "ok"
        if words == ["stats"]:
            return "ok queries=%d answered=%d dropped=%d tcp=%d" % (
                self.queries, self.answered, self.dropped, self.tcp_queries)
        if words == ["clear"]:
            self.by_suffix.clear()
            return "ok"
        if len(words) == 2 and words[0] in ("clear", "silent"):
            suffix = _suffix(words[1])
            if words[0] == "clear":
                self.by_suffix.pop(suffix, None)
            else:
                self.by_suffix[suffix] = ("silent",)
            return "ok"
        if len(words) == 3 and words[0] == "delay":
            try:
                seconds = float(words[2])
            except ValueError:
                return "error: not a number of seconds: %s" % words[2]
            if seconds < 0:
                return "error: a delay cannot be negative"
            self.by_suffix[_suffix(words[1])] = ("delay", seconds)
            return "ok"
        return "error: unknown command: %s" % line

    def then(self, rule, send, answer):
        """Send ``answer`` through ``send`` as ``rule`` (not silent) says: now, or later."""
        self.answered += 1
        if rule is None or rule[1] <= 0:
            send(answer)
        else:
            reactor.callLater(rule[1], send, answer)


def _suffix(name):
    return tuple(label.encode("ascii").lower() for label in name.strip(".").split(".") if label)


class UDPRelay(protocol.DatagramProtocol):
    """Queries from clients; their answers come back through :class:`UDPUpstream`."""

    def __init__(self, rules):
        self.rules = rules
        self.upstream = None

    def datagramReceived(self, data, address):
        if len(data) < 12:
            return
        self.rules.queries += 1
        rule = self.rules.action(data)
        if rule == ("silent",):
            self.rules.dropped += 1
            return
        self.upstream.forward(data, address, rule)


class UDPUpstream(protocol.DatagramProtocol):
    """One socket towards NSD: each query gets a fresh id, mapped back to its client's."""

    def __init__(self, relay, rules, target):
        self.relay = relay
        self.rules = rules
        self.target = target
        self.pending = {}
        self.next_id = 0

    def forward(self, data, client, rule):
        """Send ``data`` (a client's query) to NSD under a fresh id."""
        self.next_id = (self.next_id + 1) & 0xFFFF
        self.pending[self.next_id] = (client, data[:2], rule)
        self.transport.write(struct.pack("!H", self.next_id) + data[2:], self.target)

    def datagramReceived(self, data, address):
        if len(data) < 12:
            return
        entry = self.pending.pop(struct.unpack("!H", data[:2])[0], None)
        if entry is None:
            return
        client, client_id, rule = entry
        self.rules.then(rule, lambda answer: self.relay.transport.write(answer, client),
                        client_id + data[2:])


class TCPRelay(Int16StringReceiver):
    """A client's TCP connection: each query goes to NSD over a TCP connection of its own."""

    def __init__(self, rules, target):
        self.rules = rules
        self.target = target

    def stringReceived(self, data):
        self.rules.queries += 1
        self.rules.tcp_queries += 1
        rule = self.rules.action(data)
        if rule == ("silent",):
            self.rules.dropped += 1
            return
        asking = protocol.ClientCreator(reactor, TCPUpstream, data).connectTCP(self.target[0], self.target[1])
        asking.addCallback(lambda upstream: upstream.answered)
        asking.addCallback(lambda answer: self.rules.then(rule, self._send, answer))
        asking.addErrback(lambda failure: self.transport.loseConnection())

    def _send(self, answer):
        if self.transport.connected:
            self.sendString(answer)


class TCPUpstream(Int16StringReceiver):
    """Asks NSD one question over TCP; ``answered`` fires with the answer."""

    def __init__(self, query):
        self.query = query
        self.answered = Deferred()

    def connectionMade(self):
        self.sendString(self.query)

    def stringReceived(self, data):
        self.transport.loseConnection()
        if not self.answered.called:
            self.answered.callback(data)

    def connectionLost(self, reason):
        if not self.answered.called:
            self.answered.errback(reason)


class Control(LineOnlyReceiver):
    """The control socket: one command a line, one reply line each."""

    delimiter = b"\n"

    def __init__(self, rules):
        self.rules = rules

    def lineReceived(self, line):
        reply = self.rules.command(line.decode("utf-8", "replace").strip())
        self.sendLine(reply.encode("utf-8"))


def main(argv):
    """Listen as the command line says and run until SIGTERM."""
    if len(argv) != 4:
        sys.exit("usage: dns_shaper.py LISTEN_ADDRESS UPSTREAM_ADDRESS CONTROL_SOCKET")
    listen, upstream_address, control = argv[1:]
    rules = Rules()
    relay = UDPRelay(rules)
    relay.upstream = UDPUpstream(relay, rules, (upstream_address, PORT))
    for port in (reactor.listenUDP(0, relay.upstream, interface="127.0.0.1", maxPacketSize=65535),
                 reactor.listenUDP(PORT, relay, interface=listen, maxPacketSize=65535)):
        # room for the bursts of a benchmark (the kernel caps it at net.core.rmem_max)
        port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    tcp = protocol.Factory.forProtocol(lambda: TCPRelay(rules, (upstream_address, PORT)))
    reactor.listenTCP(PORT, tcp, interface=listen, backlog=1024)
    reactor.listenUNIX(control, protocol.Factory.forProtocol(lambda: Control(rules)))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
