"""Tests of the bogus_bounce plugin and its old name check_bogus_bounce: bounces to several
recipients or with a return path, refused at the end of DATA or only logged. MemoryClient
(an in-memory SMTPProtocol) for the rules, a loopback socket for ``EndToEndTests``.
"""

from tests.support.envelope_cases import (
    MESSAGE, QUEUED, EndToEndTestCase, PluginTestCase, mail_ok, rcpt_ok)


TOO_MANY = "fail, this bounce message does not have 1 recipient"
RETURN_PATH = "a bounce return path must be empty (RFC 3834)"


class BogusBounceTests(PluginTestCase):
    def deliver(self, args, sender="<>", recipients=("u@example.com",), message=MESSAGE,
                name="bogus_bounce", plugins_before=()):
        """The reply at the end of DATA, and the client."""
        client = self.client(list(plugins_before) + [("%s %s" % (name, args)).strip(),
                                                     "rcpt_ok", "scripted queue OK"])
        client.command("HELO c.example")
        self.assertEqual(client.command("MAIL FROM:%s" % sender), mail_ok(sender))
        for rcpt in recipients:
            self.assertEqual(client.command("RCPT TO:<%s>" % rcpt), rcpt_ok("<%s>" % rcpt))
        return self.send_message(client, message), client

    def test_bounce_to_several_recipients(self):
        two = ("u@example.com", "v@example.com")
        self.assertEqual(self.deliver("deny", recipients=two)[0], "552 %s\r\n" % TOO_MANY)
        self.assertEqual(self.deliver("denysoft", recipients=two)[0], "452 %s\r\n" % TOO_MANY)
        self.assertEqual(self.deliver("deny")[0], QUEUED)
        self.assertEqual(self.deliver("deny", sender="<a@b.example>", recipients=two)[0], QUEUED)

    def test_return_path_must_be_empty(self):
        def with_return_path(value):
            return "Return-Path: %s\r\n%s" % (value, MESSAGE)
        for value in ("<a@b.example>", "a@b.example"):
            self.assertEqual(self.deliver("deny", message=with_return_path(value))[0],
                             "552 %s\r\n" % RETURN_PATH, value)
        for value in ("<>", ""):
            self.assertEqual(self.deliver("deny", message=with_return_path(value))[0], QUEUED,
                             value)
        self.assertEqual(self.deliver("deny", sender="<a@b.example>",
                                      message=with_return_path("<x@y.example>"))[0], QUEUED)

    def test_log_only_by_default(self):
        two = ("u@example.com", "v@example.com")
        for args in ("", "log", "LOG", "action log", "deny reject 0"):
            self.assertEqual(self.deliver(args, recipients=two)[0], QUEUED, args)

    def test_reject_and_reject_type_override_the_action(self):
        two = ("u@example.com", "v@example.com")
        table = [
            ("action deny", "552"), ("action denysoft", "452"), ("log reject 1", "552"),
            ("denysoft reject_type perm", "552"), ("deny reject_type temp", "452"),
            ("action deny reject 1 reject_type soft", "452"),
        ]
        for args, code in table:
            self.assertEqual(self.deliver(args, recipients=two)[0],
                             "%s %s\r\n" % (code, TOO_MANY), args)
        reply, client = self.deliver("deny reject_type disconnect", recipients=two)
        self.assertEqual(reply, "552 %s\r\n" % TOO_MANY)
        self.assertTrue(client.closed)

    def test_reject_naughty(self):
        reply, client = self.deliver("deny reject naughty",
                                     recipients=("u@example.com", "v@example.com"))
        self.assertEqual(reply, QUEUED)
        self.assertEqual(client.session.connection.notes["naughty"], TOO_MANY)

    def test_check_bogus_bounce_is_bogus_bounce(self):
        reply, client = self.deliver("denysoft", recipients=("u@example.com", "v@example.com"),
                                     name="check_bogus_bounce")
        self.assertEqual(reply, "452 %s\r\n" % TOO_MANY)
        self.assertEqual(client.session.server.plugins[0].name, "check_bogus_bounce")

    def test_bad_arguments(self):
        table = [
            ("bogus_bounce reject", "the action must be log, deny or denysoft, not 'reject'"),
            ("bogus_bounce bounce", "the action must be log, deny or denysoft, not 'bounce'"),
            ("bogus_bounce deny action log", "the action is given twice: 'deny' and action 'log'"),
            ("bogus_bounce deny reject 5", "reject must be 0, 1 or naughty, not '5'"),
            ("bogus_bounce reject_type later", "reject_type must be one of"),
            ("bogus_bounce foo bar", "unknown argument 'foo'"),
        ]
        for line, expected in table:
            self.assertStartupError([line], ":1: plugin bogus_bounce: " + expected)
        self.assertStartupError(["check_bogus_bounce deny deny"],
                                ":1: plugin check_bogus_bounce: unknown argument 'deny'")


class EndToEndTests(EndToEndTestCase):
    async def test_bogus_bounce_and_check_bogus_bounce(self):
        for name, code in (("bogus_bounce deny", 552), ("check_bogus_bounce denysoft", 452)):
            client, replies = await self.talk(
                [name, "rcpt_ok", "scripted queue OK"], {},
                ["HELO c.example", "MAIL FROM:<>", "RCPT TO:<u@example.com>",
                 "RCPT TO:<v@example.com>", "DATA"])
            self.assertEqual(replies[-1], (354, ["go ahead"]))
            client.send("Subject: bounce\r\n\r\nbody\r\n.")
            self.assertEqual(await client.reply(),
                             (code, ["fail, this bounce message does not have 1 recipient"]))
