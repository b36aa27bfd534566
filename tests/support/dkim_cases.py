"""What the dkim and dmarc tests share: a private DNS zone with a DKIM key in it, messages
signed by Perl's Mail::DKIM, a server asking that DNS server (:class:`DKIMCase`)."""

from tests.support import mail_dkim
from tests.support.dns import private_dns
from tests.support.filter_cases import FilterTestCase, Outcome

SELECTOR = "may2013"


def text_message(from_domain, subject="hello", body="Hi there,\r\n\r\n  see you  \r\n\r\n",
                 extra=""):
    """A message as sent (CRLF), without the final dot."""
    return ("From: Sender <sender@%s>\r\nTo: alice@example.com\r\nSubject: %s\r\n"
            "Date: Sun, 06 Dec 2026 20:00:00 +0000\r\nMessage-ID: <1@%s>\r\n%s\r\n%s"
            % (from_domain, subject, from_domain, extra, body))


class DKIMCase(FilterTestCase):
    """A private zone per test with a key in it, and a server asking that DNS server."""

    def setUp(self):
        self.dns = private_dns()
        self.zone = self.dns.unique_zone("dkim")
        keydir = self.mktemp()
        self.keyfile, self.record = mail_dkim.make_key(keydir)
        self.publish({SELECTOR: self.record})

    def publish(self, keys, zone=None, extra=()):
        """Serve ``{selector: TXT}`` under ``_domainkey`` of ``zone`` (default ours), and
        the ``extra`` records ``(name, type, data)``."""
        return self.dns.set_zone(zone or self.zone, [
            ("%s._domainkey" % selector, "TXT", record) for selector, record in keys.items()]
            + list(extra))

    def serve_dkim(self, args="", before=(), files=None, after=()):
        files = dict(files or {})
        files["dns_servers"] = self.dns.address
        return self.serve(list(before) + ["rcpt_ok", ("dkim " + args).strip()] + list(after),
                          files)

    async def send_from(self, sender, text):
        client = await self.open()
        self.assertEqual((await client.command("MAIL FROM:<%s>" % sender))[0], 250)
        self.assertEqual((await client.command("RCPT TO:<alice@example.com>"))[0], 250)
        self.assertEqual((await client.command("DATA"))[0], 354)
        port = client.transport.getHost().port
        session = next(s for s in self.server.sessions if s.connection.remote_port == port)
        client.send(text + ".")
        code, lines = await client.reply()
        self.last_client = client     # for a test that looks at the connection afterwards
        return Outcome([], (code, lines[-1]), session.connection.notes.get("scripted_message"))

    async def twice(self, message):
        """Send ``message`` on two connections, one after the other; both outcomes."""
        outcomes = []
        for _ in range(2):
            client = await self.open()
            outcomes.append(await self.transaction(client, ["alice@example.com"], message))
            await client.command("QUIT")
        return outcomes

    def auth_results(self, outcome):
        [value] = outcome.header.get("Authentication-Results")
        return value.split("; ")[2:]


def with_signature(field, text):
    """``text`` with the field ``field`` (``Name: value``, any line ends) on top."""
    return field.strip().replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n" + text
