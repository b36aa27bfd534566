"""STARTTLS after a successful AUTH (RFC 3207 4.2): allowed, and the AUTH is forgotten.

A real ``twistd qpsmtpd-tx`` with ``tls``, ``auth/auth_flat_file`` and ``tls_before_auth 0``
(so AUTH is offered in plain text), and Python's smtplib as the client.
"""

import os
import shutil
import smtplib

from twisted.trial import unittest

from tests.plugins.test_tls import WAIT, client_context, delivered, write_pair
from tests.support.harness import write_config
from tests.support.processes import start_twistd

USER, PASSWORD = "u@example.com", "secret"


class STARTTLSAfterAUTHTests(unittest.TestCase):
    """AUTH in plain text, then STARTTLS: 220, and the session is no longer authenticated."""

    def start(self, plugins=(), files=None):
        """A server with ``plugins`` before tls, auth and rcpt_ok; its maildir and port."""
        directory = os.path.abspath(self.mktemp())
        maildir = os.path.join(directory, "maildir")
        config = os.path.join(directory, "config")
        settings = {"flat_auth_pw": "%s:%s" % (USER, PASSWORD), "tls_before_auth": "0",
                    "auth_failure_delay": "0"}
        settings.update(files or {})
        write_config(config, list(plugins) + ["tls", "auth/auth_flat_file", "rcpt_ok",
                                              "queue/maildir %s" % maildir], settings)
        write_pair(os.path.join(config, "ssl"))
        _, port, _ = start_twistd(self, config)
        return maildir, port

    def authenticated_client(self, port):
        """An smtplib client that said EHLO and AUTH in plain text (closed at the test's end)."""
        client = smtplib.SMTP("127.0.0.1", port, timeout=WAIT)
        self.addCleanup(client.close)
        code, text = client.ehlo("client.example")
        self.assertIn(b"AUTH", text)
        self.assertIn(b"STARTTLS", text)
        self.assertEqual(client.login(USER, PASSWORD)[0], 235)
        return client

    def test_starttls_after_auth_forgets_it(self):
        maildir, port = self.start()
        client = self.authenticated_client(port)
        self.assertEqual(client.starttls(context=client_context())[0], 220)
        # HELO forgotten; after the new EHLO, AUTH is offered again
        self.assertEqual(client.docmd("MAIL FROM:<a@b.example>")[0], 503)
        code, text = client.ehlo("client.example")
        self.assertIn(b"AUTH PLAIN", text)
        # the relaying that AUTH allowed is gone with it
        client.docmd("MAIL FROM:<a@b.example>")
        self.assertEqual(client.docmd("RCPT TO:<someone@elsewhere.example>"),
                         (550, b"Relaying denied (#5.7.1)"))
        client.docmd("RSET")
        # a local recipient still works; the message is not marked as authenticated
        client.sendmail("a@b.example", ["u@example.com"], b"Subject: t\r\n\r\nbody\r\n")
        received = delivered(maildir)
        self.assertRegex(received, rb"encrypted\) ESMTPS; ")
        self.assertNotIn(b"smtp-auth", received)
        shutil.rmtree(os.path.join(maildir, "new"))
        os.makedirs(os.path.join(maildir, "new"))
        # AUTH again on TLS: not "already said AUTH"; the message is then ESMTPSA
        self.assertEqual(client.login(USER, PASSWORD)[0], 235)
        client.sendmail("a@b.example", ["someone@elsewhere.example"],
                        b"Subject: t\r\n\r\nbody\r\n")
        self.assertRegex(delivered(maildir), rb"encrypted\) ESMTPSA; ")

    def test_relay_client_by_address_is_kept(self):
        """relay_client set at connect (the relay plugin) is not AUTH's: it stays after TLS."""
        _, port = self.start(["relay"], {"relayclients": "127.0.0.1"})
        client = self.authenticated_client(port)
        client.starttls(context=client_context())
        client.ehlo("client.example")
        client.docmd("MAIL FROM:<a@b.example>")
        self.assertEqual(client.docmd("RCPT TO:<someone@elsewhere.example>")[0], 250)
