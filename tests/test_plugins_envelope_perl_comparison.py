"""The envelope plugins against qpsmtpd 0.94 itself: where helo (check_spamhelo),
parse_addr_withhelo, dont_require_anglebrackets, badmailfrom (check_badmailfrom),
badmailfromto, badrcptto (check_badrcptto), rcpt_regexp, rcpt_map, bogus_bounce and rcpt_ok
mean to answer as 0.94 does, the Perl server, loaded with the same plugins and config, gives
the same replies to the same sessions (skipped where it is not installed). Reply texts are
qpsmtpd 0.94's, read from /usr/share/qpsmtpd/plugins and probed on the Perl server; the
intended differences are documented in each plugin and tested in tests/plugins/test_<name>.py.
"""

import os
import shutil
import tempfile

from twisted.trial import unittest

from tests.support import perl_qpsmtpd
from tests.support.harness import write_config
from tests.support.server import ConnectionClosed, connect, start_server
from tests.support.smtp_session import session

PERL_PLUGINS = [
    "check_spamhelo", "parse_addr_withhelo", "dont_require_anglebrackets", "check_badmailfrom",
    "badmailfromto", "check_badrcptto", "rcpt_regexp", "rcpt_map domain example.com file MAP",
    "bogus_bounce action deny reject 1", "rcpt_ok",
]
PERL_FILES = {
    "badhelo": "aol.com\n",
    "badmailfrom": "spammer@bad.example\n@worse.example Go away now\n",
    "badmailfromto": "stalker@example.net\tvictim@example.com\n",
    "badrcptto": "bad@example.com\n",
    "rcpt_regexp": "info@myhost.org  DENY  User not found.\n/^soft@/  DENYSOFT later please\n",
}
# Lines written so that 0.94's map reader takes them (single spaces, each with a text).
PERL_MAP = "you@example.com OK fine\ninfo@example.com DENY User not found.\n"
PERL_SESSIONS = [
    ["HELO aol.com"],
    ["HELO 192.0.2.1"],
    ["HELO [192.0.2.9]"],
    ["HELO localhost", "MAIL FROM:<spammer@bad.example>", "MAIL FROM:<a@worse.example>",
     "MAIL FROM:<a@b.example> SIZE=10", "MAIL FROM:x@y.example", "MAIL FROM:<stalker@example.net>",
     "RCPT TO:<victim@example.com>", "RCPT TO:<bad@example.com>", "RCPT TO:<info@myhost.org>",
     "RCPT TO:<soft@x.example>", "RCPT TO:<you@example.com>", "RCPT TO:<info@example.com>",
     "RCPT TO:<nobody@example.com>", "RCPT TO:u@example.com", "MAIL FROM:<>",
     "RCPT TO:<you@example.com>", "DATA",
     "Return-Path: <a@b.example>\r\nSubject: x\r\n\r\nbody\r\n.", "MAIL FROM:<>",
     "RCPT TO:<you@example.com>", "DATA", "Subject: x\r\n\r\nbody\r\n.", "QUIT"],
    ["HELO c.example", "MAIL FROM:<a@b.example>", "RCPT TO:<abuse>", "RCPT TO:<Abuse>",
     "RCPT TO:<postmaster>", "RCPT TO:<abuse@mx.example.org>", "QUIT"],
]


def perl_session(port, lines, source=None):
    """Replies of the Perl server as (code, [texts]), then ``closed`` when it hangs up.

    Every session must end with the server closing the connection (a refusal that
    disconnects, or QUIT). ``source``: the client's address (default: the kernel's choice).
    """
    return session(port, lines, source)[1:]


class PerlComparisonTests(unittest.TestCase):
    """Where these plugins mean to answer as 0.94 does, the Perl server answers the same."""

    def setUp(self):
        why = perl_qpsmtpd.available()
        if why:
            raise unittest.SkipTest(why)

    async def test_same_replies_as_qpsmtpd_094(self):
        # Not under trial's temp dir: the Perl server runs as the qpsmtpd user.
        root = tempfile.mkdtemp(prefix="qpsmtpd-tx-envelope-")
        self.addCleanup(shutil.rmtree, root, True)
        map_path = os.path.join(root, "map_example")
        with open(map_path, "w") as f:
            f.write(PERL_MAP)
        plugins = [line.replace("MAP", map_path) for line in PERL_PLUGINS]
        spool = os.path.join(root, "spool")
        os.makedirs(spool)
        config = write_config(os.path.join(root, "config"), plugins, dict(
            PERL_FILES, plugin_dirs=perl_qpsmtpd.PERL_PLUGIN_DIR, spool_dir=spool, loglevel="2"))
        os.chmod(root, 0o755)
        perl_qpsmtpd.give_to_perl_user(root)
        perl_port = perl_qpsmtpd.start_forkserver(self, config)
        _, our_port = start_server(self, plugins, PERL_FILES)

        for lines in PERL_SESSIONS:
            expected = perl_session(perl_port, lines)
            client = await connect(self, our_port)
            ours = []
            for line in lines:
                try:
                    ours.append(await client.command(line))
                except ConnectionClosed:
                    ours.append("closed")
                    break
            if ours[-1] != "closed":  # every session ends with the server closing
                await client.wait_closed()
                ours.append("closed")
            self.assertEqual(ours, expected, lines[0])
