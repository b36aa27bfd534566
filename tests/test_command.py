"""Tests for qpsmtpd_tx.command: command line splitting and MAIL/RCPT/HELO arguments.

Rows marked ``# 0.94:`` are where qpsmtpd 0.94 behaves differently, on purpose. The other
rows were checked against 0.94's Qpsmtpd::Command / Qpsmtpd::SMTP.
"""

from twisted.trial import unittest

from qpsmtpd_tx.address import Address
from qpsmtpd_tx.command import (
    CommandSyntaxError,
    parse_helo,
    parse_mail_from,
    parse_rcpt_to,
    recipient_address,
    sender_address,
    split_command,
)

CMD = "Syntax error in command"
PARAMS = "Syntax error in parameters"
ADDRESS = "Syntax error in address"
BAD_SENDER = "could not parse your mail from command"
BAD_RCPT = "could not parse recipient"

# line → (verb, rest, valid)
SPLIT_TABLE = [
    ("MAIL FROM:<a@b.example>", ("mail", "FROM:<a@b.example>", True)),
    ("quit", ("quit", None, True)),
    ("QUIT ", ("quit", "", True)),
    ("helo  foo bar", ("helo", "foo bar", True)),
    ("Rcpt TO:<a@b.example>  NOTIFY=NEVER", ("rcpt", "TO:<a@b.example>  NOTIFY=NEVER", True)),
    (" quit", ("", "quit", False)),
    ("", ("", None, False)),
    ("abcdefghijkl x", ("abcdefghijkl", "x", True)),
    ("abcdefghijklm x", ("abcdefghijklm", "x", False)),
    ("x_1", ("x_1", None, True)),
    ("MA-IL x", ("ma-il", "x", False)),
    ("mail\tfrom:<a@b.example>", ("mail\tfrom:<a@b.example>", None, False)),
    ("m\u00e4il x", ("m\u00e4il", "x", False)),
]

# HELO/EHLO argument → (host, extra words)
HELO_TABLE = [
    (None, (None, [])),
    ("", (None, [])),
    ("foo.example", ("foo.example", [])),
    ("[192.0.2.1]", ("[192.0.2.1]", [])),
    ("foo bar  baz ", ("foo", ["bar", "baz"])),
    ("foo\tbar", ("foo\tbar", [])),
    (" foo", (None, ["foo"])),
]

# MAIL argument → (path, params) or the error text
MAIL_TABLE = [
    # addresses.t
    ("FROM:<ask@perl.org>", ("<ask@perl.org>", {})),
    ("FROM:<ask @perl.org>", ("<ask @perl.org>", {})),  # refused later by sender_address
    ("FROM:ask@perl.org", ("ask@perl.org", {})),
    ("FROM:ask@[1.2.3.4]", ("ask@[1.2.3.4]", {})),
    ("FROM:<ask@perl.org> SIZE=1230", ("<ask@perl.org>", {"size": "1230"})),
    ("FROM:<>", ("<>", {})),
    ("FROM:<ask@perl.org> SIZE=1230 CORRECT-WITHOUT-ARG",
     ("<ask@perl.org>", {"size": "1230", "correct-without-arg": None})),
    ("FROM:", ("<>", {})),
    # FROM: and spacing
    ("from:<a@b.example>", ("<a@b.example>", {})),
    ("From:   <a@b.example>", ("<a@b.example>", {})),
    ("FROM:\t<a@b.example>", ("<a@b.example>", {})),
    ("FROM:   ", ("<>", {})),
    ("FROM :<a@b.example>", CMD),
    ("<a@b.example>", CMD),
    ("TO:<a@b.example>", CMD),
    ("", CMD),
    (None, (None, {})),  # bare "MAIL": sender_address answers
    # parameters
    ("FROM:<a@b.example> foo=bar baz", ("<a@b.example>", {"foo": "bar", "baz": None})),
    ("FROM:<a@b.example>  BODY=8BITMIME   ", ("<a@b.example>", {"body": "8BITMIME"})),
    ("FROM:<a@b.example>\tSIZE=1", ("<a@b.example>", {"size": "1"})),
    ("FROM:<a@b.example> SIZE=1 size=2", ("<a@b.example>", {"size": "2"})),
    ("FROM:<> SIZE=0", ("<>", {"size": "0"})),
    ("FROM:<a@b.example> AUTH=<>", ("<a@b.example>", {"auth": "<>"})),
    ("FROM:<a@b.example> RET=HDRS ENVID=QQ314159",
     ("<a@b.example>", {"ret": "HDRS", "envid": "QQ314159"})),
    ("FROM:<a@b.example> =bad", PARAMS),
    ("FROM:<a@b.example> SIZE=1=2", PARAMS),
    ("FROM:<a@b.example> SIZE=", PARAMS),
    ("FROM:<a@b.example> -SIZE=1", PARAMS),
    ("FROM:<a@b.example> SIZE=1\x01", PARAMS),
    ("FROM:<a@b.example> <c@d.example>", PARAMS),
    ("FROM:<ab> =bad", ("<ab> =bad", {})),  # no "@": passed on, refused by sender_address
    ("FROM:user=name@example.net", ("user=name@example.net", {})),  # the first word stays
    ("FROM:<a@b.example>SIZE=10", ("<a@b.example>SIZE=10", {})),
    ('FROM:<"q u"@example.org>', ('<"q u"@example.org>', {})),
    ('FROM:<"q u"@example.org> SIZE=5', ('<"q u"@example.org>', {"size": "5"})),
    ("FROM:0", ("0", {})),  # 0.94: "0" is false in Perl, so it becomes <>
]

# RCPT argument → (path, params) or the error text
RCPT_TABLE = [
    ("TO:<a@b.example>", ("<a@b.example>", {})),
    ("to: <a@b.example> NOTIFY=NEVER ORCPT=rfc822;a@b.example",
     ("<a@b.example>", {"notify": "NEVER", "orcpt": "rfc822;a@b.example"})),
    ("TO:<>", ("<>", {})),  # refused later by recipient_address
    ("TO:postmaster", ("postmaster", {})),
    ("TO:<postmaster>", ("<postmaster>", {})),
    ("TO:", ADDRESS),
    ("TO:  ", ADDRESS),
    ("TO :<a@b.example>", CMD),
    ("FROM:<a@b.example>", CMD),
    ("TO:<a@b.example> =x", PARAMS),
    ("TO:<a@b.example> NOTIFY=SUCCESS,FAILURE", ("<a@b.example>", {"notify": "SUCCESS,FAILURE"})),
    (None, (None, {})),
]

# path after mail_pre → formatted sender or the error text
SENDER_TABLE = [
    ("<ask@perl.org>", "<ask@perl.org>"),
    ("<ask@[1.2.3.4]>", "<ask@[1.2.3.4]>"),
    ("<>", "<>"),
    ("<#@[]>", "<>"),
    ("<[undefined]>", "<>"),
    ("<foo@[undefined]>", "<>"),
    ("<postmaster>", "<postmaster>"),
    ("[undefined]", BAD_SENDER),
    ("ask@perl.org", BAD_SENDER),  # bare: needs a mail_pre plugin to add the brackets
    ("<ask @perl.org>", BAD_SENDER),  # 0.94: sender "ask "@perl.org
    ('<"q u"@example.org>', '<"q u"@example.org>'),  # 0.94: refused
    ("<ab> =bad", BAD_SENDER),
    ("<x@example.org.>", BAD_SENDER),
    ("<a@b.example>SIZE=10", BAD_SENDER),
    ("<a@b.example>\n", BAD_SENDER),  # 0.94: accepted (Perl's $ matches before a newline)
    ("0", BAD_SENDER),
    ("", BAD_SENDER),
    (None, BAD_SENDER),
]

# path after rcpt_pre → formatted recipient or the error text
RECIPIENT_TABLE = [
    ("<a@b.example>", "<a@b.example>"),
    ("<postmaster>", "<postmaster>"),
    ("<Postmaster@B.example>", "<Postmaster@B.example>"),
    ("<@relay.example:x@example.org>", "<x@example.org>"),
    ("<>", BAD_RCPT),
    ("<#@[]>", BAD_RCPT),
    ("<[undefined]>", BAD_RCPT),
    ("postmaster", BAD_RCPT),
    ("a@b.example", BAD_RCPT),
    ("<x@example.org.>", BAD_RCPT),
    (None, BAD_RCPT),
]


def outcome(func, arg):
    """``func(arg)``, or the message of the CommandSyntaxError it raises."""
    try:
        return func(arg)
    except CommandSyntaxError as e:
        return e.message


class CommandTableTests(unittest.TestCase):
    """Each parser against its table."""

    def check_table(self, func, table, convert=lambda result: result):
        failures = []
        for arg, expected in table:
            got = outcome(func, arg)
            if not isinstance(got, str):
                got = convert(got)
            if got != expected:
                failures.append("%r: expected %r, got %r" % (arg, expected, got))
        self.assertEqual(failures, [])

    def test_split_command(self):
        self.check_table(split_command, SPLIT_TABLE)

    def test_parse_helo(self):
        self.check_table(parse_helo, HELO_TABLE)

    def test_parse_mail_from(self):
        self.check_table(parse_mail_from, MAIL_TABLE)

    def test_parse_rcpt_to(self):
        self.check_table(parse_rcpt_to, RCPT_TABLE)

    def test_sender_address(self):
        self.check_table(sender_address, SENDER_TABLE, Address.format)

    def test_recipient_address(self):
        self.check_table(recipient_address, RECIPIENT_TABLE, Address.format)


class LongLineTests(unittest.TestCase):
    """Pathological lines take linear time (these would hang a backtracking check)."""

    def test_many_at_signs(self):
        rest = "FROM:" + "@" * 200000
        self.assertEqual(parse_mail_from(rest), ("@" * 200000, {}))
        self.assertEqual(outcome(parse_mail_from, rest + "@ x=="), PARAMS)

    def test_many_params(self):
        rest = "FROM:<a@b.example>" + " X=1" * 50000
        self.assertEqual(parse_mail_from(rest), ("<a@b.example>", {"x": "1"}))

    def test_many_spaces(self):
        self.assertEqual(outcome(parse_rcpt_to, "TO:<a@b.example>" + " " * 200000 + "=x"), PARAMS)


class CommandSyntaxErrorTests(unittest.TestCase):
    """The exception carries the reply text."""

    def test_message(self):
        e = self.assertRaises(CommandSyntaxError, parse_mail_from, "FROM :<a@b.example>")
        self.assertEqual(e.message, "Syntax error in command")
        self.assertEqual(str(e), "Syntax error in command")
        self.assertIsInstance(e, ValueError)


class MailFlowTests(unittest.TestCase):
    """The two steps together, as the session runs them (addresses.t)."""

    def mail(self, line, add_brackets=False):
        verb, rest, valid = split_command(line)
        self.assertEqual((verb, valid), ("mail", True))
        path, params = parse_mail_from(rest)
        if add_brackets and not path.startswith("<"):
            # what a dont_require_anglebrackets mail_pre plugin does
            path = "<%s>" % path
        return sender_address(path), params

    def test_addresses_t(self):
        sender, params = self.mail("MAIL FROM:<ask@perl.org>")
        self.assertEqual(sender.address, "ask@perl.org")
        sender, _ = self.mail("MAIL FROM:ask@perl.org", add_brackets=True)
        self.assertEqual(sender.format(), "<ask@perl.org>")
        sender, _ = self.mail("MAIL FROM:ask@[1.2.3.4]", add_brackets=True)
        self.assertEqual(sender.format(), "<ask@[1.2.3.4]>")
        sender, params = self.mail("MAIL FROM:<ask@perl.org> SIZE=1230")
        self.assertEqual((sender.format(), params), ("<ask@perl.org>", {"size": "1230"}))
        sender, _ = self.mail("MAIL FROM:<>")
        self.assertTrue(sender.is_null)
        sender, _ = self.mail("MAIL FROM:")
        self.assertEqual(sender.format(), "<>")

    def test_bare_address_without_plugin(self):
        e = self.assertRaises(CommandSyntaxError, self.mail, "MAIL FROM:ask@perl.org")
        self.assertEqual(e.message, BAD_SENDER)

    def test_space_in_local_part(self):
        # 0.94: 250, sender address "ask @perl.org" (addresses.t)
        e = self.assertRaises(CommandSyntaxError, self.mail, "MAIL FROM:<ask @perl.org>")
        self.assertEqual(e.message, BAD_SENDER)

    def test_bare_mail(self):
        e = self.assertRaises(CommandSyntaxError, self.mail, "MAIL")
        self.assertEqual(e.message, BAD_SENDER)

    def test_rcpt_null(self):
        path, _ = parse_rcpt_to(split_command("RCPT TO:<>")[1])
        e = self.assertRaises(CommandSyntaxError, recipient_address, path)
        self.assertEqual(e.message, BAD_RCPT)
