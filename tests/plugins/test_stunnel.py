"""Tests of stunnel: a trusted proxy's PROXY header gives the client's address to every hook.

stunnel itself is not installed here, so the test's client plays the proxy: over a real
loopback socket it sends the PROXY version 1 line stunnel's ``protocol = proxy`` sends first,
then the client's SMTP. Everything on our side is real: the relay, hosts_allow and dnsbl
plugins (dnsbl asking the suite's private NSD), queue/maildir, the core's per-IP limit.
"""

import os

from twisted.internet import reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from qpsmtpd_tx.proxy_header import parse_v1_line
from tests.support.dnslist_cases import DNSListTestCase
from tests.support.harness import StartupErrorMixin, capture_log, maildir_messages
from tests.support.server import SMTPClient, start_server

PROXY = "PROXY TCP4 192.0.2.7 198.51.100.25 50060 465"


async def open_client(testcase, port, header=None, source="127.0.0.1", split=False):
    """Connect from ``source``; send ``header`` first (as a proxy does, before the greeting,
    in two writes if ``split``); read the greeting."""
    client = SMTPClient()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
    await connectProtocol(endpoint, client)
    testcase.addCleanup(client.close)
    if header is not None:
        if split:
            client.transport.write(header[:12].encode())
            await task.deferLater(reactor, 0.05, lambda: None)
            client.transport.write(header[12:].encode() + b"\r\n")
        else:
            client.send(header)
    client.greeting = await client.reply()
    return client


async def converse(client, lines):
    return [await client.command(line) for line in lines]


class ProxiedClientTests(StartupErrorMixin, unittest.TestCase):
    def serve(self, plugins, files=None, **kwargs):
        server, port = start_server(self, plugins, files, **kwargs)
        return server, port, capture_log(self, server)

    async def test_header_gives_the_client_to_relay_received_and_logs(self):
        maildir = os.path.abspath(self.mktemp())
        server, port, log = self.serve(
            ["stunnel proxy on", "relay", "rcpt_ok", "queue/maildir " + maildir],
            {"relayclients": "192.0.2.7\n"})
        client = await open_client(self, port, PROXY)
        self.assertEqual(client.greeting[0], 220)
        replies = await converse(client, ["HELO client.example", "MAIL FROM:<a@b.example>",
                                          "RCPT TO:<someone@elsewhere.example>", "DATA"])
        self.assertEqual([code for code, _ in replies], [250, 250, 250, 354])
        client.send("Subject: proxied\r\n\r\nhello\r\n.")
        self.assertEqual((await client.reply())[0], 250)
        [message] = maildir_messages(maildir)
        received = message.decode().split("\nReceived: ", 1)[1].split(";")[0]
        self.assertIn("[192.0.2.7]", received)
        self.assertNotIn("127.0.0.1", received)
        lines = [text for _, text in log]
        self.assertIn("Connection from [192.0.2.7] [192.0.2.7]", lines)
        self.assertIn("stunnel : 192.0.2.7:50060", lines)
        session = next(iter(server.sessions))
        self.assertEqual((session.connection.remote_ip, session.connection.remote_port,
                          session.connection.local_ip, session.connection.local_port),
                         ("192.0.2.7", 50060, "198.51.100.25", 465))
        self.assertEqual(session.connection.notes["proxy"], "YES")
        self.assertEqual(session.connection.notes["protocol"], "TCP4")

    async def test_without_header_the_proxy_is_the_client(self):
        _, port, log = self.serve(["stunnel proxy on wait 0.2", "relay", "rcpt_ok"],
                                  {"relayclients": "192.0.2.7\n"})
        client = await open_client(self, port)
        self.assertEqual(client.greeting[0], 220)
        replies = await converse(client, ["HELO c.example", "MAIL FROM:<a@b.example>",
                                          "RCPT TO:<someone@elsewhere.example>"])
        self.assertEqual(replies[2][0], 550)
        self.assertTrue(any("no PROXY header from 127.0.0.1" in text for _, text in log))

    async def test_first_line_not_a_header_is_a_command(self):
        _, port, _ = self.serve(["stunnel proxy on", "rcpt_ok"])
        client = await open_client(self, port, "NOOP")
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(await client.reply(), (250, ["OK"]))

    async def test_header_in_two_writes(self):
        server, port, _ = self.serve(["stunnel proxy on", "rcpt_ok"])
        client = await open_client(self, port, PROXY, split=True)
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(next(iter(server.sessions)).connection.remote_ip, "192.0.2.7")

    async def test_hosts_allow_sees_the_client(self):
        _, port, _ = self.serve(["stunnel proxy on", "hosts_allow", "rcpt_ok"],
                                {"hosts_allow": "192.0.2.66 DENY go away\n"})
        client = await open_client(self, port, PROXY.replace("192.0.2.7", "192.0.2.66"))
        self.assertEqual(client.greeting, (550, ["go away"]))
        await client.wait_closed()
        client = await open_client(self, port, PROXY)
        self.assertEqual(client.greeting[0], 220)

    async def test_max_from_ip_counts_the_clients(self):
        _, port, _ = self.serve(["stunnel proxy on", "rcpt_ok"], max_conn_ip=1)
        first = await open_client(self, port, PROXY)
        other = await open_client(self, port, PROXY.replace("192.0.2.7", "192.0.2.8"))
        again = await open_client(self, port, PROXY)
        self.assertEqual([first.greeting[0], other.greeting[0]], [220, 220])
        self.assertEqual(again.greeting, (451, ["too many connections from 192.0.2.7, try again later"]))

    async def test_unknown_keeps_the_proxy(self):
        server, port, _ = self.serve(["stunnel proxy on", "rcpt_ok"])
        client = await open_client(self, port, "PROXY UNKNOWN")
        self.assertEqual(client.greeting[0], 220)
        connection = next(iter(server.sessions)).connection
        self.assertEqual((connection.remote_ip, connection.notes["protocol"]), ("127.0.0.1", "UNKNOWN"))

    async def test_tcp6(self):
        server, port, _ = self.serve(["stunnel proxy on", "rcpt_ok"])
        client = await open_client(self, port, "PROXY TCP6 2001:db8::7 2001:db8::25 1234 25")
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(next(iter(server.sessions)).connection.remote_ip, "2001:db8::7")

    async def test_bad_header_is_refused(self):
        _, port, _ = self.serve(["stunnel proxy on", "rcpt_ok"])
        for header in ("PROXY TCP4 192.0.2.7 198.51.100.25 50060", "PROXY TCP4 2001:db8::7 ::1 1 2",
                       "PROXY TCP4 192.0.2.999 198.51.100.25 1 2", "PROXY TCP4 192.0.2.7 198.51.100.25 1 65536",
                       "PROXY TCP5 a b 1 2"):
            client = await open_client(self, port, header)
            self.assertEqual(client.greeting, (554, ["5.5.2 Bad PROXY header"]), header)
            await client.wait_closed()

    async def test_untrusted_peer_cannot_proxy(self):
        _, port, _ = self.serve(["stunnel proxy on", "rcpt_ok"])
        client = await open_client(self, port, source="127.0.0.2")
        self.assertEqual(client.greeting[0], 220)
        self.assertEqual(await client.command(PROXY),
                         (521, ["PROXY is accepted only as the first line from a trusted proxy"]))
        await client.wait_closed()

    async def test_trusted_argument(self):
        server, port, _ = self.serve(["stunnel proxy on trusted 127.0.0.2,127.0.1.0/24", "rcpt_ok"])
        for source in ("127.0.0.2", "127.0.1.9"):
            client = await open_client(self, port, PROXY, source=source)
            self.assertEqual(client.greeting[0], 220)
            await client.close()
        client = await open_client(self, port, source="127.0.0.1")
        self.assertEqual((await client.command(PROXY))[0], 521)

    async def test_late_proxy_from_trusted_peer(self):
        _, port, _ = self.serve(["stunnel proxy on wait 0.1", "rcpt_ok"])
        client = await open_client(self, port)
        self.assertEqual((await client.command("HELO c.example"))[0], 250)
        self.assertEqual((await client.command(PROXY))[0], 521)

    async def test_proxy_off_does_nothing(self):
        _, port, _ = self.serve(["stunnel proxy off", "rcpt_ok"])
        client = await open_client(self, port)
        self.assertEqual(await client.command(PROXY), (500, ["Unrecognized command"]))

    def test_parse_header(self):
        parse = parse_v1_line
        self.assertEqual(parse(PROXY), ("TCP4", "192.0.2.7", "198.51.100.25", 50060, 465))
        self.assertEqual(parse("PROXY UNKNOWN whatever"), ("UNKNOWN", None, None, None, None))
        for bad in ("PROXY", "PROXY TCP4  192.0.2.7 198.51.100.25 1 2", "PROXY TCP4 192.0.2.7 198.51.100.25 01 2"):
            self.assertRaises(ValueError, parse, bad)

    def test_bad_arguments(self):
        self.assertStartupError(["stunnel proxy maybe"], ":1: plugin stunnel: proxy must be on or off, got 'maybe'")
        self.assertStartupError(["stunnel proxy on trusted 127.0.0.1/8"], ":1: plugin stunnel: trusted: '127.0.0.1/8' is not an address or network")
        self.assertStartupError(["stunnel proxy on wait 0"], ":1: plugin stunnel: wait must be a positive number")
        self.assertStartupError(["stunnel proxy"], ":1: plugin stunnel: arguments must be key/value pairs")


class ProxiedDNSListTests(DNSListTestCase):
    async def test_dnsbl_looks_up_the_client(self):
        zone = self.listing("bl", text="listed: 192.0.2.7", entry="7.2.0.192")
        _, port, _ = self.serve(["stunnel proxy on", "dnsbl", "rcpt_ok"], {"dnsbl_zones": zone})
        client = await open_client(self, port, PROXY)
        self.assertEqual(client.greeting, (550, ["listed: 192.0.2.7"]))
        client = await open_client(self, port, PROXY.replace("192.0.2.7", "192.0.2.8"))
        self.assertEqual(client.greeting[0], 220)
