"""qpsmtpd 0.94's ``async/*`` plugin names load the same plugins as their plain names."""

import os

from twisted.trial import unittest

from qpsmtpd_tx.loader import resolve_plugin_class
from qpsmtpd_tx.paths import default_plugin_dirs

#: the async plugins qpsmtpd 0.94 ships (/usr/share/qpsmtpd/plugins/async on Debian)
ASYNC_NAMES = ["dns_whitelist_soft", "dnsbl", "earlytalker", "queue/smtp-forward",
               "resolvable_fromhost", "rhsbl", "uribl"]
PERL_ASYNC_DIR = "/usr/share/qpsmtpd/plugins/async"


class AsyncNameTests(unittest.TestCase):
    def test_each_async_name_loads_the_plain_plugin(self):
        for name in ASYNC_NAMES:
            plain, _ = resolve_plugin_class(name, default_plugin_dirs())
            aliased, _ = resolve_plugin_class("async/" + name, default_plugin_dirs())
            self.assertIs(aliased, plain, name)

    def test_every_async_name_of_qpsmtpd_is_covered(self):
        if not os.path.isdir(PERL_ASYNC_DIR):
            raise unittest.SkipTest("qpsmtpd (Debian package) not installed")
        shipped = sorted(os.path.relpath(os.path.join(d, f), PERL_ASYNC_DIR)
                         for d, _, files in os.walk(PERL_ASYNC_DIR) for f in files)
        self.assertEqual(shipped, sorted(ASYNC_NAMES))
