"""greylisting end to end: real twistd processes sharing one history — two servers on one
private Redis, the two workers of ``--workers 2`` on one SQLite file — with real waits of
a few seconds (``black_timeout`` 1 to 3); Redis killed under a running server; and Perl qpsmtpd
0.94's plugin beside ours, which never greylists."""

import os
import re
import smtplib
import time

from twisted.trial import unittest

from tests.support.harness import write_config
from tests.support.perl_qpsmtpd import PERL_PLUGIN_DIR, give_to_perl_user, shared_root, \
    start_forkserver
from tests.support.processes import poll_until, read_text, start_twistd
from tests.support.redis import shared_redis, start_redis

#: the plugin counts whole seconds, as qpsmtpd does (a triplet stays black while
#: ``int(now) - int(first) < black_timeout``): with ``black_timeout 1`` a retry 50 ms later
#: passes if a second boundary falls between the two. With 3, any retry within 2 s is black.
BLACK_TIMEOUT = 3
#: long enough for any first try to have turned grey
BLACK_WAIT = BLACK_TIMEOUT + 0.2
#: the two workers' test: each sender's tries are surely black within its first second
WORKERS_BLACK_TIMEOUT = 2


def mail_from(port, sender="a@example.net"):
    """``(code, text)`` of MAIL FROM in a new connection (HELO first), then QUIT."""
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
        client.helo("client.example")
        code, text = client.mail(sender)
        return code, text.decode()


def config(testcase, greylisting_args, files=None, black_timeout=1):
    root = os.path.abspath(testcase.mktemp())
    return write_config(root, ["greylisting black_timeout %d grey_timeout 60 %s"
                               % (black_timeout, greylisting_args),
                               "rcpt_ok", "queue/maildir %s/maildir" % root],
                        dict({"loglevel": "6"}, **(files or {})))


class RedisSharedTests(unittest.TestCase):
    def test_a_triplet_deferred_by_one_server_passes_the_other(self):
        redis = shared_redis()
        redis.flush()
        args = "redis_url " + redis.url
        _, port_a, _ = start_twistd(self, config(self, args, black_timeout=BLACK_TIMEOUT))
        _, port_b, log_b = start_twistd(self, config(self, args, black_timeout=BLACK_TIMEOUT))
        first_try = time.monotonic()
        self.assertEqual(mail_from(port_a), (450, "This mail is temporarily denied"))
        # B knows the triplet: still black there too, and the deferrals add up
        self.assertEqual(mail_from(port_b)[0], 450)
        self.assertLess(time.monotonic() - first_try, BLACK_TIMEOUT - 1,
                        "too slow for this test: the retry may have found the triplet grey")
        time.sleep(BLACK_WAIT)
        self.assertEqual(mail_from(port_b)[0], 250)
        self.assertEqual(mail_from(port_a)[0], 250)  # white for A as well
        self.assertTrue(poll_until(lambda: "pass: updated grey->white" in read_text(log_b), 10))
        self.assertIn("fail: black DENYSOFT - 1 deferred connections", read_text(log_b))

    def test_redis_killed_mid_run_fails_open_and_logs(self):
        redis = start_redis()
        self.addCleanup(redis.stop)
        _, port, log = start_twistd(self, config(self, "redis_url %s redis_timeout 1" % redis.url))
        self.assertEqual(mail_from(port)[0], 450)
        redis.process.kill()
        redis.process.wait()
        self.assertEqual(mail_from(port)[0], 250)
        self.assertEqual(mail_from(port, "b@example.net")[0], 250)
        self.assertTrue(poll_until(lambda: "database failed, passing: redis://127.0.0.1:%d/0"
                                   % redis.port in read_text(log), 10), read_text(log)[-3000:])


class WorkersShareTheFileTests(unittest.TestCase):
    def test_both_workers_see_the_same_entries(self):
        """Once both processes serve (warm-up senders), one sender's deferral count goes up
        by one per try whichever process takes it; once white, every process passes it.
        (--reuseport: the kernel spreads connections by their addresses; on one shared
        socket the process that wakes first may take every connection.)"""
        db_dir = os.path.abspath(self.mktemp())
        os.makedirs(db_dir)
        _, port, log = start_twistd(self, config(self, "sender 1 db_dir " + db_dir,
                                                 black_timeout=WORKERS_BLACK_TIMEOUT),
                                    extra=["--workers", "2", "--reuseport"])
        line = re.compile(r"\] (w1\.)?[0-9a-f]+ \(mail\) greylisting: (.*)")

        def lines():
            return line.findall(read_text(log))

        def tries_by_both(sender, limit):
            """Try ``sender`` until both processes have logged a greylisting line since
            ``lines_before`` (at most ``limit`` tries); the (process, text) lines and the
            time of the first reply (the server's "first seen" is no later)."""
            before = len(lines())
            started, first_reply = time.monotonic(), None
            for n in range(1, limit + 1):
                code = mail_from(port, sender)[0]
                first_reply = first_reply or time.monotonic()
                if code != 450:
                    # whole seconds: only a try within black_timeout - 1 s is surely black
                    self.assertLess(time.monotonic() - started, WORKERS_BLACK_TIMEOUT - 1,
                                    "too slow for this test: try %d of %s may have found "
                                    "the triplet grey" % (n, sender))
                self.assertEqual(code, 450)
                self.assertTrue(poll_until(lambda: len(lines()) == before + n, 10))
                if len({worker for worker, _ in lines()[before:]}) == 2:
                    break
            return lines()[before:], first_reply

        for n in range(100):  # the worker needs a moment to start
            if len({w for w, _ in tries_by_both("warm-%d@example.net" % n, 5)[0]}) == 2:
                break
        seen, first_reply = tries_by_both("a@example.net", 40)
        self.assertEqual(len({worker for worker, _ in seen}), 2, seen)
        self.assertEqual([text for _, text in seen],
                         ["fail: initial DENYSOFT, unknown"] +
                         ["fail: black DENYSOFT - %d deferred connections" % n
                          for n in range(1, len(seen))])
        # from the first reply, not from before the first try: the server noted the first
        # try at some moment in between, and a slow try must not shorten the wait
        time.sleep(max(0.0, first_reply + WORKERS_BLACK_TIMEOUT + 0.1 - time.monotonic()))
        for _ in range(6):
            self.assertEqual(mail_from(port)[0], 250)


class PerlComparisonTests(unittest.TestCase):
    def test_perl_094_never_greylists_and_we_do(self):
        """The same plugins line: Perl's first MAIL passes, its log showing the missing
        ``is_p0f_match``; ours defers it."""
        root = shared_root(self, "qptx-greylist-")
        lines = ["greylisting db_dir %s/db", "rcpt_ok"]
        perl = write_config(os.path.join(root, "perl"), [lines[0] % (root + "/perl"), lines[1]],
                            {"plugin_dirs": PERL_PLUGIN_DIR, "loglevel": "7",
                             "logging": "logging/warn 7"})
        ours = write_config(os.path.join(root, "ours"), [lines[0] % (root + "/ours"), lines[1]])
        for side in ("perl", "ours"):
            os.makedirs(os.path.join(root, side, "db"))
        give_to_perl_user(root)
        perl_port = start_forkserver(self, perl)
        _, our_port, _ = start_twistd(self, ours)
        self.assertEqual(mail_from(perl_port)[0], 250)
        self.assertEqual(mail_from(perl_port)[0], 250)
        self.assertEqual(mail_from(our_port), (450, "This mail is temporarily denied"))
        base = os.path.dirname(os.path.dirname(self.mktemp()))
        perl_log = "".join(read_text(os.path.join(d, name)) for d, _, names in os.walk(base)
                           for name in names if name.endswith(".perl.log"))
        self.assertIn("is_p0f_match", perl_log)
