"""Plugins reading a config item at each use (``flat_auth_pw`` at AUTH, ``dnsbl_allow`` at each
connection, ``spfbehavior``, ``subject_prefix``) and its file cannot be read (a ConfigError:
here a circular ``$include``; a file the server's user may not read is the same case): at
start-up that stops the server with the file and line, not at the first use; after a SIGHUP
(the config read again), the lines read before stay and it is logged once, not as a plugin
crash with a traceback at every use (``flat_auth_pw`` instead accepts no login meanwhile:
its previous lines could hold a revoked password). A real server, AUTH sessions over MemoryClient; the
rcpt_notes/sql query over a real SQLite database."""

import base64
import os

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.address import Address
from tests.plugins.test_rcpt_notes_sql import DEFAULT_WITH
from tests.support.rcpt_notes_cases import FILTERS, create_sqlite
from tests.support.harness import (MemoryClient, StartupErrorMixin, capture_log,
                                   make_server)

#: sessions run while the file is broken
SESSIONS = 20


def auth_plain(user, password):
    return "AUTH PLAIN " + base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()


class UnreadableItemTests(StartupErrorMixin, unittest.TestCase):
    def test_a_circular_include_stops_start_up(self):
        for plugin, name in (("auth/auth_flat_file", "flat_auth_pw"), ("dnsbl", "dnsbl_allow"),
                             ("dnsbl", "dnsbl_rejectmsg"),
                             ("sender_permitted_from", "spfbehavior"),
                             ("spamassassin", "subject_prefix")):
            message = self.assertStartupError([plugin], "circular $include",
                                              {name: "$include %s" % name})
            self.assertIn("%s:1: circular $include" % name, message)
            self.assertNotIn("Traceback", message)

    def test_flat_auth_pw_broken_after_start_up(self):
        server = make_server(self, ["auth/auth_flat_file", "rcpt_ok"],
                             {"flat_auth_pw": "u@example.org:secret\n",
                              "auth_failure_delay": "0"})
        log = capture_log(self, server)
        crashes = []

        def observe(event):
            text = formatEvent(event)
            if "FATAL PLUGIN ERROR" in text:
                crashes.append(text)
        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

        def auth(password):
            client = MemoryClient(server)
            client.command("EHLO c.example")
            reply = client.command(auth_plain("u@example.org", password))[:3]
            client.command("QUIT")
            return reply

        self.assertEqual(auth("secret"), "235")
        path = os.path.join(server.config.config_dir, "flat_auth_pw")
        with open(path, "w") as f:
            f.write("u@example.org:new\n$include flat_auth_pw\n")
        server.config.clear_cache()             # as SIGHUP does
        for _ in range(SESSIONS):
            # no login while the file cannot be read: the edit may have revoked this one
            self.assertEqual((auth("secret"), auth("new")), ("535", "535"))
        errors = [m for level, m in log if level <= codes.LOGERROR]
        self.assertEqual((len(errors), crashes), (1, []), log)
        self.assertIn("no login accepted, flat_auth_pw cannot be read: %s:2: circular $include"
                      % path, errors[0])
        with open(path, "w") as f:
            f.write("u@example.org:new\n")
        server.config.clear_cache()
        self.assertEqual((auth("new"), auth("secret")), ("235", "535"))


class SqlQueryItemTests(unittest.TestCase):
    """rcpt_notes/sql's ``query`` config item (read at start-up and again after SIGHUP)
    broken after start-up: the query before stays, logged once."""

    async def test_a_broken_query_item_keeps_the_query(self):
        db = create_sqlite(os.path.abspath(self.mktemp()))
        server = make_server(self, ["rcpt_notes/sql database %s query q" % db] + FILTERS,
                             {"q": DEFAULT_WITH("settings")})
        self.addCleanup(server.stop_plugins)
        log = capture_log(self, server)
        path = server.config.path_of("q")
        with open(path, "w") as f:
            f.write("$include q\n")
        server.reload_config()
        for _ in range(3):
            recipient = Address.parse("<alice@example.com>")
            await server.plugins[0].hook_rcpt(None, recipient, {})
            self.assertEqual(recipient.notes["test_threshold"], "3")
        errors = [m for level, m in log if level <= codes.LOGERROR]
        self.assertEqual(len(errors), 1, log)
        self.assertIn("keeping the previous q: %s:1: circular $include" % path, errors[0])
