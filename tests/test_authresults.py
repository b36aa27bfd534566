"""One Authentication-Results field per message (RFC 8601), on a server on a loopback socket:
results stored at MAIL and at data_post both reach it, a second message does not repeat the
first one's, and an incoming field with our authserv-id is removed while others stay."""

from twisted.trial import unittest

from qpsmtpd_tx.authresults import authserv_id
from tests.support.filter_cases import FilterTestCase, message

PLUGINS = ["rcpt_ok", "auth_result mail spf=pass smtp.mailfrom=client.example",
           "auth_result data_post dkim=pass header.d=client.example"]


class AuthservIdTests(unittest.TestCase):
    def test_comments_and_space_are_not_part_of_it(self):
        self.assertEqual(authserv_id(" MX.example.org (our (mx)); spf=pass"), "mx.example.org")
        self.assertEqual(authserv_id("mx.example.org 1; none"), "mx.example.org")
        self.assertEqual(authserv_id("none"), "none")


class HeaderTests(FilterTestCase):
    async def test_one_field_with_every_result(self):
        self.serve(PLUGINS)
        outcome = await self.send(message("hello"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.get("Authentication-Results"), [
            "mx.example.org; auth=none; spf=pass smtp.mailfrom=client.example; "
            "dkim=pass header.d=client.example"])

    async def test_second_message_does_not_repeat_the_first_ones_results(self):
        self.serve(PLUGINS)
        client = await self.open()
        for _ in range(2):
            outcome = await self.transaction(client, ["alice@example.com"], message("hi"))
            self.assertEqual(outcome.header.get("Authentication-Results"), [
                "mx.example.org; auth=none; spf=pass smtp.mailfrom=client.example; "
                "dkim=pass header.d=client.example"])
            await client.command("RSET")

    async def test_connection_results_are_on_every_message_once(self):
        """A result stored at connect (fcrdns's iprev) is about the connection."""
        self.serve(["auth_result connect iprev=pass"] + PLUGINS)
        client = await self.open()
        for _ in range(2):
            outcome = await self.transaction(client, ["alice@example.com"], message("hi"))
            self.assertEqual(outcome.header.get("Authentication-Results"), [
                "mx.example.org; auth=none; iprev=pass; spf=pass smtp.mailfrom=client.example; "
                "dkim=pass header.d=client.example"])

    async def test_spoofed_field_with_our_authserv_id_is_removed(self):
        self.serve(PLUGINS)
        spoofed = ("Authentication-Results: MX.Example.ORG (forged);\r\n dkim=pass\r\n"
                   "Authentication-Results: other.example; spf=fail\r\n")
        outcome = await self.send(message("hi", extra=spoofed))
        self.assertEqual(outcome.header.get("Authentication-Results"), [
            "mx.example.org; auth=none; spf=pass smtp.mailfrom=client.example; "
            "dkim=pass header.d=client.example",
            "other.example; spf=fail"])
        self.assertLogged(6, "removed an incoming Authentication-Results field")
