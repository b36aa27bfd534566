"""When an edited config file takes effect, beside Debian's Perl qpsmtpd-forkserver: qpsmtpd
reads the files its plugins ask for during a connection in the forked child, so it reads them
anew for every connection; qpsmtpd-tx serves every connection from one process and reads a
file again only after SIGHUP (README, Signals). Shown with ``relay``'s ``relayclients``."""

import os
import signal
import smtplib

from twisted.trial import unittest

from tests.support.harness import write_config
from tests.support.perl_qpsmtpd import (PERL_PLUGIN_DIR, give_to_perl_user, shared_root,
                                        start_forkserver)
from tests.support.processes import poll_until, read_text, start_twistd

PLUGINS = ["relay", "rcpt_ok"]
FILES = {"relayclients": "192.0.2.99"}
#: seconds anything here may take (generous: the machine is shared)
BOUND = 30.0


def relaying(port):
    """The code the server at ``port`` answers to a recipient elsewhere from 127.0.0.1."""
    with smtplib.SMTP("127.0.0.1", port, timeout=BOUND) as client:
        client.ehlo("client.example")
        client.mail("a@b.example")
        return client.rcpt("u@elsewhere.example")[0]


class RelayclientsEditedTests(unittest.TestCase):
    def setUp(self):
        root = shared_root(self, "reread")
        self.configs = {}
        for name, extra in (("perl", {"plugin_dirs": PERL_PLUGIN_DIR}),
                            ("ours", {"loglevel": "5"})):
            self.configs[name] = write_config(os.path.join(root, name), PLUGINS,
                                              dict(FILES, **extra))
        give_to_perl_user(root)
        self.perl = start_forkserver(self, self.configs["perl"])
        self.ours_process, self.ours, self.log = start_twistd(self, self.configs["ours"])

    def edit(self, name):
        with open(os.path.join(self.configs[name], "relayclients"), "w") as f:
            f.write("127.0.0.1\n")

    def test_perl_sees_the_edit_at_the_next_connection_we_after_sighup(self):
        self.assertEqual((relaying(self.perl), relaying(self.ours)), (550, 550))
        self.edit("perl")
        self.edit("ours")
        self.assertEqual((relaying(self.perl), relaying(self.ours)), (250, 550))
        self.ours_process.send_signal(signal.SIGHUP)
        self.assertTrue(poll_until(lambda: "plugins reloaded" in read_text(self.log), BOUND))
        self.assertEqual(relaying(self.ours), 250)
