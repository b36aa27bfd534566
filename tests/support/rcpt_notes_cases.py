"""What the tests of rcpt_notes/sql and rcpt_notes/ldap share: the data set every source holds
(:data:`ROWS`), the SQLite file holding it, and :class:`SourceTests`, the tests every source
passes with it (a subclass says how to reach its source); and :func:`module_suite`, which
stops a privately started server once a module's tests have run."""

import sqlite3
import sys

from twisted.trial.runner import TestLoader
from twisted.trial.unittest import TestSuite

from qpsmtpd_tx import codes
from qpsmtpd_tx.address import Address
from tests.support.harness import capture_log, make_server
from tests.support.server import connect, start_server
from tests.support.showcase import assert_three_thresholds

# The data every source holds: (pattern, settings, targets), as the aliases file would say
#   *                  test_threshold=9
#   @.example.org      test_action=reject
#   ...
ROWS = [
    ("*", "test_threshold=9", None),
    ("@.example.org", "test_action=reject", None),
    ("@example.com", "test_threshold=5 test_action=tag", None),
    ("alice@example.com", "test_threshold=3", None),
    ("bob@example.com", "test_action=", None),
    ("high@example.com", "test_threshold=10", None),
    ("sales@example.com", None, "bob@example.net"),
    ("team@example.com", "test_threshold=4", "alice@example.com, carol@example.com"),
    ("@old.example.com", None, "@example.com"),
    ("keep@old.example.com", "", ""),
]

SCHEMA = ("CREATE TABLE rcpt_notes (pattern VARCHAR(320) PRIMARY KEY, settings TEXT, "
          "targets TEXT)")

RCPTHOSTS = "example.com\nold.example.com\nexample.org\n.example.org\n"
FILTERS = ["threshold_filter", "rcpt_recorder", "rcpt_ok", "scripted queue OK"]
TEMPORARY = "450 4.3.0 Recipient settings are unavailable, try again later"


def create_sqlite(path, rows=ROWS, schema=SCHEMA):
    """An SQLite file holding ``rows`` in the rcpt_notes table; returns ``path``."""
    conn = sqlite3.connect(path)
    conn.execute(schema)
    conn.executemany("INSERT INTO rcpt_notes VALUES (?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


class SourceTests:
    """The tests every source passes with the same data; a subclass says how to reach it.

    Subclasses define ``plugin_line(**arguments)`` (the ``plugins`` line of a source holding
    :data:`ROWS`, with extra arguments), ``down_line()`` (a line whose source will not
    answer) and may define ``after_start()`` (called once the server is built).
    """

    def after_start(self):
        """Called after the server is built (e.g. to make the source go away)."""

    def server(self, line=None, plugins=FILTERS, files=None):
        contents = {"rcpthosts": RCPTHOSTS, "recipient_policy": "group"}
        contents.update(files or {})
        server = make_server(self, [line or self.plugin_line()] + list(plugins), contents)
        self.addCleanup(server.stop_plugins)
        self.after_start()
        return server

    async def session(self, line=None, plugins=FILTERS, files=None):
        # these cases show grouping (452 4.5.3): the policy that shows it
        contents = {"rcpthosts": RCPTHOSTS, "recipient_policy": "group"}
        contents.update(files or {})
        server, port = start_server(self, [line or self.plugin_line()] + list(plugins), contents)
        self.addCleanup(server.stop_plugins)
        self.after_start()
        self.logs = capture_log(self, server)
        client = await connect(self, port)
        self.assertEqual((await client.command("EHLO client.example"))[0], 250)
        self.assertEqual((await client.command("MAIL FROM:<s@sender.example>"))[0], 250)
        return server, client

    async def rcpt(self, client, address):
        """``"CODE last line"`` of the reply to RCPT TO:<address>."""
        code, lines = await client.command("RCPT TO:<%s>" % address)
        return "%d %s" % (code, lines[-1])

    async def send(self, server, client):
        """Send a message; the connection notes of the server-side session."""
        session = next(iter(server.sessions))
        self.assertEqual((await client.command("DATA"))[0], 354)
        code, lines = await client.command("Subject: x\r\n\r\nbody\r\n.")
        self.assertEqual(code, 250, lines)
        return session.connection.notes

    async def notes_of(self, plugin, address):
        """Call the plugin's RCPT hook for ``address``: ``(result, notes)``."""
        recipient = Address.parse("<%s>" % address)
        result = await plugin.hook_rcpt(None, recipient, {})
        return result, recipient.notes

    def errors(self):
        return [m for level, m in self.logs if level == codes.LOGERROR]

    # -- the tests --------------------------------------------------------------------------------

    async def test_precedence(self):
        server = self.server()
        plugin = server.plugins[0]
        expected = {
            "alice@example.com": {"test_threshold": "3", "test_action": "tag"},
            "Alice@Example.COM": {"test_threshold": "3", "test_action": "tag"},
            "bob@example.com": {"test_threshold": "5"},            # test_action= removes it
            "mid@example.com": {"test_threshold": "5", "test_action": "tag"},
            "x@a.b.example.org": {"test_threshold": "9", "test_action": "reject"},
            "x@example.org": {"test_threshold": "9"},         # @.example.org: subdomains only
            "nobody@elsewhere.example": {"test_threshold": "9"},
            "keep@old.example.com": {"test_threshold": "9"},  # an exception to the targets
            "postmaster": {"test_threshold": "9"},
            "sales@example.com": {"test_threshold": "5", "test_action": "tag",
                                  "original_recipient": "sales@example.com",
                                  "alias_targets": ["bob@example.net"]},
            "team@example.com": {"test_threshold": "4", "test_action": "tag",
                                 "original_recipient": "team@example.com",
                                 "alias_targets": ["alice@example.com", "carol@example.com"]},
            "Joe@old.example.com": {"test_threshold": "9", "original_recipient": "Joe@old.example.com",
                                    "alias_targets": ["Joe@example.com"]},
        }
        for address, notes in expected.items():
            self.assertEqual(await self.notes_of(plugin, address), (codes.DECLINED, notes),
                             address)

    async def test_notes_reach_the_filter(self):
        server, client = await self.session()
        self.assertEqual(await self.rcpt(client, "alice@example.com"),
                         "250 <alice@example.com>, recipient ok")
        notes = await self.send(server, client)
        self.assertEqual(notes["threshold_seen"], [(3.0, "tag")])
        self.assertEqual(notes["recorded_recipients"][1], ("queue", [
            ("alice@example.com", {"test_threshold": "3", "test_action": "tag"})]))
        self.assertEqual(self.errors(), [])

    async def test_targets(self):
        server, client = await self.session()
        # accepted (and named in the reply) as the client sent it: example.net is not local
        self.assertEqual(await self.rcpt(client, "sales@example.com"),
                         "250 <sales@example.com>, recipient ok")
        # the targets carry the settings of the alias (here '*'), not their own
        self.assertEqual(await self.rcpt(client, "Joe@old.example.com"),
                         "452 4.5.3 Try this recipient in another transaction")
        notes = await self.send(server, client)
        self.assertEqual(notes["recorded_recipients"][1], ("queue", [
            ("bob@example.net", {"test_threshold": "5", "test_action": "tag",
                                 "original_recipient": "sales@example.com"})]))
        self.assertEqual((await client.command("MAIL FROM:<s@sender.example>"))[0], 250)
        self.assertEqual(await self.rcpt(client, "Joe@old.example.com"),
                         "250 <Joe@old.example.com>, recipient ok")
        self.assertEqual(await self.rcpt(client, "team@example.com"),
                         "452 4.5.3 Try this recipient in another transaction")
        notes = await self.send(server, client)
        self.assertEqual(notes["recorded_recipients"][3], ("queue", [
            ("Joe@example.com", {"test_threshold": "9",
                                 "original_recipient": "Joe@old.example.com"})]))

    async def test_grouping(self):
        server, client = await self.session()
        self.assertEqual(await self.rcpt(client, "alice@example.com"),
                         "250 <alice@example.com>, recipient ok")
        self.assertEqual(await self.rcpt(client, "mid@example.com"),
                         "452 4.5.3 Try this recipient in another transaction")
        # team's targets count as team (threshold 4): the whole alias is deferred
        self.assertEqual(await self.rcpt(client, "team@example.com"),
                         "452 4.5.3 Try this recipient in another transaction")
        self.assertEqual(await self.rcpt(client, "Alice@example.com"),
                         "250 <Alice@example.com>, recipient ok")
        notes = await self.send(server, client)
        self.assertEqual([a for a, _ in notes["recorded_recipients"][1][1]],
                         ["alice@example.com", "Alice@example.com"])

    async def test_source_down_is_a_temporary_failure(self):
        server, client = await self.session(self.down_line())
        self.assertEqual(await self.rcpt(client, "alice@example.com"), TEMPORARY)
        errors = self.errors()
        self.assertEqual(len(errors), 1, self.logs)
        self.assertIn("<alice@example.com>: lookup in ", errors[0])
        self.assertIn("answering with a temporary failure", errors[0])
        self.assertEqual(next(iter(server.sessions)).transaction.recipients, [])

    async def test_source_down_with_fail_open(self):
        server, client = await self.session(self.down_line() + " fail_open 1")
        self.assertEqual(await self.rcpt(client, "alice@example.com"),
                         "250 <alice@example.com>, recipient ok")
        notes = await self.send(server, client)
        self.assertEqual(notes["recorded_recipients"][1], ("queue", [("alice@example.com", {})]))
        self.assertEqual(notes["threshold_seen"], [(5.0, "tag")])    # the filter's defaults
        errors = self.errors()
        self.assertEqual(len(errors), 1, self.logs)
        self.assertIn("fail_open: no settings for it", errors[0])

    async def test_end_to_end_three_recipients_three_thresholds(self):
        """One SMTP session over a real socket: alice (3), mid (5, her domain's) and high
        (10); the message scores 6, so only high gets it, in a third transaction."""
        await assert_three_thresholds(self, self.plugin_line(), {"rcpthosts": RCPTHOSTS},
                                      first="alice@example.com")


def module_suite(module_name, *stops):
    """The tests of module ``module_name``, with each of ``stops`` called once they have run
    (a module's ``testSuite``: trial has no module fixtures)."""

    class ModuleSuite(TestSuite):
        def run(self, result):
            try:
                return TestSuite.run(self, result)
            finally:
                for stop in stops:
                    stop()

    loader = TestLoader()
    suite = ModuleSuite()
    for cls in loader.findTestClasses(sys.modules[module_name]):
        suite.addTest(loader.loadClass(cls))
    return suite
