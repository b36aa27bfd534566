"""dnsbl, rhsbl and dns_whitelist_soft against qpsmtpd 0.94 itself: the Perl forkserver and
our twistd, each started with the same plugins and config and with a private
``/etc/resolv.conf`` naming the suite's NSD (tests/support/resolv_conf.py: the way an
operator's server finds its DNS server), give the same replies to the same sessions, sent
from different loopback addresses (listed, unlisted, allowed, whitelisted). Skipped where Perl
qpsmtpd, NSD or root is missing.

Only what the plugins mean to answer as 0.94 does is compared here; the intended differences
(an A zone's own message, RBLSMTPD under ``reject 1``, IPv6 clients) are in each plugin's
docstring and tests/plugins/test_<name>.py.
"""

import os
import shutil
import tempfile

from twisted.trial import unittest

from tests.support import perl_qpsmtpd
from tests.support.dns import private_dns
from tests.support.harness import write_config
from tests.support.processes import start_twistd
from tests.support.smtp_session import session

#: client addresses of the sessions (all on the loopback network)
LISTED, WHITELISTED, ALLOWED, CLEAN = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.1"
#: both servers' greeting (their own ones name their software)
GREETING = "mx.example.org ESMTP ready"


class PerlComparisonTests(unittest.TestCase):
    """Same plugins, same config, same DNS server: the same replies from both servers."""

    def setUp(self):
        why = perl_qpsmtpd.available()
        if why:
            raise unittest.SkipTest(why)
        self.dns = private_dns()

    def zone(self, prefix, records):
        return self.dns.set_zone(self.dns.unique_zone(prefix), records)

    def assertSameReplies(self, plugins, files, sessions, environ=None):
        """Start both servers on ``plugins``/``files`` (with ``environ`` added to their
        environment); each ``(source, lines)`` session gets the same replies from both (the
        greeting included); returns those replies."""
        # Not under trial's temp dir: the Perl server runs as the qpsmtpd user.
        root = tempfile.mkdtemp(prefix="qpsmtpd-tx-dnslists-")
        self.addCleanup(shutil.rmtree, root, True)
        os.chmod(root, 0o755)
        spool = os.path.join(root, "spool")
        os.makedirs(spool)
        perl_config = write_config(os.path.join(root, "perl"), plugins, dict(
            files, plugin_dirs=perl_qpsmtpd.PERL_PLUGIN_DIR, spool_dir=spool, loglevel="2",
            smtpgreeting=GREETING))
        perl_qpsmtpd.give_to_perl_user(root)
        our_config = write_config(os.path.join(root, "ours"), plugins,
                                  dict(files, loglevel="2", smtpgreeting=GREETING))
        saved = dict(os.environ)
        os.environ.update(environ or {})       # both launchers pass os.environ on
        try:
            perl_port = perl_qpsmtpd.start_forkserver(self, perl_config,
                                                      nameservers=[self.dns.address])
            _, our_port, _ = start_twistd(self, our_config, nameservers=[self.dns.address])
        finally:
            os.environ.clear()
            os.environ.update(saved)
        replies = []
        for source, lines in sessions:
            expected = session(perl_port, lines, source)
            self.assertEqual(session(our_port, lines, source), expected, (source, lines))
            replies.append(expected)
        return replies

    def test_dnsbl(self):
        listed = self.zone("bl", [("2.0.0.127", "TXT", "Listed by test"),
                                  ("2.0.0.127", "A", "127.0.0.2"),
                                  ("4.0.0.127", "TXT", "Allowed anyway")])
        broken = self.dns.servfail_zone(self.dns.unique_zone("sf"))
        hello = ["HELO c.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "QUIT"]
        files = {"dnsbl_zones": "%s\n%s\n" % (broken, listed), "dnsbl_allow": "127.0.0.4"}
        replies = self.assertSameReplies(["dnsbl", "rcpt_ok"], files, [
            (LISTED, hello), (ALLOWED, hello), (CLEAN, hello)])
        # both found the listing (the DNS server was reached), past the SERVFAIL zone
        self.assertEqual(replies[0], [(550, ["Listed by test"]), "closed"])
        self.assertSameReplies(["dnsbl reject_type temp"], files, [(LISTED, hello)])
        # reject naughty: the abuse address clears the note, then every recipient passes.
        # (Without it, 0.94's 550 at RCPT says the text twice: its forkserver child loads
        # the plugins again and so runs every connect hook twice; qpsmtpd-tx runs them once.)
        self.assertSameReplies(["dnsbl reject naughty", "naughty reject rcpt", "rcpt_ok"], files, [
            (LISTED, ["HELO c.example", "MAIL FROM:<a@b.example>", "RCPT TO:<abuse@example.com>",
                      "RCPT TO:<u@example.com>", "QUIT"])])

    def test_dnsbl_rblsmtpd(self):
        listed = self.zone("bl", [("2.0.0.127", "TXT", "Listed by test")])
        files = {"dnsbl_zones": listed, "dnsbl_rejectmsg": "Sorry:\nnot this line"}
        quit = ["QUIT"]
        # set and empty: nobody is checked
        replies = self.assertSameReplies(["dnsbl"], files, [(LISTED, quit)], {"RBLSMTPD": ""})
        self.assertEqual(replies[0][0], (220, [GREETING]))
        # set: everybody is refused with it (0.94 does so with reject connect only)
        replies = self.assertSameReplies(["dnsbl reject connect"], files, [(CLEAN, quit)],
                                         {"RBLSMTPD": "Go away, %IP%"})
        self.assertEqual(replies[0], [(550, ["Sorry: Go away, 127.0.0.1"]), "closed"])

    def test_rhsbl(self):
        zone = self.zone("rh", [("bad.example", "TXT", "is listed in test"),
                                ("bad.example", "A", "127.0.0.2")])
        broken = self.dns.servfail_zone(self.dns.unique_zone("sf"))
        files = {"rhsbl_zones": "%s\n%s\n" % (broken, zone)}
        replies = self.assertSameReplies(["rhsbl", "rcpt_ok"], files, [
            (CLEAN, ["HELO c.example", "MAIL FROM:<a@bad.example>", "MAIL FROM:<a@Bad.Example>",
                     "MAIL FROM:<a@good.example>", "RCPT TO:<u@example.com>", "RSET",
                     "MAIL FROM:<>", "QUIT"])])
        self.assertEqual(replies[0][2], (550, ["Mail from HELO c.example rejected because it "
                                               "is listed in test"]))
        self.assertSameReplies(["rhsbl disconnect"], files, [
            (CLEAN, ["EHLO c.example", "MAIL FROM:<a@bad.example>"])])

    def test_dns_whitelist_soft(self):
        whitelist = self.zone("wl", [("3.0.0.127", "TXT", "a friend"),
                                     ("2.0.0.127", "A", "127.0.0.2")])
        rh = self.zone("rh", [("bad.example", "TXT", "is listed")])
        files = {"whitelist_zones": whitelist, "rhsbl_zones": rh}
        lines = ["HELO c.example", "MAIL FROM:<a@bad.example>", "MAIL FROM:<a@good.example>",
                 "RCPT TO:<u@elsewhere.example>", "RSET", "MAIL FROM:<a@bad.example>", "QUIT"]
        replies = self.assertSameReplies(["dns_whitelist_soft", "rhsbl", "rcpt_ok"], files, [
            (WHITELISTED, lines), (LISTED, lines), (CLEAN, lines)])
        self.assertEqual([reply[0] for reply in replies[0][1:7]], [250, 550, 250, 250, 250, 250])
