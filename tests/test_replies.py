"""The reply table (qpsmtpd_tx.replies): its shape and how a hook result picks a row.

The codes and texts themselves are pinned end to end by test_session and test_differential.
"""

from twisted.trial import unittest

from qpsmtpd_tx import codes, replies
from qpsmtpd_tx.hooks import HookResult
from qpsmtpd_tx.interfaces import HOOK_NAMES


class TableTests(unittest.TestCase):
    """The table names real hooks, real reply codes and known follow-up steps."""

    def test_hooks_and_codes(self):
        for hook, rows in replies.REPLIES.items():
            self.assertIn(hook, HOOK_NAMES)
            for result, reply in rows.items():
                self.assertTrue(result in (replies.ANY, replies.TIMEOUT, 0)
                                or result in codes.CODE_NAMES, (hook, result))
                if reply is not None and reply.code is not None:
                    self.assertTrue(200 <= reply.code <= 599, (hook, result))

    def test_an_unknown_step_is_refused(self):
        self.assertRaises(ValueError, replies._expand, {"noop": {codes.DENY: (500, "fnish", "x")}})


class ReplyForTests(unittest.TestCase):
    """Own row, else ANY, else the success path; a timeout has its own row or a 451."""

    def test_lookup(self):
        rcpt = replies.REPLIES["rcpt"]
        self.assertIs(replies.reply_for("rcpt", HookResult(codes.DENY)), rcpt[codes.DENY])
        self.assertIs(replies.reply_for("rcpt", HookResult(codes.DECLINED)), rcpt[replies.ANY])
        self.assertIsNone(replies.reply_for("rcpt", HookResult(codes.OK)))
        self.assertIsNone(replies.reply_for("mail", HookResult(codes.OK)))
        self.assertIsNone(replies.reply_for("mail_pre", HookResult(codes.DENY)))

    def test_timeouts(self):
        timed_out = HookResult(codes.DENYSOFT, ["late"], None, timed_out=True)
        self.assertIs(replies.reply_for("mail_pre", timed_out), replies.TIMED_OUT)
        self.assertEqual(replies.reply_for("queue", timed_out).then, ("outcome", "finish"))
        self.assertEqual(replies.reply_for("quit", timed_out).code, 221)

    def test_ehlo_shares_helo_rows(self):
        self.assertEqual(replies.REPLIES["ehlo"], replies.REPLIES["helo"])
        self.assertEqual(replies.REPLIES["ehlo_parse"], replies.REPLIES["helo_parse"])
