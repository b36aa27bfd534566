"""The envelope plugins as a set (helo, badmailfrom, badmailfromto, bogus_bounce,
dont_require_anglebrackets, parse_addr_withhelo, badrcptto, rcpt_map, rcpt_regexp,
check_badmailfrom_patterns, check_badrcptto_patterns, and the old names check_spamhelo,
check_badmailfrom, check_bogus_bounce, check_badrcptto): each is listed by ``qpsmtpd-tx plugins``
with a summary and documents its arguments and replies; each old name is listed and documented
as an alias.
"""

import io

from twisted.trial import unittest

from qpsmtpd_tx import cli

PLUGINS = ["helo", "badmailfrom", "badmailfromto", "bogus_bounce", "dont_require_anglebrackets",
           "parse_addr_withhelo", "badrcptto", "rcpt_map", "rcpt_regexp",
           "check_badmailfrom_patterns", "check_badrcptto_patterns"]
ALIASES = {"check_spamhelo": "helo", "check_badmailfrom": "badmailfrom",
           "check_bogus_bounce": "bogus_bounce", "check_badrcptto": "badrcptto"}


class DocumentationTests(unittest.TestCase):
    def run_cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(["plugins"] + list(argv), out=out, err=err)
        self.assertIn(status, (0, None), err.getvalue())
        return out.getvalue()

    def test_listed_with_a_summary(self):
        listing = {line.split()[0]: line.split(None, 1)[1]
                   for line in self.run_cli().splitlines() if line.strip()}
        for name in PLUGINS:
            self.assertNotIn(listing[name], ("", "alias of"), name)
        for alias, target in ALIASES.items():
            self.assertEqual(listing[alias], "alias of %s" % target)

    def test_every_plugin_documents_its_parts(self):
        for name in PLUGINS:
            doc = self.run_cli("doc", name)
            for part in ("Arguments", "Replies"):
                self.assertIn(part, doc, name)
        for alias, target in ALIASES.items():
            self.assertIn("%s is an alias of %s" % (alias, target), self.run_cli("doc", alias))
