"""The ``uribl`` plugin against a real DNS server: the suite's private NSD (tests/support/dns.py)
with zones each test writes, reached through the ``dns_servers`` config item by the server on a
loopback socket, through ``/etc/resolv.conf`` by a twistd process, and compared with Perl
qpsmtpd 0.94 on the same config and DNS server. The names found in a message are tested on
their own in tests/test_uri_hosts.py."""

import os

from twisted.internet import reactor
from twisted.internet.task import deferLater

from qpsmtpd_tx import codes
from qpsmtpd_tx.testing import write_config
from tests.support.dns import private_dns
from tests.support.filter_cases import FilterTestCase, message
from tests.support.perl_qpsmtpd import start_both
from tests.support.smtp_session import data_reply
from tests.support.processes import start_twistd

LISTED_TEXT = "Blocked, see http://lookup.example/"


class URIBLCase(FilterTestCase):
    """A private DNS list zone per test, and a server asking it."""

    def setUp(self):
        self.dns = private_dns()

    def list_zone(self, records, prefix="uribl"):
        """A new zone serving ``records`` ``(name, type, data)``; returns its name."""
        return self.dns.set_zone(self.dns.unique_zone(prefix), records)

    def serve_uribl(self, zones_text, args="", files=None, server=None, before=()):
        files = dict(files or {})
        files["uribl_zones"] = zones_text
        files["dns_servers"] = server or self.dns.address
        return self.serve(list(before) + ["rcpt_ok", ("uribl " + args).strip()], files)

    def listed(self, name, address="127.0.0.2", text=LISTED_TEXT):
        return [(name, "A", address), (name, "TXT", text)]


class ActionTests(URIBLCase):
    async def test_add_header_is_the_default(self):
        zone = self.list_zone(self.listed("spam.example.com"))
        self.serve_uribl(zone)
        outcome = await self.send(message("buy at http://www.spam.example.com/now"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.top(1),
                         ["X-URIBL-Match: spam.example.com in %s: %s" % (zone, LISTED_TEXT)])
        self.assertLogged(codes.LOGWARN, r"^spam\.example\.com in %s: " % zone)

    async def test_deny_and_denysoft(self):
        zone = self.list_zone(self.listed("spam.example.com"))
        self.serve_uribl("%s 0 deny" % zone)
        outcome = await self.send(message("see spam.example.com"))
        self.assertEqual(outcome.data, (552, "spam.example.com in %s: %s" % (zone, LISTED_TEXT)))
        self.assertIsNone(outcome.queued)

    async def test_denysoft_argument(self):
        zone = self.list_zone(self.listed("spam.example.com"))
        self.serve_uribl(zone, "action denysoft")
        outcome = await self.send(message("see spam.example.com"))
        self.assertEqual(outcome.data, (452, "spam.example.com in %s: %s" % (zone, LISTED_TEXT)))

    async def test_log_only_logs(self):
        zone = self.list_zone(self.listed("spam.example.com"))
        self.serve_uribl("%s -1 log" % zone)
        outcome = await self.send(message("see spam.example.com"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.count("X-URIBL-Match"), 0)
        self.assertLogged(codes.LOGWARN, r"^spam\.example\.com in ")

    async def test_unlisted_passes_untouched(self):
        zone = self.list_zone(self.listed("spam.example.com"))
        self.serve_uribl("%s 0 deny" % zone)
        outcome = await self.send(message("see http://clean.example.org/ and ham.example.net"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.header.count("X-URIBL-Match"), 0)
        # clean.example.org, example.org, ham.example.net, example.net: asked, none listed
        self.assertLogged(codes.LOGINFO, r"^4 lookups finished in .* \(0 matches\)$")

    async def test_no_uris(self):
        self.serve_uribl(self.list_zone([]))
        outcome = await self.send(message("nothing to see here"))
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGINFO, "^pass, No URIs found in mail$")

    async def test_address_in_a_uri_is_asked_reversed(self):
        zone = self.list_zone(self.listed("10.2.0.192", text=""))
        self.serve_uribl("%s 0 deny" % zone)
        outcome = await self.send(message("go http://user@192.0.2.10:8080/x"))
        # an empty TXT: the text is the address, as in 0.94
        self.assertEqual(outcome.data, (552, "10.2.0.192 in %s: 127.0.0.2" % zone))

    async def test_whitelisted_domain_is_not_asked(self):
        zone = self.list_zone(self.listed("example.com"))
        self.serve_uribl("%s 0 deny" % zone, files={"uribl_whitelist_domains": "Example.COM"})
        outcome = await self.send(message("http://example.com/ http://www.example.com/"))
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGINFO, "^pass, No URIs found in mail$")

    async def test_relay_client_is_not_checked(self):
        zone = self.list_zone(self.listed("spam.example.com"))
        self.serve_uribl("%s 0 deny" % zone, files={"relayclients": "127.0.0.1"},
                         before=["relay"])
        self.assertEqual((await self.send(message("see spam.example.com"))).data[0], 250)
        self.assertLogged(codes.LOGINFO, "^skip, relay client or whitelisted$")

    async def test_headers_only_with_scan_headers(self):
        zone = self.list_zone(self.listed("spam.example.com"))
        self.serve_uribl("%s 0 deny" % zone)
        text = message("clean body", extra="X-Link: http://spam.example.com/\r\n")
        self.assertEqual((await self.send(text)).data[0], 250)
        self.serve_uribl("%s 0 deny" % zone, "scan-headers 1")
        self.assertEqual((await self.send(text)).data[0], 552)
        self.serve_uribl("%s 0 deny" % zone, "check-headers 1")     # 0.94's other name
        self.assertEqual((await self.send(text)).data[0], 552)


class MaskTests(URIBLCase):
    """A combined list answers 127.0.0.<bits>; the zone's mask says which bits count."""

    async def outcome(self, mask, answer):
        zone = self.list_zone(self.listed("multi.example.com", address=answer))
        self.serve_uribl("%s %s deny" % (zone, mask))
        return (await self.send(message("see multi.example.com"))).data[0]

    async def test_bit_in_mask(self):
        self.assertEqual(await self.outcome("2,8", "127.0.0.8"), 552)

    async def test_bit_not_in_mask(self):
        self.assertEqual(await self.outcome("2,8", "127.0.0.4"), 250)

    async def test_negative_mask_is_every_list(self):
        self.assertEqual(await self.outcome("-1", "127.0.0.64"), 552)

    async def test_several_zones_each_with_its_action(self):
        tagged = self.list_zone(self.listed("a.example.com", text="in A"))
        refused = self.list_zone(self.listed("b.example.com", text="in B"))
        self.serve_uribl("%s 2 add-header\n%s 2 deny" % (tagged, refused))
        outcome = await self.send(message("a.example.com"))
        self.assertEqual(outcome.top(1), ["X-URIBL-Match: a.example.com in %s: in A" % tagged])
        outcome = await self.send(message("a.example.com b.example.com"))
        self.assertEqual(outcome.data, (552, "b.example.com in %s: in B" % refused))


class FailureTests(URIBLCase):
    """A DNS list that fails or never answers is a logged skip, never a rejection."""

    async def test_servfail_zone_is_skipped(self):
        zone = self.dns.servfail_zone(self.dns.unique_zone("broken"))
        self.serve_uribl("%s 0 deny" % zone)
        outcome = await self.send(message("see spam.example.com"))
        self.assertEqual(outcome.data[0], 250)
        # spam.example.com and example.com: one line for both
        self.assertLogged(codes.LOGINFO, r"^skip, 2 lookups in %s failed "
                          r"\(spam\.example\.com\.%s A: server failure" % (zone, zone))

    async def test_silent_zone_times_out(self):
        zone = self.list_zone(self.listed("spam.example.com"), prefix="silent")
        self.dns.set_silent(zone)
        self.addCleanup(self.dns.clear_shaping, zone)
        self.serve_uribl("%s 0 deny" % zone, "timeout 0.5", server=self.dns.shaped_address)
        outcome = await self.send(message("see spam.example.com"))
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGINFO, r"^skip, 2 lookups in %s failed \(.* timed out" % zone)


class ParallelTests(URIBLCase):
    async def test_every_lookup_is_sent_before_any_answer(self):
        # A list that never answers: one lookup after another would send one query per
        # `timeout`; all at once, the DNS server sees all 12 while the reply is still due.
        zone = self.list_zone([], prefix="silent")
        self.dns.set_silent(zone)
        self.addCleanup(self.dns.clear_shaping, zone)
        self.serve_uribl("%s 0 deny" % zone, "timeout 3", server=self.dns.shaped_address)
        hosts = " ".join("h%d.example.com" % i for i in range(11))   # and example.com
        client = await self.open()
        for line in ("MAIL FROM:<a@b.example>", "RCPT TO:<alice@example.com>", "DATA"):
            self.assertIn((await client.command(line))[0], (250, 354))
        before = self.dns.shaper_stats()["queries"]
        client.send(message(hosts) + ".")
        reply = client.reply()
        while self.dns.shaper_stats()["queries"] - before < 12:
            self.assertFalse(reply.called, "the reply came before all 12 queries were sent")
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual((await reply)[0], 250)
        self.assertLogged(codes.LOGINFO, r"^skip, 12 lookups in %s failed \(.* timed out" % zone)


class BoundTests(URIBLCase):
    async def test_names_per_message_are_bounded(self):
        zone = self.list_zone(self.listed("host70.example.com"))
        self.serve_uribl("%s 0 deny" % zone, "max_names 6")
        hosts = " ".join("http://host%d.example.com/" % i for i in range(100))
        outcome = await self.send(message(hosts))
        # host0..host4 and example.com: six names; host70 is never asked
        self.assertEqual(outcome.data[0], 250)
        self.assertLogged(codes.LOGINFO, r"^stopped after 6 names \(max_names\)$")
        self.assertLogged(codes.LOGINFO, r"^6 lookups finished")

    async def test_big_spooled_message_is_scanned_to_its_end(self):
        zone = self.list_zone(self.listed("late.example.com"))
        self.serve_uribl("%s 0 deny" % zone, files={"size_threshold": "10000"})
        filler = ("x" * 76 + "\r\n") * 40000   # ~3 MB, spooled to a file
        outcome = await self.send(message(filler + "http://late.example.com/"))
        self.assertEqual(outcome.data[0], 552)


class StartupTests(URIBLCase):
    def test_bad_mask_names_file_and_line(self):
        self.assertStartupError("uribl", "uribl_zones:2: malformed mask '0x10' for b.example",
                                {"uribl_zones": "a.example 2 deny\nb.example 0x10"})

    def test_bad_action_names_file_and_line(self):
        self.assertStartupError("uribl", r"uribl_zones:1: unknown action 'reject'",
                                {"uribl_zones": "a.example 2 reject"})

    def test_bad_arguments(self):
        self.assertStartupError("uribl action bounce", "action must be one of")
        self.assertStartupError("uribl timeout soon", "timeout must be a positive number")
        self.assertStartupError("uribl scan-headers maybe", "scan-headers must be 0 or 1")
        self.assertStartupError("uribl frobnicate 1", "unknown argument 'frobnicate'")


class ResolvConfTests(URIBLCase):
    """twistd finds the DNS server the way an operator's does: /etc/resolv.conf."""

    def test_twistd_through_resolv_conf(self):
        zone = self.list_zone(self.listed("spam.example.com"))
        config = write_config(os.path.abspath(self.mktemp()),
                              ["rcpt_ok", "uribl", "queue/maildir %s" % os.path.abspath("md")],
                              {"uribl_zones": "%s 0 deny" % zone})
        _, port, _ = start_twistd(self, config, nameservers=[self.dns.address])
        self.assertEqual(send_with_smtplib(port, "see http://spam.example.com/"),
                         (552, "spam.example.com in %s: %s" % (zone, LISTED_TEXT)))
        self.assertEqual(send_with_smtplib(port, "see http://ham.example.com/")[0], 250)


def send_with_smtplib(port, body):
    """The reply to the end of DATA for one message with ``body``, as ``(code, text)``."""
    return data_reply(port, "From: sender@client.example\r\nSubject: x\r\n\r\n%s\r\n" % body)


class SameAsPerlTests(URIBLCase):
    """Perl qpsmtpd 0.94 and qpsmtpd-tx, same config and DNS server: the same replies."""

    SESSIONS = ["see http://www.spam.example.com/offer",          # listed, deny zone
                "mail me at someone@ham.example.net",              # not listed
                "http://3232235777/ and http://0x7f.0.0.1/",       # addresses in URIs
                "tagged.example.org only",                         # listed, add-header zone
                "multi.example.com is in the combined list",       # bit outside the mask
                "nothing at all"]

    def test_same_codes(self):
        deny = self.list_zone(self.listed("spam.example.com") + self.listed("1.1.168.192"))
        tag = self.list_zone(self.listed("tagged.example.org") +
                             self.listed("multi.example.com", address="127.0.0.4"))
        files = {"uribl_zones": "%s 2 deny\n%s 2,8\n" % (deny, tag), "rcpthosts": "example.com",
                 "me": "mx.example.org"}
        plugins = ["rcpt_ok", "uribl", "queue/maildir {}"]   # {}: the Maildir
        perl, ours, root = start_both(self, plugins, files, [self.dns.address], "qptx-uribl-")
        replies = {name: [send_with_smtplib(port, body) for body in self.SESSIONS]
                   for name, port in (("perl", perl), ("ours", ours))}
        codes_of = {name: [code for code, _ in got] for name, got in replies.items()}
        self.assertEqual(codes_of["ours"], [552, 250, 552, 250, 250, 250])
        self.assertEqual(codes_of["perl"], codes_of["ours"])
        # the same refusal text too
        self.assertEqual(replies["perl"][0], replies["ours"][0])
        self.assertEqual(replies["perl"][2], replies["ours"][2])
        # the tag on the message accepted from the add-header zone
        tags = {name: tag_lines(os.path.join(root, name + "-md"), "tagged.example.org only")
                for name in ("perl", "ours")}
        self.assertEqual(tags["ours"], ["X-URIBL-Match: tagged.example.org in %s: %s"
                                        % (tag, LISTED_TEXT)])
        self.assertEqual(tags["perl"], tags["ours"])


def tag_lines(maildir, body):
    """The X-URIBL-Match lines of the one message in ``maildir`` whose text has ``body``."""
    found = []
    for name in os.listdir(os.path.join(maildir, "new")):
        with open(os.path.join(maildir, "new", name), encoding="latin-1") as f:
            text = f.read()
        if body in text:
            found.append([line for line in text.split("\n") if line.startswith("X-URIBL-Match:")])
    assert len(found) == 1, (maildir, found)
    return found[0]
