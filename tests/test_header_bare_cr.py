"""A CR not followed by LF inside a header field stays inside that field (RFC 5322 section
2.2: only CRLF ends a line). The header was split at it, so that ``X-A: one<CR>Subject:
evil`` became two fields: a Subject field plugins saw and the queue wrote with a line end of
its own, which the sender's header never had; and the dkim plugin could not read the
header at all (tests/test_dkim_differential.py found it against dkimpy)."""

import base64
import os

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial import unittest

from qpsmtpd_tx.dns.resolver import Answer
from qpsmtpd_tx.message import Header
from qpsmtpd_tx.testing import MemoryClient, capture_queue_notes, make_server

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture_plugins")
SMUGGLED = b"X-A: one\rSubject: evil\r\nSubject: real\r\nFrom: a@example.org\r\n"


def send(server, message):
    """Send ``message`` (CRLF, no dot line in it) in one transaction; the reply."""
    client = MemoryClient(server)
    for line in ("HELO client.example", "MAIL FROM:<a@example.org>",
                 "RCPT TO:<b@example.com>", "DATA"):
        client.command(line)
    reply = client.send(message + b".\r\n")
    return client, reply


class HeaderParseTests(unittest.TestCase):
    """Header.parse on its own."""

    def test_a_bare_cr_does_not_end_the_field(self):
        block = SMUGGLED.replace(b"\r\n", b"\n")
        header = Header.parse(block)
        self.assertEqual([name for name, _ in header.fields], ["X-A", "Subject", "From"])
        self.assertEqual(header.get("Subject"), ["real"])
        self.assertEqual(header.as_bytes(), block)


class QueuedTests(unittest.TestCase):
    """Through a real server's session: what is queued, what the dkim plugin checks."""

    def test_the_queued_header_is_the_one_sent(self):
        server = make_server(self, ["rcpt_ok", "scripted queue OK"], plugin_dirs=[FIXTURES])
        client, reply = send(server, SMUGGLED + b"\r\nbody\r\n")
        self.assertEqual(reply, "250 Queued\r\n")
        queued = client.session.connection.notes["scripted_message"]
        self.assertIn(b"\nX-A: one\rSubject: evil\nSubject: real\n", queued)

    def test_a_signed_field_with_a_bare_cr_is_checked(self):
        """dkimpy signs the field with its CR; the dkim plugin checks it (it said dkim=none:
        header not parsed)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        p = base64.b64encode(key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        message = SMUGGLED + b"\r\nbody\r\n"
        field = dkim.sign(message, b"sel", b"example.org", pem,
                          include_headers=[b"from", b"x-a", b"subject"])
        server = make_server(self, ["rcpt_ok", "dkim", "scripted queue OK"],
                             {"dns_servers": "127.0.0.1:9"}, plugin_dirs=[FIXTURES])
        name = "sel._domainkey.example.org"
        server.resolver.cache.put((name, "TXT"), Answer(
            name, "TXT", ["v=DKIM1; p=" + p.decode()], 60), 60)
        results = capture_queue_notes(server, "authentication_results")
        _, reply = send(server, field + message)
        self.assertEqual(reply, "250 Queued\r\n")
        [entries] = results
        self.assertTrue(entries[-1].startswith("dkim=pass "), entries)
