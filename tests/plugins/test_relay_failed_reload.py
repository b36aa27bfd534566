"""relay after a SIGHUP whose reload failed on a bad ``relayclients`` line: the server says it
keeps the plugins in use, and relay keeps the lists it had (as ``parsed_config`` keeps a
value), logging the bad line; it does not drop every list, which turned all relay clients
away until the file was fixed. A real session over a socket; the real reload."""

import os

from twisted.trial import unittest

from qpsmtpd_tx import codes
from tests.support.server import connect, start_server


class FailedReloadTests(unittest.TestCase):
    async def rcpt(self, port):
        client = await connect(self, port)
        await client.command("HELO client.example")
        await client.command("MAIL FROM:<a@b.example>")
        reply = await client.command("RCPT TO:<someone@elsewhere.example>")
        await client.command("QUIT")
        return reply[0]

    async def test_a_bad_edit_keeps_the_previous_relay_clients(self):
        server, port = start_server(self, ["relay", "rcpt_ok"], {"relayclients": "127.0.0.1"})
        logged = []
        real_log = server.log
        self.patch(server, "log", lambda level, message, **kw: (
            logged.append((level, message)), real_log(level, message, **kw)))
        self.assertEqual(await self.rcpt(port), 250)
        with open(os.path.join(server.config.config_dir, "relayclients"), "w") as f:
            f.write("127.0.0.1\nnot-an-address\n")
        self.assertFalse(server.reload())
        self.assertEqual(await self.rcpt(port), 250)
        errors = [m for level, m in logged if level == codes.LOGERROR]
        self.assertTrue(any("reload failed" in m for m in errors), errors)
        self.assertTrue(any("keeping the previous relayclients" in m for m in errors), errors)
        with open(os.path.join(server.config.config_dir, "relayclients"), "w") as f:
            f.write("192.0.2.1\n")                  # fixed, and 127.0.0.1 no longer in it
        self.assertTrue(server.reload())
        self.assertEqual(await self.rcpt(port), 550)
