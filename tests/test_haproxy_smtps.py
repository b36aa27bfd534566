"""SMTPS behind a real HAProxy (Debian's) in TCP mode with ``send-proxy-v2``: a
``twistd qpsmtpd-tx --listen-proxy-tls`` endpoint reads the PROXY header, then the client's
TLS handshake, then SMTP.

HAProxy passes the client's TLS bytes through and puts its PROXY header before them. The
clients (smtplib.SMTP_SSL, swaks --tlsc) connect to HAProxy from 127.0.0.6 or .8 (any 127/8
address is ours); HAProxy connects to us from 127.0.0.1, the one proxy in ``proxy_trusted``.
The cases HAProxy cannot produce (a header that never comes, a peer that is not trusted) are
played by a plain socket.
"""

import os
import re
import smtplib
import socket
import ssl
import subprocess

from twisted.trial import unittest

from qpsmtpd_tx.proxy_header import V2_SIGNATURE
from qpsmtpd_tx.testing import maildir_messages, write_config
from qpsmtpd_tx.tls import write_self_signed
from tests.plugins.test_tls import client_context
from tests.support.haproxy import start_haproxy
from tests.support.processes import (CHECKOUT, free_port, poll_until, read_text, reserve_port,
                                     server_env, start_twistd, twistd_argv, wait_for_port)

#: seconds a client waits for the server before the test fails (a bound, not a measurement)
WAIT = 20
CLIENT, SWAKS_CLIENT, UNTRUSTED = "127.0.0.6", "127.0.0.8", "127.0.0.9"
#: connections setUp makes to the server: start_twistd's check of its plain port, ours of the
#: proxy endpoint, HAProxy's start-up check (a header, then nothing: the handshake times out)
SETUP_CONNECTIONS = 3
V2 = (V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes([192, 0, 2, 7, 198, 51, 100, 25])
      + b"\xc3\x8c\x01\xd1")


def read_until_closed(sock):
    """Everything ``sock`` receives until the server closes it (or resets it)."""
    sock.settimeout(WAIT)
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


class SMTPSBehindHAProxyTests(unittest.TestCase):
    def setUp(self):
        root = os.path.abspath(self.mktemp())
        self.maildir = os.path.join(root, "maildir")
        config = write_config(os.path.join(root, "config"), [
            "tls", "rcpt_ok", "queue/maildir " + self.maildir], {
            "loglevel": "LOGINFO", "proxy_timeout": "1", "command_deadline": "2"})
        write_self_signed(os.path.join(config, "ssl", "qpsmtpd-server.crt"),
                          os.path.join(config, "ssl", "qpsmtpd-server.key"), "mx.example.org")
        self.smtps = reserve_port(self)
        process, _, self.log_path = start_twistd(
            self, config, extra=["--no-rdns", "--listen-proxy-tls",
                                 "tcp:%d:interface=127.0.0.1" % self.smtps])
        wait_for_port(self.smtps, process)
        self.port = start_haproxy(self, [("127.0.0.1", self.smtps)], "send-proxy-v2").port

    def log(self):
        return read_text(self.log_path)

    def assertLogged(self, pattern):
        """The server's log comes to match ``pattern`` (a regex)."""
        self.assertTrue(poll_until(lambda: re.search(pattern, self.log()), WAIT), self.log())

    def assertAllCleanedUp(self, connections):
        """The test's ``connections`` and setUp's have all ended in the server (none left
        behind); no traceback anywhere."""
        expected = SETUP_CONNECTIONS + connections
        self.assertTrue(poll_until(lambda: self.log().count("cleaning up after") == expected,
                                   WAIT), self.log())
        self.assertNotIn("Traceback", self.log())

    def test_client_address_and_tls_in_received_and_log(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.port, source_address=(CLIENT, 0),
                              timeout=WAIT, context=client_context()) as client:
            code, text = client.ehlo("client.example")
            self.assertEqual(code, 250)
            self.assertNotIn(b"STARTTLS", text)       # the connection is encrypted already
            client.sendmail("a@b.example", ["u@example.com"], b"Subject: t\r\n\r\nbody\r\n")
        result = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(self.port), "--tlsc",
             "--local-interface", SWAKS_CLIENT, "--from", "a@b.example", "--to",
             "u@example.com", "--helo", "client.example"], capture_output=True, timeout=WAIT)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        received = sorted(message.decode().split("\nReceived: ", 1)[1].split(";")[0]
                          for message in maildir_messages(self.maildir))
        self.assertEqual(len(received), 2)
        for line, source in zip(received, (CLIENT, SWAKS_CLIENT)):
            self.assertIn("(%s)" % source, line)
            self.assertNotIn("127.0.0.1", line)
            self.assertRegex(line, r"with \(TLS_[A-Z0-9_]+ encrypted\) ESMTPS$")
        log = self.log()
        for source in (CLIENT, SWAKS_CLIENT):
            self.assertIn("PROXY v2 from 127.0.0.1: client %s:" % source, log)
            self.assertIn("Connection from [%s] [%s]" % (source, source), log)
        self.assertEqual(log.count("TLS established: TLSv1."), 2)
        # TLS comes before the connect hooks, which see the proxied client on TLS
        self.assertLess(log.index("TLS established"), log.index("Connection from [%s]" % CLIENT))

    def test_untrusted_source_is_refused(self):
        sock = socket.create_connection(("127.0.0.1", self.smtps), timeout=WAIT,
                                        source_address=(UNTRUSTED, 0))
        self.addCleanup(sock.close)
        sock.sendall(V2)
        self.assertEqual(read_until_closed(sock), b"")
        self.assertLogged("refusing a connection from %s on a PROXY endpoint: not in "
                          "proxy_trusted" % re.escape(UNTRUSTED))

    def test_header_that_never_comes(self):
        """A trusted peer that sends nothing is closed after proxy_timeout (1 s here)."""
        sock = socket.create_connection(("127.0.0.1", self.smtps), timeout=WAIT)
        self.addCleanup(sock.close)
        self.assertEqual(read_until_closed(sock), b"")
        self.assertLogged("no PROXY header from 127.0.0.1 within 1 s, closing")
        self.assertAllCleanedUp(1)

    def test_garbage_after_the_header(self):
        """Through HAProxy: SMTP where the ClientHello should be; a clean close, no SMTP word,
        no traceback, no session left behind; the next client is served."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT,
                                        source_address=(CLIENT, 0))
        self.addCleanup(sock.close)
        sock.sendall(b"EHLO client.example\r\n" * 4)
        self.assertEqual(read_until_closed(sock), b"")
        self.assertLogged("PROXY v2 from 127.0.0.1: client %s:" % re.escape(CLIENT))
        self.assertLogged(r"TLS handshake failed: .*")
        self.assertAllCleanedUp(1)
        with smtplib.SMTP_SSL("127.0.0.1", self.port, timeout=WAIT,
                              context=client_context()) as client:
            self.assertEqual(client.noop()[0], 250)

    def test_handshake_that_never_comes(self):
        """A header and then silence: the handshake's time limit (command_deadline, 2 s)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT,
                                        source_address=(CLIENT, 0))
        self.addCleanup(sock.close)
        self.assertEqual(read_until_closed(sock), b"")
        self.assertLogged("PROXY v2 from 127.0.0.1: client %s:" % re.escape(CLIENT))
        self.assertLogged("TLS handshake not complete within 2 s, closing")
        self.assertAllCleanedUp(1)

    def test_header_and_client_hello_in_one_read(self):
        """The header and the start of the handshake in one segment (as HAProxy may send them
        once the client has spoken): the bytes after the header go to TLS, none is lost."""
        sock = socket.create_connection(("127.0.0.1", self.smtps), timeout=WAIT)
        self.addCleanup(sock.close)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_context().wrap_bio(incoming, outgoing)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        sock.sendall(V2 + outgoing.read())
        sock.settimeout(WAIT)
        while True:
            data = sock.recv(65536)
            self.assertTrue(data, self.log())
            incoming.write(data)
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            if outgoing.pending:
                sock.sendall(outgoing.read())
        sock.sendall(outgoing.read())
        greeting = b""
        while b"\r\n" not in greeting:
            try:
                greeting += tls.read(4096)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
        self.assertTrue(greeting.startswith(b"220 mx.example.org ESMTP"), greeting)
        self.assertLogged("PROXY v2 from 127.0.0.1: client 192.0.2.7:50060")


class OptionTests(unittest.TestCase):
    """``--listen-proxy-tls`` at start-up and with ``--workers``."""

    def config(self, plugins):
        root = os.path.abspath(self.mktemp())
        config = write_config(os.path.join(root, "config"), plugins, {"loglevel": "LOGINFO"})
        write_self_signed(os.path.join(config, "ssl", "qpsmtpd-server.crt"),
                          os.path.join(config, "ssl", "qpsmtpd-server.key"), "mx.example.org")
        return config

    def test_needs_the_tls_plugin(self):
        argv = twistd_argv(self.config(["rcpt_ok"]), free_port(), [
            "--listen-proxy-tls", "tcp:%d:interface=127.0.0.1" % free_port()])
        result = subprocess.run(argv, cwd=CHECKOUT, env=server_env(), capture_output=True,
                                timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"--listen-proxy-tls needs the tls plugin", result.stdout + result.stderr)

    def test_workers_serve_it(self):
        """With --workers 3 the workers adopt the endpoint too: PROXY header, then TLS."""
        smtps = reserve_port(self)
        process, _, log_path = start_twistd(self, self.config(["tls", "rcpt_ok"]), extra=[
            "--workers", "3", "--no-rdns", "--listen-proxy-tls",
            "tcp:%d:interface=127.0.0.1" % smtps])
        self.assertTrue(poll_until(lambda: read_text(log_path).count("serving") == 2, WAIT),
                        read_text(log_path))
        port = start_haproxy(self, [("127.0.0.1", smtps)], "send-proxy-v2").port
        by_worker = re.compile(r"worker \d: \[qpsmtpd_tx\] w\d\.\d+ PROXY v2 from 127\.0\.0\.1: "
                               r"client %s:" % re.escape(CLIENT))
        # whichever process is idle in accept first takes a connection: a worker soon does
        for _ in range(50):
            with smtplib.SMTP_SSL("127.0.0.1", port, source_address=(CLIENT, 0), timeout=WAIT,
                                  context=client_context()) as client:
                self.assertEqual(client.noop()[0], 250)
            if by_worker.search(read_text(log_path)):
                break
        self.assertRegex(read_text(log_path), by_worker)
        self.assertNotIn("cannot start", read_text(log_path))
