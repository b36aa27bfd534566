"""What the tests of queue/postfix-queue and of queue/smtp-forward share against a real Postfix
(tests/support/postfix.py): the message, the refusing Postfix settings, and the test case
with a front server and Postfix's deliveries."""

from twisted.trial import unittest

from tests.support import harness
from tests.support.processes import setenv
from tests.support.server import TransactionMixin, start_server

HEADER = (b"From: a@b.example\r\nTo: u@example.com\r\nSubject: to postfix\r\n"
          b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-Id: <pq-1@b.example>\r\n")
LONG = b"x" * 5000                       # > 2 * 2048: two L records and an N record
EXACT = b"y" * 2048                      # exactly the split size: one N record
# what the client sends, dot-stuffed
BODY = (b"first\r\n..leading dot\r\n...two dots\r\n\r\ncr\rinside\r\ntrailing space \r\n"
        b"8bit \xc3\xa9\r\n" + LONG + b"\r\n" + EXACT + b"\r\n\ttab\r\nlast\r\n")
# the same, as Postfix should deliver it: dots unstuffed, LF line endings
UNSTUFFED = (HEADER + b"\r\n" + BODY).replace(b"\r\n.", b"\r\n").replace(b"\r\n", b"\n")
# ... and as Postfix delivers it: its cleanup replaces a stray CR with a space
# (cleanup_replace_stray_cr_lf, default yes since 3.7.10); the stand-in test below shows
# that the plugin hands the CR over as it came
DELIVERED = UNSTUFFED.replace(b"cr\rinside", b"cr inside")
AUTH_RESULTS = b"Authentication-Results: mx.example.org; auth=none\n"

HEADER_CHECKS = (
    "/^Subject: reject me/ REJECT refused by the test's header_checks\n"
    "/^Subject: defer me/ REJECT 4.7.0 deferred by the test's header_checks\n")
# a Postfix that refuses things: header checks (cleanup applies them with FLAG_FILTER; smtpd
# always asks for them), a size limit, a hop limit, and two recipients smtpd refuses
STRICT = dict(
    settings={
        "header_checks": "regexp:$config_directory/header_checks",
        "message_size_limit": "20000",
        "hopcount_limit": "5",
        "smtpd_recipient_restrictions": "check_recipient_access inline:{ "
        "{ refused@example.com = REJECT no such user here }, "
        "{ later@example.com = DEFER mailbox busy, try later } }",
    },
    files={"header_checks": HEADER_CHECKS})


def wait_for(predicate, timeout=15.0):
    """:func:`harness.wait_for`, with the time a private Postfix may need."""
    return harness.wait_for(predicate, timeout, 0.05)


class PostfixTestCase(TransactionMixin, unittest.TestCase):
    """Servers with queue/postfix-queue or queue/smtp-forward, and a client that sends."""

    default_message = HEADER + b"\r\n" + BODY
    setenv = setenv

    def start_front(self, queue_line, files=None, plugins=()):
        files = dict(files or {})
        files.setdefault("rcpthosts", "example.com\nexample.net")
        return start_server(self, list(plugins) + ["rcpt_ok", queue_line], files)

    def assert_our_message(self, delivered, original=DELIVERED):
        """``delivered`` is our Received + Authentication-Results, then ``original`` as is."""
        self.assertTrue(delivered.startswith(b"Received: from "), delivered[:200])
        ours, sep, rest = delivered.partition(AUTH_RESULTS)
        self.assertTrue(sep, delivered[:400])
        self.assertIn(b"(HELO client.example) (127.0.0.1)\n by mx.example.org (qpsmtpd-tx/", ours)
        self.assertEqual(rest, original)

    async def settle(self, postfix):
        """Let Postfix deliver everything it has; fail if something stays queued."""
        self.assertTrue(await wait_for(lambda: not postfix.queued()),
                        "still queued: %s\n%s" % (postfix.queued(), postfix.maillog()[-2000:]))
