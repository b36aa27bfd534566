"""A map's cdb file (``morercpthosts.cdb``, ``morerelayclients.cdb``) that is not a valid cdb:
it is opened once per version of the file, not at each lookup, and the plugin logs it once
(LOGERROR, naming the file), not a plugin crash with a traceback at every RCPT or connection;
a valid file written over it is used at once, as any change of a cdb file is.

rcpt_ok leaves a recipient it cannot look up to the next plugins (here none: the core's 450,
as when the plugin crashed before); relay counts no client as listed in the broken file.
A real server and sessions over MemoryClient, as the other tests of these plugins.
"""

import os

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.cdb import write_cdb
from qpsmtpd_tx.testing import MemoryClient, capture_log, make_server

#: lookups made while the file is broken
LOOKUPS = 20


class BrokenCdbTests(unittest.TestCase):
    def server(self, plugins, files=None):
        server = make_server(self, plugins, files)
        self.log = capture_log(self, server)
        # a plugin's crash is logged through the chain, which kept the server's own log
        self.crashes = []

        def observe(event):
            text = formatEvent(event)
            if "FATAL PLUGIN ERROR" in text:
                self.crashes.append(text)
        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return server

    def cdb_path(self, server, name):
        return os.path.join(server.config.config_dir, name + ".cdb")

    def break_file(self, path):
        with open(path, "wb") as f:
            f.write(b"not a cdb file")

    def problems(self, text):
        """Lines at LOGERROR or worse that mention ``text``, and the plugins' crashes."""
        return [m for level, m in self.log if level <= codes.LOGERROR and text in m] + self.crashes

    def test_morercpthosts(self):
        server = self.server(["rcpt_ok"])
        path = self.cdb_path(server, "morercpthosts")

        def rcpt():
            client = MemoryClient(server)
            client.command("HELO c.example")
            client.command("MAIL FROM:<a@b.example>")
            reply = client.command("RCPT TO:<u@cdb.example>")
            client.command("QUIT")       # (the server's per-IP limit counts open sessions)
            return reply

        self.break_file(path)
        for _ in range(LOOKUPS):
            self.assertEqual(rcpt(), "450 No plugin decided if relaying is allowed\r\n")
        problems = self.problems("morercpthosts")
        self.assertEqual(len(problems), 1, self.log)
        self.assertIn(path, problems[0])
        self.assertIn("too short for a cdb file", problems[0])
        write_cdb(path + ".tmp", [(b"cdb.example", b"")])
        os.rename(path + ".tmp", path)
        self.assertEqual(rcpt(), "250 <u@cdb.example>, recipient ok\r\n")

    def test_morerelayclients(self):
        server = self.server(["relay", "rcpt_ok"])
        path = self.cdb_path(server, "morerelayclients")

        def relays():
            client = MemoryClient(server, remote_ip="192.0.2.7")
            relay_client = client.session.connection.relay_client
            client.command("QUIT")
            return relay_client

        self.break_file(path)
        for _ in range(LOOKUPS):
            self.assertFalse(relays())
        self.assertEqual(len(self.problems("morerelayclients")), 1, self.log)
        write_cdb(path + ".tmp", [(b"192.0.2.7", b"")])
        os.rename(path + ".tmp", path)
        self.assertTrue(relays())
