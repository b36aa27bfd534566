"""Tests of the rcpt_map plugin: a per-domain map of recipients to return codes, its
default, reloading and its errors; MemoryClient sessions and one over a loopback socket.
"""

import os

from qpsmtpd_tx import codes
from tests.support.envelope_cases import (
    DENIED, ROUTING_RECIPIENTS, EndToEndTestCase, PluginTestCase, rcpt_ok)
from tests.support.harness import MemoryClient


MAP = """\
# example_com_map - config for rcpt_map
me@example.com OK
you@example.com      OK      fine
Info@example.com DENY User not found.
soft@example.com DENYSOFT_DISCONNECT bye
next@example.com DECLINED

  other@elsewhere.example DENY not my domain
"""


class RcptMapTests(PluginTestCase):
    def map_file(self, text=MAP):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        return path

    def session(self, args, files=None):
        client = self.client(["rcpt_map " + args, "rcpt_ok"], files)
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        return client

    def test_map(self):
        client = self.session("domain Example.COM file %s" % self.map_file())
        table = [
            ("me@example.com", rcpt_ok("<me@example.com>")),
            ("you@example.com", rcpt_ok("<you@example.com>")),
            ("info@example.com", "550 User not found.\r\n"),
            ("INFO@Example.com", "550 User not found.\r\n"),
            ("nobody@example.com", "550 No such user.\r\n"),
            ("next@example.com", rcpt_ok("<next@example.com>")),     # DECLINED: rcpt_ok decides
            ("other@elsewhere.example", "550 Relaying denied (#5.7.1)\r\n"),  # not our domain
            ("postmaster", rcpt_ok("<postmaster>")),
        ]
        for rcpt, reply in table:
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt), reply, rcpt)
        self.assertFalse(client.closed)
        self.assertEqual(client.command("RCPT TO:<soft@example.com>"), "421 bye\r\n")
        self.assertTrue(client.closed)

    def test_default(self):
        path = self.map_file()
        table = [
            ("default DENYSOFT=Try_again_later", "450 Try again later\r\n"),
            ("default denysoft", "450 No such user.\r\n"),
            ("default 901=a=b", "550 a=b\r\n"),
            ("default OK", rcpt_ok("<nobody@example.com>")),
            ("default DECLINED", rcpt_ok("<nobody@example.com>")),
        ]
        for args, reply in table:
            client = self.session("domain example.com file %s %s" % (path, args))
            self.assertEqual(client.command("RCPT TO:<nobody@example.com>"), reply, args)
            self.assertEqual(client.command("RCPT TO:<info@example.com>"),
                             "550 User not found.\r\n")

    def test_default_ok_does_not_accept_routing_local_parts(self):
        client = self.client(["rcpt_map domain example.com file %s default OK" % self.map_file()])
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        for address, _ in ROUTING_RECIPIENTS[:5]:
            self.assertEqual(client.command("RCPT TO:%s" % address), DENIED, address)
        self.assertEqual(client.command("RCPT TO:<nobody@example.com>"),
                         rcpt_ok("<nobody@example.com>"))

    def test_relative_file_is_looked_up_as_config(self):
        client = self.session("domain example.com file map_example", {"map_example": MAP})
        self.assertEqual(client.command("RCPT TO:<info@example.com>"), "550 User not found.\r\n")

    def test_two_instances_two_maps(self):
        client = self.client([
            "rcpt_map domain a.example file %s" % self.map_file("x@a.example DENY from map a"),
            "rcpt_map:1 domain b.example file %s" % self.map_file("x@b.example DENY from map b"),
            "rcpt_ok"], {"rcpthosts": "a.example\nb.example"})
        client.command("HELO c.example")
        client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(client.command("RCPT TO:<x@a.example>"), "550 from map a\r\n")
        self.assertEqual(client.command("RCPT TO:<x@b.example>"), "550 from map b\r\n")
        self.assertEqual(client.command("RCPT TO:<y@b.example>"), "550 No such user.\r\n")

    def test_map_read_again_when_changed(self):
        path = self.map_file("x@example.com DENY old text")
        server, records = self.recording_server(["rcpt_map domain example.com file %s" % path,
                                                 "rcpt_ok"])

        def answer():
            client = MemoryClient(server)
            client.command("HELO c.example")
            client.command("MAIL FROM:<a@b.example>")
            return client.command("RCPT TO:<x@example.com>")

        self.assertEqual(answer(), "550 old text\r\n")
        with open(path, "w") as f:
            f.write("x@example.com DENYSOFT new text, longer\n")
        self.assertEqual(answer(), "450 new text, longer\r\n")
        with open(path, "w") as f:
            f.write("x@example.com MAYBE broken map, a bit longer\n")
        self.assertEqual(answer(), "450 new text, longer\r\n")
        errors = [r for r in records if r[0] == codes.LOGERROR]
        self.assertEqual(len(errors), 1, records)
        self.assertIn("keeping the previous map: %s:1: 'MAYBE' is not a return code" % path,
                      errors[0][2])

    def test_bad_arguments(self):
        path = self.map_file()
        table = [
            ("rcpt_map file %s" % path, "no domain given (domain NAME)"),
            ("rcpt_map domain example.com", "no map file given (file PATH)"),
            ("rcpt_map domain example.com file /nonexistent/map",
             "cannot read map file /nonexistent/map: No such file or directory"),
            ("rcpt_map domain example.com file %s default MAYBE=x" % path,
             "default: 'MAYBE' is not a return code a rcpt map can give"),
            ("rcpt_map domain example.com file %s default DONE" % path,
             "default: 'DONE' is not a return code a rcpt map can give"),
            ("rcpt_map domain example.com file %s colour red" % path, "unknown argument 'colour'"),
        ]
        for line, expected in table:
            self.assertStartupError([line], ":1: plugin rcpt_map: " + expected)

    def test_bad_map_lines_stop_startup(self):
        table = [
            ("a@example.com OK\nb@example.com", 2, "no return code after 'b@example.com'"),
            ("a@example.com MAYBE", 1, "'MAYBE' is not a return code a rcpt map can give"),
            ("# only a comment\n\n", None, "empty map file"),
        ]
        for text, lineno, expected in table:
            path = self.map_file(text)
            where = "%s:%d: " % (path, lineno) if lineno else "empty map file %s" % path
            message = self.assertStartupError(["rcpt_map domain example.com file %s" % path],
                                              expected)
            self.assertIn(where, message)
            self.assertRegex(message, r"^/\S+/plugins:1: plugin rcpt_map: ")


class EndToEndTests(EndToEndTestCase):
    async def test_rcpt_map(self):
        _, replies = await self.talk(["rcpt_map domain example.com file map_example", "rcpt_ok"],
                                     {"map_example": "u@example.com OK\n"},
                                     ["HELO c.example", "MAIL FROM:<a@b.example>",
                                      "RCPT TO:<u@example.com>", "RCPT TO:<v@example.com>"])
        self.assertEqual(replies[2:], [(250, ["<u@example.com>, recipient ok"]),
                                       (550, ["No such user."])])
