"""Client text with control characters: refused where the grammar forbids it, escaped in log
lines, header fields and replies, so that it can never split a header or a log line."""

import base64
import os
import re
import socket

from twisted.trial import unittest

from qpsmtpd_tx.objects import Connection
from qpsmtpd_tx.printable import is_printable, printable
from qpsmtpd_tx.received import authentication_results_header, received_header
from tests.support.harness import MemoryClient, codes_of, make_server, maildir_messages, write_config
from tests.support.processes import start_twistd

INJECTED_HELO = "EHLO a\rX-Injected:yes"


class PrintableTests(unittest.TestCase):
    def test_escapes(self):
        self.assertEqual(printable("a\rb\nc\x00d\x1be\x7ff\x85g"),
                         "a\\x0db\\x0ac\\x00d\\x1be\\x7ff\\x85g")
        self.assertEqual(printable("x\u2028y"), "x\\u2028y")
        # bytes that were not UTF-8 (decoded with surrogateescape) come back as their value
        self.assertEqual(printable(b"\xff\xc3".decode("utf-8", "surrogateescape")), "\\xff\\xc3")
        self.assertEqual(printable("plain text, \u00e9t\u00e9 <a@b> \\x"), "plain text, \u00e9t\u00e9 <a@b> \\x")
        self.assertEqual(printable(None), "")

    def test_limit(self):
        self.assertEqual(printable("abcdef", limit=4), "abcd...")
        self.assertEqual(printable("abcd", limit=4), "abcd")
        self.assertEqual(printable("\x00" * 10, limit=2), "\\x00\\x00...")

    def test_is_printable(self):
        self.assertTrue(is_printable("mail.example.com [192.0.2.1] \u00e9"))
        for bad in ("a\rb", "a\tb", "\x00", "\x1b[2J", "\x7f", "\u0085", "\udcff"):
            self.assertFalse(is_printable(bad), repr(bad))


class HeaderFieldTests(unittest.TestCase):
    def test_received_cannot_be_split(self):
        conn = Connection(remote_ip="192.0.2.1", remote_info="host\r\nX-A: 1",
                          hello_host="a\rX-Injected:yes")
        value = received_header("mx.example.org", conn, "ESMTP", 0)
        self.assertNotIn("\r", value)
        self.assertEqual(value.count("\n"), 1)
        self.assertIn("from host\\x0d\\x0aX-A: 1 (HELO a\\x0dX-Injected:yes) (192.0.2.1)", value)

    def test_authentication_results_cannot_be_split(self):
        conn = Connection(auth_user="u\r\nX-Injected: yes", auth_mechanism="PLAIN")
        self.assertEqual(authentication_results_header("mx.example.org", conn),
                         "mx.example.org; auth=pass (plain) smtp.auth=u\\x0d\\x0aX-Injected: yes")


class CommandTests(unittest.TestCase):
    def setUp(self):
        self.log_path = os.path.abspath(self.mktemp())
        self.client = MemoryClient(make_server(self, [
            "count_unrecognized_commands 9", "echo_unrecognized", "rcpt_ok"], {
            "logging": "logging/file loglevel LOGDEBUG ids %s" % self.log_path}))

    def log_lines(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape").split("\n")

    def test_helo_with_control_characters_is_refused(self):
        for line in (INJECTED_HELO.encode(), b"HELO a\x00", b"EHLO a.example \x1b[2J",
                     b"EHLO a.\x7fexample", b"EHLO a\x85", b"HELO a\xc2\x85"):
            reply = self.client.send(line + b"\r\n")
            self.assertEqual(reply, "501 5.5.4 Invalid characters in %s argument\r\n"
                             % line[:4].decode().lower(), repr(line))
            self.assertIsNone(self.client.session.connection.hello_host)
        self.assertEqual(codes_of(self.client.command("EHLO a.example")), [250])

    def test_mail_parameter_with_control_or_8bit_characters_is_refused(self):
        self.client.command("EHLO a.example")
        for line in ("MAIL FROM:<a@b.example> X=\x7f", "MAIL FROM:<a@b.example> X=\u00e9",
                     "MAIL FROM:<a\x1b@b.example>"):
            self.assertEqual(codes_of(self.client.command(line)), [501], repr(line))
            self.assertIsNone(self.client.session.transaction.sender)

    def test_log_lines_cannot_be_split(self):
        self.client.command(INJECTED_HELO)
        self.client.command("NOOP \x1b[2J\x85\u2028X-Injected: yes")
        self.client.command("\x1b[2J\rX-Injected: yes")   # logged by a plugin too
        lines = self.log_lines()
        text = "\n".join(lines)
        for char in ("\r", "\x1b", "\x85", "\u2028"):
            self.assertNotIn(char, text)
        self.assertIn("dispatching EHLO a\\x0dX-Injected:yes", text)
        self.assertIn("dispatching NOOP \\x1b[2J\\x85\\u2028X-Injected: yes", text)
        self.assertIn("count_unrecognized_commands: '\\x1b[2j\\x0dx-injected:', (1)", text)
        self.assertFalse([line for line in lines if line.startswith("X-Injected")])

    def test_plugin_reply_text_is_escaped(self):
        client = MemoryClient(make_server(self, ["echo_unrecognized"]))
        self.assertEqual(client.command("FOO b\x1bc\x00"), "500 you said foo b\\x1bc\\x00\r\n")


class EndToEndTests(unittest.TestCase):
    """A real twistd process: the injected HELO is refused, the log stays one line per event,
    and the delivered message's Received field names only the HELO that was accepted."""

    def test_received_and_log_cannot_be_split(self):
        root = os.path.abspath(self.mktemp())
        maildir = os.path.join(root, "maildir")
        config = write_config(os.path.join(root, "config"),
                              ["rcpt_ok", "queue/maildir %s" % maildir], {"loglevel": "6"})
        _, port, log_path = start_twistd(self, config)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            replies = sock.makefile("rb")

            def command(line):
                sock.sendall(line + b"\r\n")
                while True:
                    reply = replies.readline()
                    if reply[3:4] != b"-":
                        return reply

            self.assertTrue(replies.readline().startswith(b"220 "))
            self.assertEqual(command(INJECTED_HELO.encode()),
                             b"501 5.5.4 Invalid characters in ehlo argument\r\n")
            self.assertEqual(command(b"HELO a\x0bX-Injected:yes"),
                             b"501 5.5.4 Invalid characters in helo argument\r\n")
            self.assertTrue(command(b"EHLO client.example").startswith(b"250 "))
            self.assertTrue(command(b"MAIL FROM:<a@b.example>").startswith(b"250 "))
            self.assertTrue(command(b"RCPT TO:<u@example.com>").startswith(b"250 "))
            self.assertTrue(command(b"DATA").startswith(b"354 "))
            self.assertTrue(command(b"Subject: x\r\n\r\nbody\r\n.").startswith(b"250 "))
            self.assertTrue(command(b"QUIT").startswith(b"221 "))
        [message] = maildir_messages(maildir)
        header = message.split(b"\n\n", 1)[0]
        self.assertNotIn(b"\r", header)
        self.assertNotIn(b"X-Injected", header)
        self.assertRegex(header, rb"\nReceived: from [^\n]* \(HELO client\.example\) \(127\.0\.0\.1\)\n by ")
        with open(log_path, "rb") as f:
            log = f.read()
        self.assertIn(b"dispatching EHLO a\\x0dX-Injected:yes", log)
        self.assertIn(b"dispatching HELO a\\x0bX-Injected:yes", log)
        self.assertNotIn(b"\r", log)
        self.assertNotIn(b"\x0b", log)
        # every line is a twistd log line (time stamp first): none was split off
        for line in log.splitlines():
            self.assertRegex(line, rb"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d", line)
