"""Incoming Authentication-Results fields written to fool or stall us, on a server on a
loopback socket: a field that RFC 8601 reads as ours is removed however its authserv-id is
written (quoted, followed by a version, after a comment holding a ``;``), and a field of
hostile comments does not hold the server up (it used to cost minutes of CPU)."""

from twisted.trial import unittest

from qpsmtpd_tx import arc_override, cfws
from qpsmtpd_tx.authresults import authserv_id
from tests.support.authresults_cases import entry_in_field
from tests.support.filter_cases import FilterTestCase, message

PLUGINS = ["rcpt_ok", "auth_result data_post dkim=pass header.d=client.example"]
OURS = "mx.example.org; auth=none; dkim=pass header.d=client.example"


class AuthservIdTests(unittest.TestCase):
    def test_as_rfc_8601_reads_it(self):
        for value in ('"mx.example.org"; dkim=pass', "mx.example.org 1; dkim=pass",
                      "(a;b) mx.example.org; dkim=pass", "mx.example.org.; dkim=pass",
                      " (x (nested) y)\r\n MX.Example.Org(c); none", '"mx.exa\\mple.org";',
                      "mx.example.org/1; spf=pass"):
            self.assertEqual(authserv_id(value), "mx.example.org", value)
        self.assertEqual(authserv_id("(unclosed mx.example.org; none"), "")
        self.assertEqual(authserv_id(""), "")
        self.assertEqual(authserv_id("other.example; mx.example.org"), "other.example")

    def test_comments_replaced_at_any_depth(self):
        self.assertEqual(cfws.without_comments("a (b (c) d) e (f"), "a   e  ")
        self.assertEqual(cfws.without_comments("a \\(b) c", ""), "a \\ c")

    def test_arc_results_ignore_comments_at_any_depth(self):
        """A comment two levels deep is a comment (the old pattern read one level: the
        ``header.d`` inside it counted)."""
        value = ("i=1; lists.example; dkim=pass header.d=list.example "
                 "(from (a (b)) header.d=bank.example ) x=1")
        self.assertEqual(arc_override.parse_results(value),
                         [("dkim", "pass", {"header.d": "list.example", "x": "1"})])
        hostile = 'i=1; lists.example; dkim=pass reason="' + '\\"' * 50000
        self.assertEqual(arc_override.parse_results(hostile),
                         [("dkim", "pass", {"reason": '"' * 50000})])


class EntryTests(unittest.TestCase):
    def test_an_arc_reason_cannot_break_the_field(self):
        """A key name made of a folded s= (CR LF in it) reached arc's entry as it was."""
        from qpsmtpd_tx import arc
        entry = entry_in_field(arc.Verdict(
            "temperror", "key lookup: s\r\n 1._domainkey.x.example TXT: server failure"
        ).auth_result("192.0.2.1"))
        self.assertEqual(entry, 'arc=temperror reason="key lookup: s?? '
                                '1._domainkey.x.example TXT: server failure"')


class HostileFieldTests(FilterTestCase):
    async def test_spoofed_fields_in_any_rfc_8601_form_are_removed(self):
        self.serve(PLUGINS)
        spoofed = ('Authentication-Results: "mx.example.org"; dkim=pass header.d=bank.example\r\n'
                   "Authentication-Results: mx.example.org 1; spf=pass\r\n"
                   "Authentication-Results: (see; below) mx.example.org; dmarc=pass\r\n"
                   "Authentication-Results: MX.example.org.; arc=pass\r\n"
                   "Authentication-Results: other.example; spf=fail\r\n")
        outcome = await self.send(message("hi", extra=spoofed))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("Authentication-Results"),
                         [OURS, "other.example; spf=fail"])

    async def test_a_field_of_unclosed_comments_is_read_at_once(self):
        """``(\\(\\(…`` (200 KB, folded: a header line is shorter) made the old pattern start
        again at every ``(``: minutes of CPU in the reactor before the reply. The bound below
        is generous for a linear read."""
        self.serve(PLUGINS)
        hostile = "Authentication-Results: (" + "\r\n ".join(["\\(" * 500] * 200) + "\r\n"
        outcome = await self.send(message("hi", extra=hostile))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(len(outcome.header.get("Authentication-Results")), 2)

    test_a_field_of_unclosed_comments_is_read_at_once.timeout = 30
