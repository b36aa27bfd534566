"""auth/auth_vpopmail: refused at start-up, naming the plugins that replace it."""

from twisted.trial import unittest

from tests.support.harness import assertStartupError


class AuthVpopmailTests(unittest.TestCase):
    def test_refused_naming_the_replacements(self):
        message = assertStartupError(self, ["auth/auth_vpopmail"], [
            "plugin auth/auth_vpopmail: needs vpopmail's C library",
            "auth/auth_checkpassword with vpopmail's vchkpw", "auth/auth_vpopmaild",
            "auth/auth_vpopmail_sql"])
        self.assertIn("plugins:1:", message)
