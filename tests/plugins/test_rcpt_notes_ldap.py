"""rcpt_notes/ldap: the aliases plugin's per-recipient data from a real slapd (started
privately, once for this module).

The same data set as rcpt_notes/sql's (:data:`LDIF`, the LDAP entries of
:data:`~tests.support.rcpt_notes_cases.ROWS`) and the same tests
(:class:`~tests.support.rcpt_notes_cases.SourceTests`): notes reaching a filter, precedence,
alias targets, grouping (452 4.5.3), a source that is down (450 4.3.0, or fail_open) and one
end-to-end session over a real socket. Then what only LDAP has.
"""

import os

from twisted.internet import defer, protocol, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.loader import find_plugin_file, load_plugin_module
from qpsmtpd_tx.paths import default_plugin_dirs
from qpsmtpd_tx.server import StartupError
from tests.support.harness import capture_log, make_server
from tests.support.processes import free_port
from tests.support.rcpt_notes_cases import SourceTests, module_suite
from tests.support.slapd import slapd_server, stop_slapd

sql = load_plugin_module(find_plugin_file("rcpt_notes/sql", default_plugin_dirs()))
ldap = load_plugin_module(find_plugin_file("rcpt_notes/ldap", default_plugin_dirs()))

SUFFIX = "dc=example,dc=com"


def _entry(dn, *lines, people=False):
    classes = (["inetOrgPerson"] if people else ["organizationalRole"]) + ["qptxMailRecipient"]
    rdn = dn.split(",")[0].split("=", 1)
    text = ["dn: %s,%s" % (dn, SUFFIX)] + ["objectClass: %s" % c for c in classes]
    text.append("%s: %s" % tuple(rdn))
    if people:
        text += ["cn: %s" % rdn[1], "sn: %s" % rdn[1]]
    return "\n".join(text + list(lines)) + "\n\n"


# The same data as LDAP entries, as an operator would write them: mapped attributes
# (qptxTestThreshold, qptxTestAction), key=value words (qptxMailSettings), targets
# (mailForwardingAddress); then entries only the LDAP tests use.
LDIF = "".join([
    "dn: ou=patterns,%s\nobjectClass: organizationalUnit\nou: patterns\n\n" % SUFFIX,
    "dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n" % SUFFIX,
    _entry("cn=default,ou=patterns", "mail: *", "qptxTestThreshold: 9"),
    _entry("cn=any.example.org,ou=patterns", "mail: @.example.org", "qptxTestAction: reject"),
    _entry("cn=example.com,ou=patterns", "mail: @example.com",
           "qptxMailSettings: test_threshold=5 test_action=tag"),
    _entry("uid=alice,ou=people", "mail: alice@example.com", "qptxTestThreshold: 3", people=True),
    _entry("uid=bob,ou=people", "mail: bob@example.com", "qptxMailSettings: test_action=",
           people=True),
    _entry("uid=high,ou=people", "mail: high@example.com", "qptxTestThreshold: 10", people=True),
    _entry("cn=sales,ou=patterns", "mail: sales@example.com",
           "mailForwardingAddress: bob@example.net"),
    _entry("cn=team,ou=patterns", "mail: team@example.com", "qptxTestThreshold: 4",
           "mailForwardingAddress: alice@example.com", "mailForwardingAddress: carol@example.com"),
    _entry("cn=old.example.com,ou=patterns", "mail: @old.example.com",
           "mailForwardingAddress: @example.com"),
    _entry("cn=keep,ou=patterns", "mail: keep@old.example.com"),
    # LDAP only
    _entry("uid=axb,ou=people", "mail: axb@example.com", "qptxTestThreshold: 1", people=True),
    _entry("uid=spaced,ou=people", "mail: spaced@example.com", "qptxTestAction: two words",
           people=True),
    _entry("uid=twice,ou=people", "mail: twice@example.com", "qptxTestThreshold: 1",
           "qptxMailSettings: test_threshold=2", people=True),
    _entry("uid=carol,ou=people", "mail: carol@example.com", "mail: carol@example.org",
           "qptxTestThreshold: 7", people=True),
])

# -- LDAP ------------------------------------------------------------------------------------


class _Silent(protocol.Protocol):
    """A server that accepts connections and never answers."""

    def connectionMade(self):
        self.factory.connections.append(self)

    def connectionLost(self, reason):
        self.factory.connections.remove(self)


class LdapTests(SourceTests, unittest.TestCase):
    def setUp(self):
        self.slapd = slapd_server(LDIF)

    def plugin_line(self, **arguments):
        options = {"url": self.slapd.url, "base": SUFFIX, "bind_dn": self.slapd.bind_dn,
                   "bind_password": self.slapd.bind_password,
                   "map": "qptxTestThreshold=test_threshold,qptxTestAction=test_action",
                   "settings": "qptxMailSettings", "targets": "mailForwardingAddress"}
        options.update(arguments)
        return "rcpt_notes/ldap " + " ".join("%s %s" % item for item in options.items()
                                             if item[1] is not None)

    def down_line(self):
        return self.plugin_line(url="ldap://127.0.0.1:%d" % free_port())

    def plugin(self, **arguments):
        server = self.server(self.plugin_line(**arguments))
        self.logs = capture_log(self, server)
        return server.plugins[0]

    async def test_the_filter_value_is_escaped(self):
        plugin = self.plugin()
        # unescaped, (mail=a*b@example.com) would be a substring filter finding axb@
        self.assertEqual(await self.notes_of(plugin, "a*b@example.com"),
                         (codes.DECLINED, {"test_threshold": "5", "test_action": "tag"}))
        self.assertEqual((await self.notes_of(plugin, "axb@example.com"))[1]["test_threshold"],
                         "1")
        self.assertEqual(ldap.escape_filter_value("a*b(c)\\d\0é"), "a\\2ab\\28c\\29\\5cd\\00é")

    async def test_another_filter(self):
        plugin = self.plugin(filter="(&(objectClass=inetOrgPerson)(mail=%s))")
        # only people: the pattern entries (organizationalRole) are not found
        self.assertEqual(await self.notes_of(plugin, "alice@example.com"),
                         (codes.DECLINED, {"test_threshold": "3"}))
        self.assertEqual(await self.notes_of(plugin, "mid@example.com"), (codes.DECLINED, {}))

    async def test_one_entry_found_by_several_addresses(self):
        plugin = self.plugin()
        self.assertEqual((await self.notes_of(plugin, "carol@example.org"))[1],
                         {"test_threshold": "7"})

    async def test_match_address_only(self):
        plugin = self.plugin(match="address")
        sent = []
        real_search = plugin._search
        self.patch(plugin, "_search", lambda client, pattern: (sent.append(pattern),
                                                               real_search(client, pattern))[1])
        self.assertEqual(await self.notes_of(plugin, "alice@example.com"),
                         (codes.DECLINED, {"test_threshold": "3"}))
        self.assertEqual(sent, ["alice@example.com"])

    async def test_unreadable_entries_are_a_temporary_failure_naming_them(self):
        plugin = self.plugin()
        for address, message in [
            ("spaced@example.com", "entry uid=spaced,ou=people,dc=example,dc=com: "
                                   "qptxTestAction value 'two words' is not one word"),
            ("twice@example.com", "entry uid=twice,ou=people,dc=example,dc=com: "
                                  "'test_threshold=2': setting test_threshold given twice"),
        ]:
            self.assertEqual(await self.notes_of(plugin, address),
                             ((codes.DENYSOFT, sql.TEMPORARY_FAILURE), {}))
            self.assertIn("<%s>: lookup in %s failed (%s)" % (address, self.slapd.url, message),
                          self.logs[-1][1])

    async def test_wrong_password(self):
        plugin = self.plugin(bind_password="wrong")
        self.assertEqual(await self.notes_of(plugin, "alice@example.com"),
                         ((codes.DENYSOFT, sql.TEMPORARY_FAILURE), {}))
        self.assertIn("invalidCredentials", self.logs[-1][1])

    async def test_password_file(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(self.slapd.bind_password + "\n")
        plugin = self.plugin(bind_password=None, bind_password_file=path)
        self.assertEqual((await self.notes_of(plugin, "alice@example.com"))[1],
                         {"test_threshold": "3", "test_action": "tag"})

    async def test_missing_base_is_a_failure(self):
        plugin = self.plugin(base="dc=nowhere,dc=example")
        self.assertEqual((await self.notes_of(plugin, "alice@example.com"))[0],
                         (codes.DENYSOFT, sql.TEMPORARY_FAILURE))
        self.assertIn("noSuchObject", self.logs[-1][1])

    async def test_one_connection_for_every_lookup(self):
        plugin = self.plugin()
        await self.notes_of(plugin, "alice@example.com")
        client = plugin._client
        await defer.gatherResults([defer.ensureDeferred(self.notes_of(plugin, a))
                                   for a in ("bob@example.com", "high@example.com")])
        self.assertIs(plugin._client, client)
        self.assertTrue(client.connected)
        await plugin.stop()
        self.assertFalse(client.connected)

    async def test_a_closed_connection_is_opened_again(self):
        plugin = self.plugin()
        await self.notes_of(plugin, "alice@example.com")
        first = plugin._client
        # the connection goes away while the searches are on the wire: tried once more
        real_send = first.send_multiResponse

        def send_and_lose(*args, **kwargs):
            sent = real_send(*args, **kwargs)
            first.transport.abortConnection()
            return sent

        self.patch(first, "send_multiResponse", send_and_lose)
        self.assertEqual((await self.notes_of(plugin, "alice@example.com"))[1],
                         {"test_threshold": "3", "test_action": "tag"})
        self.assertIsNot(plugin._client, first)
        self.assertEqual(self.errors(), [])

    async def test_a_silent_server_times_out(self):
        factory = protocol.ServerFactory.forProtocol(_Silent)
        factory.connections = []
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        for bind_dn in (self.slapd.bind_dn, None):
            plugin = self.plugin(url="ldap://127.0.0.1:%d" % listening.getHost().port,
                                 timeout="0.3", bind_dn=bind_dn,
                                 bind_password=self.slapd.bind_password if bind_dn else None)
            self.assertEqual(await self.notes_of(plugin, "alice@example.com"),
                             ((codes.DENYSOFT, sql.TEMPORARY_FAILURE), {}))
            self.assertIn("failed (no answer within 0.3 s)", self.logs[-1][1])
            # the connection to the hung server is dropped; the next RCPT tries anew
            for _ in range(100):
                if not factory.connections:
                    break
                await deferLater(reactor, 0.01, lambda: None)
            self.assertEqual(factory.connections, [])
            self.assertIsNone(plugin._connecting)

    def test_bad_arguments(self):
        base = "url ldap://127.0.0.1:1 base %s map a=b" % SUFFIX
        for arguments, message in [
            ("base %s map a=b" % SUFFIX, "argument url is required"),
            ("url ldap://127.0.0.1:1 map a=b", "argument base is required"),
            ("url ldaps://h base x map a=b", "url: 'ldaps://h' is not ldap://HOST[:PORT] or "
                                             "ldapi://PATH (ldaps:// is not supported)"),
            ("url ldap:// base x map a=b", "url: no host in 'ldap://'"),
            ("url ldap://h:port base x map a=b", "url: bad port"),
            ("url ldapi://run base x map a=b", "url: ldapi:// needs an absolute socket path"),
            (base + " filter (mail=x)", "filter: '(mail=x)' has no %s for the pattern"),
            (base + " filter (mail=%s", "filter: '(mail=%s' is not an LDAP filter"),
            (base + " scope base", "scope must be sub or one"),
            (base + " match address,everyone", "match: 'address,everyone' is not a list of"),
            (base + " map a", "map: 'a' is not ATTRIBUTE=NOTE"),
            (base + " map a=1x", "map: '1x' is not a note name"),
            (base + " map a=alias_targets", "map: alias_targets is set by the plugin itself"),
            ("url ldap://127.0.0.1:1 base x", "nothing to read: give map, settings or targets"),
            (base + " bind_password pw", "bind_password without bind_dn"),
            (base + " bind_dn x bind_password_file /nonexistent/pw",
             "bind_password_file: cannot read /nonexistent/pw"),
            (base + " timeout -1", "timeout must be a number of seconds > 0"),
            (base + " fail_open 2", "fail_open must be 0 or 1"),
        ]:
            with self.assertRaises(StartupError, msg=arguments) as caught:
                make_server(self, ["rcpt_notes/ldap %s" % arguments, "rcpt_ok"])
            self.assertIn("plugins:1: plugin rcpt_notes/ldap: " + message, str(caught.exception))

    async def test_ldapi_url(self):
        plugin = self.plugin(url="ldapi://%2Fnonexistent%2Fldapi", timeout="1")
        self.assertEqual(plugin._where.path, "/nonexistent/ldapi")
        self.assertEqual((await self.notes_of(plugin, "alice@example.com"))[0],
                         (codes.DENYSOFT, sql.TEMPORARY_FAILURE))
        self.assertIn("lookup in ldapi://%2Fnonexistent%2Fldapi failed", self.logs[-1][1])


def testSuite():
    """This module's tests, the private slapd stopped once they have run.

    (trial has no module fixtures; the server is started by the first test that needs it.
    Run one test alone and the server is stopped at interpreter exit instead.)
    """
    return module_suite(__name__, stop_slapd)
