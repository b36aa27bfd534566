"""The ``tls`` plugin: certificates at start-up, STARTTLS with real clients, the injection rule.

Certificates are made by the tests (our ``write_self_signed`` and the ``cryptography`` package
for the broken ones); the STARTTLS tests run a real ``twistd qpsmtpd-tx`` and talk to it over
real sockets with Python's ssl module, smtplib, ``openssl s_client`` and ``swaks``.
"""

import datetime
import io
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.trial import unittest

from qpsmtpd_tx import cli
from qpsmtpd_tx.config import ConfigLine
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.testing import MemoryClient, assertStartupError, loaded_plugin, make_server
from qpsmtpd_tx.tls import parse_protocols, write_self_signed
from tests.support.harness import TEST_PLUGINS, write_config
from tests.support.processes import (CHECKOUT, free_port, poll_until, read_text, reserve_port,
                                     server_env, start_twistd, stop_process, twistd_argv)

INJECTION = b"STARTTLS\r\nHELO injected\r\n"
#: a pattern that never matches: read until the server closes
CLOSED = rb"(?!)"
#: seconds a socket read may wait before the test fails (a bound, not a measurement)
WAIT = 20


def write_pair(directory, hostname="mx.example.org"):
    """A valid self-signed pair at qpsmtpd's default names in ``directory``; (cert, key)."""
    cert = os.path.join(directory, "qpsmtpd-server.crt")
    key = os.path.join(directory, "qpsmtpd-server.key")
    write_self_signed(cert, key, hostname)
    return cert, key


def write_expired(cert_path, key_path):
    """A self-signed certificate that expired yesterday, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old.example.org")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    os.makedirs(os.path.dirname(cert_path), exist_ok=True)
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


class StartupTests(unittest.TestCase):
    """The certificate is checked when the plugin loads; problems name the file."""

    def pair_files(self):
        """The texts of a valid pair, as ``make_server`` files at qpsmtpd's default names."""
        cert, key = write_pair(os.path.abspath(self.mktemp()))
        with open(cert) as c, open(key) as k:
            return {"ssl/qpsmtpd-server.crt": c.read(), "ssl/qpsmtpd-server.key": k.read()}

    def test_default_paths_and_ehlo(self):
        """``tls`` alone finds config/ssl/; EHLO offers STARTTLS (last line); HELO does not."""
        server = make_server(self, ["tls", "rcpt_ok"], self.pair_files())
        self.assertIs(server.chain.tls, loaded_plugin(server, "tls").server_tls)
        self.assertEqual(server.chain.tls.cert_path, os.path.join(
            server.config.config_dir, "ssl", "qpsmtpd-server.crt"))
        client = MemoryClient(server)
        self.assertTrue(client.command("EHLO client.example").endswith("250 STARTTLS\r\n"))
        self.assertNotIn("STARTTLS", client.command("RSET") + client.command("HELO client.example"))

    def test_missing_default_certificate(self):
        message = assertStartupError(self, ["tls"], "qpsmtpd-server.crt")
        self.assertIn("cannot read the TLS certificate", message)

    def test_expired_certificate(self):
        directory = os.path.abspath(self.mktemp())
        cert, key = os.path.join(directory, "old.crt"), os.path.join(directory, "old.key")
        write_expired(cert, key)
        assertStartupError(self, ["tls %s %s" % (cert, key)],
                           ["the TLS certificate %s expired" % cert])

    def test_key_not_matching(self):
        directory = os.path.abspath(self.mktemp())
        cert, _ = write_pair(os.path.join(directory, "a"))
        _, other_key = write_pair(os.path.join(directory, "b"))
        assertStartupError(self, ["tls %s %s" % (cert, other_key)],
                           "the TLS key %s does not belong to the certificate %s"
                           % (other_key, cert))

    def test_named_ca_must_exist(self):
        directory = os.path.abspath(self.mktemp())
        cert, key = write_pair(directory)
        missing = os.path.join(directory, "ca.crt")
        assertStartupError(self, ["tls %s %s %s" % (cert, key, missing)],
                           "cannot read the TLS CA file %s" % missing)

    def test_bad_tls_protocols_line(self):
        directory = os.path.abspath(self.mktemp())
        cert, key = write_pair(directory)
        assertStartupError(self, ["tls %s %s" % (cert, key)], ["tls_protocols:1",
                                                              "unknown TLS protocol 'TLSv9'"],
                           files={"tls_protocols": "TLSv9"})

    def test_bad_ciphers(self):
        directory = os.path.abspath(self.mktemp())
        cert, key = write_pair(directory)
        assertStartupError(self, ["tls %s %s" % (cert, key)], ["tls_ciphers:1",
                                                              "no usable cipher"],
                           files={"tls_ciphers": "NO-SUCH-CIPHER"})

    def test_starttls_without_plugin_is_unrecognized(self):
        client = MemoryClient(make_server(self, ["rcpt_ok"]))
        client.command("EHLO client.example")
        self.assertEqual(client.command("STARTTLS"), "500 Unrecognized command\r\n")


class AuthBeforeTLSTests(unittest.TestCase):
    """``tls_before_auth``: AUTH neither offered nor accepted before TLS (default with tls)."""

    def ehlo(self, plugins, files):
        files = dict(files, flat_auth_pw="u@example.com:secret")
        client = MemoryClient(make_server(self, plugins + ["auth/auth_flat_file"], files))
        return client, client.command("EHLO client.example")

    def test_default_with_tls(self):
        client, reply = self.ehlo(["tls"], StartupTests.pair_files(self))
        self.assertNotIn("AUTH", reply)
        self.assertEqual(client.command("AUTH PLAIN AHVAZXhhbXBsZS5jb20Ac2VjcmV0"),
                         "530 5.7.0 Must issue a STARTTLS command first\r\n")

    def test_turned_off_with_tls(self):
        files = dict(StartupTests.pair_files(self), tls_before_auth="0")
        client, reply = self.ehlo(["tls"], files)
        self.assertTrue(reply.endswith("250-STARTTLS\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n"))

    def test_set_without_tls_means_no_auth(self):
        """0.94 offered AUTH here (its test is inverted); the name says: only over TLS."""
        client, reply = self.ehlo([], {"tls_before_auth": "1"})
        self.assertNotIn("AUTH", reply)

    def test_default_without_tls(self):
        client, reply = self.ehlo([], {})
        self.assertIn("AUTH ", reply)


class ProtocolParsingTests(unittest.TestCase):
    """``tls_protocols`` in qpsmtpd's syntax → the (min, max) versions."""

    def lines(self, text):
        return [ConfigLine(text, "tls_protocols", 1)]

    def test_default_is_tls12(self):
        import OpenSSL.SSL as S
        self.assertEqual(parse_protocols([]), (S.TLS1_2_VERSION, 0))

    def test_qpsmtpd_head_default_allows_tls1(self):
        import OpenSSL.SSL as S
        self.assertEqual(parse_protocols(self.lines("SSLv23:!SSLv2:!SSLv3")),
                         (S.TLS1_VERSION, S.TLS1_3_VERSION))

    def test_only_tls13(self):
        import OpenSSL.SSL as S
        self.assertEqual(parse_protocols(self.lines("!TLSv1:!TLSv1_1:!TLSv1_2")),
                         (S.TLS1_3_VERSION, S.TLS1_3_VERSION))

    def test_gap_is_an_error(self):
        with self.assertRaises(PluginError):
            parse_protocols(self.lines("TLSv1:TLSv1_3"))


def recv_until_closed_or(sock, pattern, limit=WAIT):
    """Read from ``sock`` until ``pattern`` (bytes regex) matches what was read or it closes."""
    sock.settimeout(limit)
    data = b""
    while not re.search(pattern, data):
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    return data


def plain_socket_after_starttls(testcase, port):
    """A plain socket to 127.0.0.1:``port`` that has said EHLO and STARTTLS and read the 220
    (checked): the caller does the handshake, its own way."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    testcase.addCleanup(sock.close)
    recv_until_closed_or(sock, rb"\r\n")
    sock.sendall(b"EHLO client.example\r\n")
    recv_until_closed_or(sock, rb"250 [^\r\n]*\r\n$")
    sock.sendall(b"STARTTLS\r\n")
    testcase.assertEqual(recv_until_closed_or(sock, rb"\r\n"), b"220 Go ahead with TLS\r\n")
    return sock


def swaks(testcase, port, tls_option, maildir):
    """Send one message with ``swaks TLS_OPTION`` (``--tls``, ``--tlsc``); check it arrived;
    return swaks' output."""
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(port), tls_option,
         "--from", "a@b.example", "--to", "u@example.com", "--helo", "client.example"],
        capture_output=True, timeout=WAIT)
    testcase.assertEqual(result.returncode, 0, result.stdout + result.stderr)
    testcase.assertEqual(len(os.listdir(os.path.join(maildir, "new"))), 1)
    return result.stdout


def delivered(maildir):
    """The one message in ``maildir``."""
    new = os.path.join(maildir, "new")
    [name] = os.listdir(new)
    with open(os.path.join(new, name), "rb") as f:
        return f.read()


def client_context():
    """A client TLS context that accepts the test's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class STARTTLSTests(unittest.TestCase):
    """A real twistd with the tls plugin; real clients."""

    extra_files = {}

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.maildir = os.path.join(self.dir, "maildir")
        config = os.path.join(self.dir, "config")
        files = {"flat_auth_pw": "u@example.com:secret", "command_deadline": "3",
                 "loglevel": "LOGINFO"}
        files.update(self.extra_files)
        write_config(config, ["tls", "auth/auth_flat_file", "rcpt_ok",
                              "queue/maildir %s" % self.maildir], files)
        self.cert, self.key = write_pair(os.path.join(config, "ssl"))
        # the self-signed server certificate is also the CA that client certificates need
        shutil.copy(self.cert, os.path.join(config, "ssl", "qpsmtpd-ca.crt"))
        _, self.port, self.log = start_twistd(self, config)

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.addCleanup(sock.close)
        self.assertTrue(recv_until_closed_or(sock, rb"\r\n$").startswith(b"220 "))
        return sock

    def ehlo(self, sock):
        sock.sendall(b"EHLO client.example\r\n")
        return recv_until_closed_or(sock, rb"250 [^\r\n]*\r\n$")

    def assertServing(self):
        """A new client still gets the greeting and STARTTLS."""
        sock = self.connect()
        self.assertIn(b"250-STARTTLS", self.ehlo(sock).replace(b"250 STARTTLS", b"250-STARTTLS"))

    def test_smtplib_starttls_and_received(self):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=WAIT) as client:
            code, text = client.ehlo("client.example")
            self.assertIn(b"STARTTLS", text)
            self.assertNotIn(b"AUTH", text)        # tls_before_auth: on with the tls plugin
            self.assertEqual(client.docmd("AUTH PLAIN AHVAZXhhbXBsZS5jb20Ac2VjcmV0"),
                             (530, b"5.7.0 Must issue a STARTTLS command first"))
            self.assertEqual(client.starttls(context=client_context())[0], 220)
            # RFC 3207 4.2: the HELO is forgotten; EHLO again gives no STARTTLS, but AUTH
            self.assertEqual(client.docmd("MAIL FROM:<a@b.example>")[0], 503)
            code, text = client.ehlo("client.example")
            self.assertNotIn(b"STARTTLS", text)
            self.assertIn(b"AUTH", text)
            self.assertEqual(client.docmd("STARTTLS"), (503, b"5.5.1 TLS already active"))
            client.login("u@example.com", "secret")
            client.sendmail("a@b.example", ["u@example.com"], b"Subject: t\r\n\r\nbody\r\n")
        self.assertRegex(delivered(self.maildir), rb"\n by mx\.example\.org \(qpsmtpd-tx/[0-9.]+\) "
                                                  rb"with \(TLS_[A-Z0-9_]+ encrypted\) ESMTPSA; ")

    def test_helo_on_tls_is_smtp_with_the_cipher(self):
        """As qpsmtpd: the S (and A) of RFC 3848 only after EHLO; the cipher is noted anyway."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=WAIT) as client:
            client.ehlo("client.example")
            client.starttls(context=client_context())
            client.helo("client.example")
            client.sendmail("a@b.example", ["u@example.com"], b"Subject: t\r\n\r\nbody\r\n")
        self.assertRegex(delivered(self.maildir), rb"\) with \(TLS_[A-Z0-9_]+ encrypted\) SMTP; ")

    def test_injection_at_every_split_point(self):
        """``STARTTLS\\r\\nHELO injected\\r\\n`` split anywhere: the HELO is never answered."""
        for cut in range(1, len(INJECTION) + 1):
            sock = self.connect()
            self.ehlo(sock)
            sock.sendall(INJECTION[:cut])
            if cut < len(INJECTION):
                sock.sendall(INJECTION[cut:])
            first = recv_until_closed_or(sock, rb"\r\n")
            self.assertIn(first[:4], (b"220 ", b"421 "), (cut, first))
            if cut == len(INJECTION):      # one write: the server reads it at once
                self.assertEqual(first[:4], b"421 ")
            if first.startswith(b"421 "):
                self.assertEqual(first, b"421 4.5.0 Commands sent after STARTTLS before its "
                                        b"reply; closing\r\n")
                self.assertEqual(recv_until_closed_or(sock, CLOSED), b"", cut)
                continue
            # 220: the rest went to the TLS layer as plain text; whatever the handshake gives,
            # no 250 ever comes back, in plain text or inside TLS.
            try:
                tls = client_context().wrap_socket(sock)
            except (ssl.SSLError, OSError):
                continue
            rest = recv_until_closed_or(tls, rb"250")
            self.assertNotIn(b"250", rest, cut)
        self.assertServing()

    def test_injection_pipelined_with_ehlo(self):
        """PIPELINING: EHLO, STARTTLS and a command in one write: EHLO answered, then 421."""
        sock = self.connect()
        sock.sendall(b"EHLO client.example\r\n" + INJECTION)
        data = recv_until_closed_or(sock, CLOSED)
        self.assertRegex(data, rb"(?s)^250-mx\.example\.org Hi .*\r\n250 STARTTLS\r\n421 4\.5\.0 ")
        self.assertNotIn(b"injected", data)

    def test_refusals(self):
        sock = self.connect()
        sock.sendall(b"STARTTLS\r\n")
        self.assertEqual(recv_until_closed_or(sock, rb"\r\n"), b"503 please say hello first ...\r\n")
        self.ehlo(sock)
        sock.sendall(b"STARTTLS now\r\n")
        self.assertEqual(recv_until_closed_or(sock, rb"\r\n"),
                         b"501 Syntax error (no parameters allowed)\r\n")
        sock.sendall(b"MAIL FROM:<a@b.example>\r\n")
        recv_until_closed_or(sock, rb"\r\n")
        sock.sendall(b"STARTTLS\r\n")
        self.assertEqual(recv_until_closed_or(sock, rb"\r\n"),
                         b"503 5.5.1 MAIL transaction in progress\r\n")

    def test_garbage_instead_of_client_hello(self):
        sock = self.connect()
        self.ehlo(sock)
        sock.sendall(b"STARTTLS\r\n")
        self.assertEqual(recv_until_closed_or(sock, rb"\r\n"), b"220 Go ahead with TLS\r\n")
        sock.sendall(b"this is not a ClientHello\r\n" * 4)
        data = recv_until_closed_or(sock, CLOSED)
        self.assertNotIn(b"250", data)
        self.assertServing()
        with open(self.log, "rb") as f:
            self.assertNotIn(b"Traceback", f.read())

    def test_handshake_that_never_completes(self):
        """The handshake has command_deadline (3 s here): then the server closes."""
        sock = self.connect()
        self.ehlo(sock)
        sock.sendall(b"STARTTLS\r\n")
        self.assertEqual(recv_until_closed_or(sock, rb"\r\n"), b"220 Go ahead with TLS\r\n")
        self.assertEqual(recv_until_closed_or(sock, CLOSED), b"")
        with open(self.log, "rb") as f:
            self.assertIn(b"TLS handshake not complete within 3 s, closing", f.read())

    def test_client_certificate_subject_is_noted(self):
        """With a CA file the server asks for a client certificate; its subject is logged and
        noted (``tls_client_subject``)."""
        directory = os.path.abspath(self.mktemp())
        stranger = write_pair(directory, "client.example")
        for (cert, key), subject in ((stranger, b"/CN=client.example (not verified)"),
                                     ((self.cert, self.key), b"/CN=mx.example.org (verified)")):
            context = client_context()
            context.load_cert_chain(cert, key)
            with smtplib.SMTP("127.0.0.1", self.port, timeout=WAIT) as client:
                client.ehlo("client.example")
                client.starttls(context=context)
                client.ehlo("client.example")
            with open(self.log, "rb") as f:
                self.assertIn(b"TLS client certificate " + subject, f.read())

    def test_openssl_s_client(self):
        result = subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % self.port,
             "-quiet", "-nocommands"], input=b"EHLO client.example\r\nQUIT\r\n",
            capture_output=True, timeout=WAIT)
        self.assertIn(b"250-mx.example.org Hi", result.stdout)
        self.assertIn(b"AUTH", result.stdout)
        self.assertIn(b"221 ", result.stdout)

    def test_swaks_tls(self):
        self.assertIn(b"TLS started", swaks(self, self.port, "--tls", self.maildir))


class SMTPSTests(unittest.TestCase):
    """``--listen-tls``: TLS from the first byte (RFC 8314), the same plugins and certificate."""

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.maildir = os.path.join(self.dir, "maildir")
        self.config = os.path.join(self.dir, "config")
        write_config(self.config, ["tls", "auth/auth_flat_file", "rcpt_ok",
                                   "queue/maildir %s" % self.maildir],
                     {"flat_auth_pw": "u@example.com:secret", "loglevel": "LOGINFO"})
        write_pair(os.path.join(self.config, "ssl"))
        self.smtps = reserve_port(self)
        _, self.port, self.log = start_twistd(
            self, self.config, extra=["--listen-tls", "tcp:%d:interface=127.0.0.1" % self.smtps])

    def test_smtplib_smtp_ssl(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.smtps, timeout=WAIT,
                              context=client_context()) as client:
            code, text = client.ehlo("client.example")
            self.assertNotIn(b"STARTTLS", text)
            self.assertIn(b"AUTH", text)
            client.login("u@example.com", "secret")
            client.sendmail("a@b.example", ["u@example.com"], b"Subject: t\r\n\r\nbody\r\n")
        self.assertRegex(delivered(self.maildir), rb"\) with \(TLS_[A-Z0-9_]+ encrypted\) ESMTPSA; ")
        # the plain port beside it still offers STARTTLS
        with smtplib.SMTP("127.0.0.1", self.port, timeout=WAIT) as client:
            self.assertIn(b"STARTTLS", client.ehlo("client.example")[1])

    def test_swaks_tlsc(self):
        swaks(self, self.smtps, "--tlsc", self.maildir)

    def test_plain_text_on_the_smtps_port(self):
        """A client speaking SMTP to the SMTPS port gets no SMTP reply and is closed."""
        sock = socket.create_connection(("127.0.0.1", self.smtps), timeout=WAIT)
        self.addCleanup(sock.close)
        sock.sendall(b"EHLO client.example\r\n")
        self.assertNotIn(b"250", recv_until_closed_or(sock, CLOSED))
        with smtplib.SMTP_SSL("127.0.0.1", self.smtps, timeout=WAIT,
                              context=client_context()) as client:
            self.assertEqual(client.noop()[0], 250)
        log = read_text(self.log)
        self.assertIn("TLS handshake failed", log)
        self.assertNotIn("Traceback", log)

    def test_no_disconnect_hooks_for_a_session_that_never_started(self):
        """A connection lost before its SMTPS handshake ran no connect hook: nor disconnect."""
        write_config(self.config, ["connection_hooks", "tls", "rcpt_ok"],
                     {"plugin_dirs": TEST_PLUGINS, "loglevel": "LOGINFO"})
        write_pair(os.path.join(self.config, "ssl"))
        smtps = reserve_port(self)
        _, _, log = start_twistd(
            self, self.config, extra=["--listen-tls", "tcp:%d:interface=127.0.0.1" % smtps])
        sock = socket.create_connection(("127.0.0.1", smtps), timeout=WAIT)
        sock.sendall(b"EHLO client.example\r\n")        # no ClientHello
        recv_until_closed_or(sock, CLOSED)
        sock.close()
        with smtplib.SMTP_SSL("127.0.0.1", smtps, timeout=WAIT,
                              context=client_context()) as client:
            self.assertEqual(client.noop()[0], 250)
        # three sessions: start_twistd's readiness check, the failed handshake, the good one
        self.assertTrue(poll_until(lambda: read_text(log).count("cleaning up after") == 3,
                                   WAIT, 0.05), read_text(log))
        counts = [read_text(log).count("connection hook %s ran" % hook)
                  for hook in ("connect", "disconnect", "post-connection")]
        self.assertEqual(counts, [2, 2, 2], read_text(log))

    def test_workers_serve_smtps(self):
        """With --workers, the workers adopt the SMTPS sockets too, with TLS at connect."""
        port, smtps = reserve_port(self), reserve_port(self)
        log_path = os.path.abspath(self.mktemp() + ".log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                twistd_argv(self.config, port, ["--workers", "3", "--listen-tls",
                                                "tcp:%d:interface=127.0.0.1" % smtps]),
                cwd=CHECKOUT, env=server_env(), stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(stop_process, process)
        self.assertTrue(poll_until(lambda: read_text(log_path).count("serving") == 2, WAIT, 0.05),
                        read_text(log_path))
        for _ in range(6):
            with smtplib.SMTP_SSL("127.0.0.1", smtps, timeout=WAIT,
                                  context=client_context()) as client:
                self.assertEqual(client.noop()[0], 250)
        self.assertNotIn("cannot start", read_text(log_path))

    def test_needs_the_tls_plugin(self):
        write_config(self.config, ["rcpt_ok"])
        port = free_port()
        result = subprocess.run(
            twistd_argv(self.config, free_port(), ["--listen-tls",
                                                   "tcp:%d:interface=127.0.0.1" % port]),
            cwd=CHECKOUT, env=server_env(), capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"--listen-tls needs the tls plugin", result.stdout + result.stderr)


def peer_name(client):
    """The common name in the certificate the server showed ``client`` (an smtplib.SMTP)."""
    der = client.sock.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def starttls_client(testcase, port):
    """An smtplib client that has said EHLO on TLS (closed at the test's end)."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=WAIT)
    testcase.addCleanup(client.close)
    client.ehlo("client.example")
    client.starttls(context=client_context())
    client.ehlo("client.example")
    return client


class CertificateReloadTests(unittest.TestCase):
    """SIGHUP loads a new certificate for new connections; a broken one keeps the old."""

    def starttls_client(self):
        return starttls_client(self, self.port)

    def log_count(self, text):
        with open(self.log, "rb") as f:
            return f.read().count(text)

    def test_sighup(self):
        config = os.path.abspath(self.mktemp())
        write_config(config, ["tls", "rcpt_ok"], {"loglevel": "LOGINFO"})
        ssl_dir = os.path.join(config, "ssl")
        write_pair(ssl_dir, "one.example.org")
        process, self.port, self.log = start_twistd(self, config)
        old = self.starttls_client()
        self.assertEqual(peer_name(old), "one.example.org")

        write_pair(ssl_dir, "two.example.org")
        process.send_signal(signal.SIGHUP)
        self.assertTrue(poll_until(lambda: self.log_count(b"plugins reloaded") == 1, WAIT, 0.02))
        self.assertEqual(peer_name(self.starttls_client()), "two.example.org")
        self.assertEqual(old.noop()[0], 250)      # the TLS session in progress goes on

        # a key that does not belong to the certificate: logged with the file, old pair stays
        _, stray_key = write_pair(os.path.join(config, "stray"))
        shutil.copy(stray_key, os.path.join(ssl_dir, "qpsmtpd-server.key"))
        process.send_signal(signal.SIGHUP)
        self.assertTrue(poll_until(lambda: self.log_count(b"reload failed") == 1, WAIT, 0.02))
        self.assertEqual(self.log_count(
            ("the TLS key %s does not belong" % os.path.join(ssl_dir, "qpsmtpd-server.key"))
            .encode()), 1)
        self.assertEqual(peer_name(self.starttls_client()), "two.example.org")


class TLSCertCommandTests(unittest.TestCase):
    """``qpsmtpd-tx tls-cert`` writes a pair the tls plugin then uses."""

    def test_writes_where_the_plugin_looks(self):
        config = os.path.abspath(self.mktemp())
        write_config(config, ["tls", "rcpt_ok"])
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(cli.main(["tls-cert", "--config", config], out, err), 0, err.getvalue())
        key = os.path.join(config, "ssl", "qpsmtpd-server.key")
        self.assertIn(key, out.getvalue())
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        # a second run keeps the pair
        self.assertEqual(cli.main(["tls-cert", "--config", config], out, err), 1)
        self.assertIn("--force replaces it", err.getvalue())
        _, port, _ = start_twistd(self, config)
        client = starttls_client(self, port)
        self.assertEqual(peer_name(client), "mx.example.org")     # the config's me


class SNITests(unittest.TestCase):
    """A directory of NAME.crt/NAME.key pairs: the certificate for the name the client asks."""

    def test_certificate_by_server_name(self):
        config = os.path.abspath(self.mktemp())
        write_config(config, ["tls", "rcpt_ok"])
        write_pair(os.path.join(config, "ssl"), "default.example.org")
        sni = os.path.join(config, "ssl", "sni")
        for name in ("mail.example.com", "mx.example.net"):
            cert, key = write_pair(os.path.join(self.mktemp()), name)
            os.makedirs(sni, exist_ok=True)
            shutil.copy(cert, os.path.join(sni, name + ".crt"))
            shutil.copy(key, os.path.join(sni, name + ".key"))
        _, port, _ = start_twistd(self, config)
        for asked, shown in (("mail.example.com", "mail.example.com"),
                             ("MX.example.net.", "mx.example.net"),
                             ("other.example.org", "default.example.org"),
                             (None, "default.example.org")):
            client = smtplib.SMTP("127.0.0.1", port, timeout=WAIT)
            self.addCleanup(client.close)
            client.ehlo("client.example")
            client._host = asked        # smtplib sends its _host as the SNI name (None: none)
            client.starttls(context=client_context())
            self.assertEqual(peer_name(client), shown, asked)

    def test_certificate_without_key(self):
        directory = os.path.abspath(self.mktemp())
        cert, key = write_pair(directory)
        sni = os.path.join(directory, "sni")
        os.makedirs(sni)
        shutil.copy(cert, os.path.join(sni, "a.example.com.crt"))
        assertStartupError(self, ["tls %s %s" % (cert, key)],
                           "has no key %s" % os.path.join(sni, "a.example.com.key"),
                           files={"tls_sni_dir": sni})

    def test_tls_sni_dir_must_exist(self):
        directory = os.path.abspath(self.mktemp())
        cert, key = write_pair(directory)
        assertStartupError(self, ["tls %s %s" % (cert, key)], ["tls_sni_dir:1", "not a directory"],
                           files={"tls_sni_dir": os.path.join(directory, "nowhere")})


class PostfixClientTests(unittest.TestCase):
    """The suite's private Postfix relays to qpsmtpd-tx with ``smtp_tls_security_level =
    encrypt``: it must get STARTTLS, and the message arrives with the TLS Received line."""

    def test_postfix_relays_over_starttls(self):
        from tests.support.postfix import start_relaying_postfix
        config = os.path.abspath(self.mktemp())
        maildir = os.path.join(config, "maildir")
        write_config(config, ["tls", "rcpt_ok", "queue/maildir %s" % maildir])
        write_pair(os.path.join(config, "ssl"))
        _, port, _ = start_twistd(self, config)
        postfix = start_relaying_postfix(self, port, smtp_tls_security_level="encrypt",
                                         smtp_tls_loglevel="1")
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=WAIT) as client:
            client.sendmail("a@b.example", ["u@example.com"], b"Subject: relayed\r\n\r\nbody\r\n")
        self.assertTrue(poll_until(lambda: os.path.isdir(os.path.join(maildir, "new"))
                                   and os.listdir(os.path.join(maildir, "new")), WAIT, 0.05),
                        postfix.maillog()[-3000:])
        message = delivered(maildir)
        self.assertRegex(message, rb"Received: from [^\n]* \(HELO postfix\.test\) \(127\.0\.0\.1\)\n"
                                  rb" by mx\.example\.org \(qpsmtpd-tx/[0-9.]+\) with \(TLS_"
                                  rb"[A-Z0-9_]+ encrypted\) ESMTPS; ")
        self.assertIn(b"Subject: relayed", message)
        self.assertIn("TLS connection established to 127.0.0.1", postfix.maillog())
