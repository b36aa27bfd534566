"""queue/smtp-forward against a next hop whose reply never ends: continuation lines
(``220-…``) sent for as long as we read them. Each line restarts the idle timeout, so before
a bound on one reply the lines piled up in memory without end. Against a stand-in next hop
written here (no real SMTP server answers like this); the front server is real, on a
loopback socket."""

from tests.plugins.test_queue_smtp_forward import ForwardTestCase
from tests.support.endless import endless_server


class EndlessReplyTests(ForwardTestCase):
    async def test_endless_multiline_reply_is_a_temporary_failure(self):
        hop_port, factory = endless_server(self, b"", b"220-still greeting you\r\n" * 2048)
        front, port = self.start_front("127.0.0.1 %d timeout 30" % hop_port)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [
            "Unable to queue message (reply longer than 65536 bytes from the next hop)"]))
        self.assertEqual(factory.connections, 1)
