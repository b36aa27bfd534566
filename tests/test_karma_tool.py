"""``qpsmtpd-tx karma`` (qpsmtpd's karma_tool), run as a command against the file store and
the private Redis, and against a running server: a client captured with it is refused at
connect, and let in again once released."""

import os
import smtplib
import subprocess
import sys

from twisted.trial import unittest

from tests.support.harness import write_config
from tests.support.processes import CHECKOUT, server_env, start_twistd
from tests.support.redis import shared_redis


def karma(*args):
    """``(status, stdout, stderr)`` of ``qpsmtpd-tx karma ARGS``."""
    done = subprocess.run([sys.executable, "-m", "qpsmtpd_tx", "karma"] + list(args),
                          cwd=CHECKOUT, env=server_env(), capture_output=True, text=True,
                          timeout=60)
    return done.returncode, done.stdout, done.stderr


class CommandChecks:
    """The commands; ``where()`` gives the options naming the database."""

    def test_capture_list_search_release(self):
        where = self.where()
        status, out, err = karma(*where, "capture", "192.0.2.7")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("captured 192.0.2.7: 1 naughty, 0 nice, 0 connects", out)
        karma(*where, "capture", "2001:db8::7")
        status, out, _ = karma(*where, "list")
        self.assertEqual(status, 0)
        lines = out.splitlines()  # "using karma db at …", the header, the rows, the totals
        self.assertEqual([line.split()[0] for line in lines[2:-1]], ["192.0.2.7", "2001:db8::7"])
        self.assertIn("totals: 2 naughty, 0 nice, 0 connects", out)
        status, out, _ = karma(*where, "search", "2001:db8::7")
        self.assertIn("2001:db8::7", out)
        self.assertNotIn("192.0.2.7", out)
        status, out, _ = karma(*where, "release", "192.0.2.7")
        self.assertIn("released 192.0.2.7: 0 naughty, 0 nice, 0 connects", out)
        status, out, _ = karma(*where, "search", "naughty")
        self.assertNotIn("192.0.2.7", out)
        self.assertIn("2001:db8::7", out)
        status, out, _ = karma(*where, "prune", "0")
        self.assertIn("pruned 2 of 2 DB entries", out)

    def test_bad_ip_is_a_usage_error(self):
        status, _, err = karma(*self.where(), "capture", "1.2.3")
        self.assertEqual((status, err.strip()), (2, "qpsmtpd-tx karma: not an IP: 1.2.3"))


class FileStoreCommandTests(CommandChecks, unittest.TestCase):
    def where(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        return ["--db-dir", directory]

    def test_database_from_the_config_karma_line(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config = write_config(os.path.abspath(self.mktemp()),
                              ["karma db_dir %s reject connect" % directory, "rcpt_ok"])
        status, out, _ = karma("--config", config, "capture", "192.0.2.8")
        self.assertEqual(status, 0)
        self.assertIn("using karma db at %s/karma.sqlite" % directory, out)

    def test_missing_db_dir_is_an_error(self):
        status, _, err = karma("--db-dir", "/nonexistent/dir", "list")
        self.assertEqual(status, 1)
        self.assertIn("db_dir /nonexistent/dir is not a directory", err)


class RedisCommandTests(CommandChecks, unittest.TestCase):
    def where(self):
        redis = shared_redis()
        redis.flush()
        return ["--redis-url", redis.url]

    def test_redis_down_is_reported(self):
        status, _, err = karma("--redis-url", "redis://127.0.0.1:1/0", "list")
        self.assertEqual(status, 1)
        self.assertIn("redis://127.0.0.1:1/0", err)


class RunningServerTests(unittest.TestCase):
    def test_captured_client_is_refused_released_is_let_in(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config = write_config(os.path.abspath(self.mktemp()),
                              ["karma db_dir %s reject connect" % directory, "rcpt_ok"])
        _, port, _ = start_twistd(self, config)
        self.assertEqual(karma("--config", config, "capture", "127.0.0.1")[0], 0)
        with self.assertRaises(smtplib.SMTPConnectError) as caught:
            smtplib.SMTP("127.0.0.1", port, timeout=15)
        self.assertEqual(caught.exception.smtp_code, 550)
        self.assertEqual(caught.exception.smtp_error,
                         b"You were naughty. You cannot connect for 1.00 more days.")
        self.assertEqual(karma("--config", config, "release", "127.0.0.1")[0], 0)
        with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
            self.assertEqual(client.noop()[0], 250)


class PerlComparisonTests(unittest.TestCase):
    def test_penalty_box_reply_as_perl_094(self):
        """A client in the penalty box (captured now) gets the same reply from Perl 0.94's
        karma (its DBM written by Perl's DB_File) and from ours (captured with the command)."""
        from tests.support.perl_qpsmtpd import PERL_PLUGIN_DIR, give_to_perl_user, shared_root, \
            start_forkserver
        root = shared_root(self, "qptx-karma-")
        lines = ["karma reject connect penalty_days 1", "rcpt_ok"]
        perl = write_config(os.path.join(root, "perl"), lines, {"plugin_dirs": PERL_PLUGIN_DIR})
        db_dir = os.path.join(root, "ours-db")
        os.makedirs(db_dir)
        ours = write_config(os.path.join(root, "ours"), [lines[0] + " db_dir " + db_dir, lines[1]])
        # 0.94's karma ignores db_dir and, with none of its directories present, uses the
        # current directory: the forkserver runs in root
        subprocess.run(["perl", "-MDB_File", "-MFcntl", "-e",
                        'tie my %db, "DB_File", $ARGV[0], O_CREAT|O_RDWR, 0600 or die $!;'
                        ' $db{"2130706433"} = join ":", time, 1, 0, 0; untie %db',
                        os.path.join(root, "karma.dbm")], check=True)
        give_to_perl_user(root)
        self.assertEqual(karma("--config", ours, "capture", "127.0.0.1")[0], 0)
        perl_port = start_forkserver(self, perl)
        _, our_port, _ = start_twistd(self, ours)
        replies = []
        for port in (perl_port, our_port):
            with self.assertRaises(smtplib.SMTPConnectError) as caught:
                smtplib.SMTP("127.0.0.1", port, timeout=15)
            replies.append((caught.exception.smtp_code, caught.exception.smtp_error))
        self.assertEqual(replies[0], (550, b"You were naughty. You cannot connect for 1.00 more days."))
        self.assertEqual(replies[1], replies[0])
