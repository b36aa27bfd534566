"""A list file broken by an edit, then SIGHUP, on a real ``twistd qpsmtpd-tx``: the reload fails
and the plugins in use keep their lists; each plugin reads and logs the broken file once, not
at every connection (a log line per connection would be a flood under attack, and the parse
per connection wasted CPU); once the file is fixed, the next SIGHUP brings the new list in.

Clients are real smtplib clients; connections from 127.0.0.2 and 127.0.0.3 (bound as source
addresses on the loopback) tell the listed clients from the others.
"""

import os
import signal
import smtplib

from twisted.trial import unittest

from qpsmtpd_tx.testing import write_config
from tests.support.processes import poll_until, read_text, start_twistd

#: how long a test waits for something the server does on its own
WAIT = 20.0
#: sessions run while the files are broken
SESSIONS = 20


class BrokenListTestCase(unittest.TestCase):
    """A twistd on a config of our own; helpers to edit it, signal it and read its log."""

    def start(self, plugins, files):
        self.config = os.path.join(os.path.abspath(self.mktemp()), "config")
        write_config(self.config, plugins, dict(files, loglevel="5"))
        self.process, self.port, self.log = start_twistd(self, self.config)

    def write(self, name, text):
        with open(os.path.join(self.config, name), "w") as f:
            f.write(text)

    def sighup(self, outcome):
        """SIGHUP, then wait for the reload's ``outcome`` line (one more than before)."""
        before = read_text(self.log).count(outcome)
        self.process.send_signal(signal.SIGHUP)
        if not poll_until(lambda: read_text(self.log).count(outcome) > before, WAIT, 0.02):
            self.fail("no %r in the log after SIGHUP:\n%s" % (outcome, read_text(self.log)))

    def client(self, source="127.0.0.1"):
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=WAIT,
                              source_address=(source, 0))
        self.addCleanup(client.close)
        self.assertEqual(client.ehlo("client.example")[0], 250)
        return client

    def plugin_lines(self, text):
        """The log lines holding ``text``, but for the reload's own (``reload failed``)."""
        return [line for line in read_text(self.log).splitlines()
                if text in line and "reload failed" not in line]


class RelayAndBadmailfromTests(BrokenListTestCase):
    def session(self):
        """(MAIL of a listed sender, RCPT elsewhere from a relay client, from another client)."""
        listed = self.client()
        refused = listed.mail("spammer@bad.example")[0]
        listed.quit()
        replies = []
        for source in ("127.0.0.2", "127.0.0.3"):
            client = self.client(source)
            client.mail("a@b.example")
            replies.append(client.rcpt("someone@elsewhere.example")[0])
            client.quit()
        return (refused,) + tuple(replies)

    def test_broken_lists_are_read_once_and_the_fix_is_picked_up(self):
        self.start(["relay", "badmailfrom", "rcpt_ok"],
                   {"relayclients": "127.0.0.2", "badmailfrom": "spammer@bad.example"})
        self.assertEqual(self.session(), (550, 250, 550))

        self.write("relayclients", "127.0.0.2\nnot-an-address\n")
        self.write("badmailfrom", "spammer@bad.example\nno-at-sign\n")
        self.sighup("reload failed")
        for _ in range(SESSIONS):
            self.assertEqual(self.session(), (550, 250, 550))
        self.assertEqual(len(self.plugin_lines("relayclients:2:")), 1, read_text(self.log))
        self.assertEqual(len(self.plugin_lines("badmailfrom:2:")), 1, read_text(self.log))

        self.write("relayclients", "127.0.0.3\n")
        self.write("badmailfrom", "other@bad.example\n")
        self.sighup("plugins reloaded")
        self.assertEqual(self.session(), (250, 550, 250))


class OtherListsTests(BrokenListTestCase):
    """The other plugins that read a list file while serving: hosts_allow, whitelist, helo's
    badhelo, badmailfromto and rcpt_regexp."""

    GOOD = {"hosts_allow": "127.0.0.4 DENY go away", "whitelisthosts": "127.0.0.2",
            "badhelo": "bad.example", "badmailfromto": "a@b.example c@example.com",
            "rcpt_regexp": "d@example.com DENY no d"}
    #: a second line that breaks each file
    BROKEN = {"hosts_allow": "not-a-rule", "whitelisthosts": "two words", "badhelo": "a+(",
              "badmailfromto": "onlyone@b.example", "rcpt_regexp": "e@example.com"}

    def helo(self, source, name):
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=WAIT, source_address=(source, 0))
        self.addCleanup(client.close)
        code = client.ehlo(name)[0]
        client.close()
        return code

    def session(self):
        """The replies that show each list in use."""
        replies = [self.helo("127.0.0.1", "bad.example"), self.helo("127.0.0.2", "bad.example"),
                   self.helo("127.0.0.2", "other.example")]
        client = self.client()
        client.mail("a@b.example")
        replies += [client.rcpt(address)[0]
                    for address in ("c@example.com", "d@example.com", "ok@example.com")]
        client.quit()
        try:
            self.client("127.0.0.4").quit()
            replies.append(220)
        except smtplib.SMTPConnectError as e:
            replies.append(e.smtp_code)
        return tuple(replies)

    def test_broken_lists_are_read_once_and_the_fix_is_picked_up(self):
        self.start(["hosts_allow", "whitelist", "helo reject_type perm", "badmailfromto",
                    "rcpt_regexp", "rcpt_ok"], self.GOOD)
        self.assertEqual(self.session(), (550, 250, 250, 550, 550, 250, 550))

        for name, line in self.BROKEN.items():
            self.write(name, "%s\n%s\n" % (self.GOOD[name], line))
        self.sighup("reload failed")
        for _ in range(SESSIONS):
            self.assertEqual(self.session(), (550, 250, 250, 550, 550, 250, 550))
        self.assertEqual({name: len(self.plugin_lines("%s:2:" % name)) for name in self.BROKEN},
                         dict.fromkeys(self.BROKEN, 1), read_text(self.log))

        self.write("hosts_allow", "127.0.0.5 DENY go away\n")
        self.write("whitelisthosts", "127.0.0.3\n")
        self.write("badhelo", "other.example\n")
        self.write("badmailfromto", "x@b.example c@example.com\n")
        self.write("rcpt_regexp", "e@example.com DENY no e\n")
        self.sighup("plugins reloaded")
        self.assertEqual(self.session(), (250, 250, 550, 250, 250, 250, 220))
