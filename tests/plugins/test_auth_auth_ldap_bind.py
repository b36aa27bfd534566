"""auth/auth_ldap_bind end to end: smtplib AUTH to our server, which searches and binds in the
suite's private slapd (tests/support/slapd.py: a real OpenLDAP, started for this module).

That slapd lets anonymous clients bind but not search, so most tests search as its
``cn=qpsmtpd`` DN (``ldap_bind_dn``/``ldap_bind_password``).
"""

import os

from twisted.internet import protocol, reactor
from twisted.trial import unittest

from tests.support.auth_client import NO_DELAY, auth
from tests.support.harness import assertStartupError, capture_log
from tests.support.processes import free_port
from tests.support.rcpt_notes_cases import module_suite
from tests.support.server import start_server
from tests.support.slapd import slapd_server, stop_slapd

SUFFIX = "dc=example,dc=com"
PASSWORD = "s3cret pass"


def _person(rdn, uid, password):
    name = rdn.split("=", 1)[1]
    return ("dn: %s,%s\nobjectClass: inetOrgPerson\n%s\ncn: %s\nsn: %s\nuid: %s\n"
            "userPassword: %s\n\n" % (rdn, SUFFIX, rdn.replace("=", ": ", 1), name, name, uid,
                                      password))


LDIF = (_person("uid=alice", "alice", PASSWORD) + _person("cn=twin one", "twin", "pw")
        + _person("cn=twin two", "twin", "pw"))
FAILED = (535, "5.7.8 Authentication credentials invalid")
TEMPORARY = (454, "4.7.0 Temporary authentication failure")


class _Silent(protocol.Protocol):
    """Accepts and never answers."""


class LdapBindTests(unittest.TestCase):
    def setUp(self):
        self.slapd = slapd_server(LDIF)

    def line(self, extra="", bind=True, port=None):
        words = ["auth/auth_ldap_bind", "ldap_port", str(port or self.slapd.port),
                 "ldap_base", SUFFIX]
        if bind:
            words += ["ldap_bind_dn", self.slapd.bind_dn, "ldap_bind_password",
                      self.slapd.bind_password]
        return " ".join(words) + (" " + extra if extra else "")

    async def test_right_password(self):
        server, port = start_server(self, [self.line()], NO_DELAY)
        log = capture_log(self, server)
        advertised = []
        self.assertEqual(await auth(port, "alice@example.com", PASSWORD, "PLAIN", advertised),
                         (235, "PLAIN authentication successful for alice@example.com - "
                               "authldap"))
        self.assertEqual(sorted(advertised), ["LOGIN", "PLAIN"])
        self.assertEqual((await auth(port, "Alice", PASSWORD, "LOGIN"))[0], 235)
        self.assertIn("pass: bound as uid=alice,%s" % SUFFIX, [m for _, m in log])
        self.assertFalse([m for _, m in log if "s3cret" in m], log)

    async def test_wrong_password_unknown_ambiguous_empty(self):
        server, port = start_server(self, [self.line()], NO_DELAY)
        log = capture_log(self, server)
        self.assertEqual(await auth(port, "alice@example.com", "guess"), FAILED)
        self.assertEqual(await auth(port, "carol@example.com", PASSWORD), FAILED)
        self.assertEqual(await auth(port, "twin", "pw"), FAILED)
        # an empty password would be an anonymous bind, which succeeds
        self.assertEqual(await auth(port, "alice@example.com", ""), FAILED)
        self.assertEqual([m for _, m in log if m.startswith("fail:")], [
            "fail: bind as uid=alice,%s refused: code 49" % SUFFIX, "fail: user not found",
            "fail: more than one entry for the user", "fail: empty password"])

    async def test_user_name_is_a_value_not_filter_syntax(self):
        _, port = start_server(self, [self.line()], NO_DELAY)
        self.assertEqual(await auth(port, "*", PASSWORD), FAILED)
        self.assertEqual(await auth(port, "al*", PASSWORD), FAILED)

    async def test_anonymous_search_refused_is_temporary(self):
        # as 0.94: search anonymously; this slapd hides even the base from anonymous
        # clients (noSuchObject): a directory problem, not the client's
        server, port = start_server(self, [self.line(bind=False)], NO_DELAY)
        log = capture_log(self, server)
        self.assertEqual(await auth(port, "alice", PASSWORD), TEMPORARY)
        self.assertIn("skip: search for uid=alice below %s failed: code 32" % SUFFIX,
                      " ".join(m for _, m in log))

    async def test_settings_from_the_config_file(self):
        files = dict(NO_DELAY, ldap="ldap_host 127.0.0.1\nldap_port 1\nldap_base %s\n"
                                    "ldap_bind_dn %s\nldap_bind_password %s\n"
                     % (SUFFIX, self.slapd.bind_dn, self.slapd.bind_password))
        _, port = start_server(self, ["auth/auth_ldap_bind ldap_port %d" % self.slapd.port],
                               files)
        self.assertEqual((await auth(port, "alice", PASSWORD))[0], 235)

    async def test_directory_trouble_is_temporary(self):
        server, port = start_server(self, [self.line(port=free_port())], NO_DELAY)
        log = capture_log(self, server)
        self.assertEqual(await auth(port, "alice", PASSWORD), TEMPORARY)
        self.assertIn("cannot connect to LDAP server", " ".join(m for _, m in log))
        _, port = start_server(self, [self.line().replace(self.slapd.bind_password, "wrong")],
                               NO_DELAY)
        self.assertEqual(await auth(port, "alice", PASSWORD), TEMPORARY)
        _, port = start_server(self, [self.line().replace(SUFFIX, "dc=elsewhere,dc=org")],
                               NO_DELAY)
        self.assertEqual(await auth(port, "alice", PASSWORD), TEMPORARY)

    async def test_silent_server_times_out(self):
        silent = protocol.Factory.forProtocol(_Silent)
        listening = reactor.listenTCP(0, silent, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        server, port = start_server(
            self, [self.line("ldap_timeout 0.5", port=listening.getHost().port)], NO_DELAY)
        log = capture_log(self, server)
        self.assertEqual(await auth(port, "alice", PASSWORD), TEMPORARY)
        self.assertIn("skip: no answer within 0.5 s", [m for _, m in log])

    def test_bad_settings_stop_start_up(self):
        assertStartupError(self, ["auth/auth_ldap_bind"], "ldap_base is required")
        message = assertStartupError(self, ["auth/auth_ldap_bind"], "unknown key 'ldap_server'",
                                     {"ldap": "ldap_base dc=x\nldap_server h\n"})
        self.assertIn("%sldap:2:" % os.sep, message)
        assertStartupError(self, ["auth/auth_ldap_bind ldap_base dc=x ldap_port no"],
                           "ldap_port must be a TCP port number")
        assertStartupError(self, ["auth/auth_ldap_bind ldap_base dc=x ldap_timeout -1"],
                           "ldap_timeout must be a positive number")
        assertStartupError(self, ["auth/auth_ldap_bind ldap_base dc=x ldap_bind_dn cn=a"],
                           "give ldap_bind_dn and ldap_bind_password together")


def testSuite():
    """This module's tests, the private slapd stopped once they have run."""
    return module_suite(__name__, stop_slapd)
