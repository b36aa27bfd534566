"""queue/smtp-forward against a next hop whose reply never ends: continuation lines
(``220-…``) sent for as long as we read them. Each line restarts the idle timeout, so before
a bound on one reply the lines piled up in memory without end. Against a stand-in next hop
written here (no real SMTP server answers like this); the front server is real, on a
loopback socket."""

from twisted.internet import reactor
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest
from zope.interface import implementer

from tests.plugins.test_queue_smtp_forward import ForwardTestCase


@implementer(IPullProducer)
class _EndlessGreeting(Protocol):
    def connectionMade(self):
        self.factory.connections += 1
        self.transport.registerProducer(self, False)

    def resumeProducing(self):
        self.transport.write(b"220-still greeting you\r\n" * 2048)

    def stopProducing(self):
        pass


class EndlessReplyTests(ForwardTestCase):
    async def test_endless_multiline_reply_is_a_temporary_failure(self):
        factory = Factory.forProtocol(_EndlessGreeting)
        factory.connections = 0
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        front, port = self.start_front("127.0.0.1 %d timeout 30" % listening.getHost().port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (reply longer than 65536 bytes from the next hop)"]))
        self.assertEqual(factory.connections, 1)
