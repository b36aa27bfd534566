"""The show case of per-recipient settings: one SMTP session over a real socket, three
recipients whose thresholds differ, one message that only the most lenient one takes.

The test plugins ``threshold_filter`` (the recipient setting ``test_threshold``, 5 by
default) and ``score_filter`` (the message's ``X-Test-Score`` header: 6 here) stand in for a
spam filter. The first recipient's threshold is 3, ``mid@example.com``'s is its domain's 5,
``high@example.com``'s is 10: the first two refuse the message, the third takes it. The
client retries each ``452 4.5.3`` recipient in a new transaction, as RFC 5321 clients do.
Whatever supplies the thresholds (the aliases file, an rcpt_notes source), the
conversation, the thresholds seen and the deliveries are the same.
"""

import os

from tests.support.harness import maildir_by_recipient
from tests.support.server import Transcript, connect, start_server

SENDER_OK = ("250 <sender@client.example>, sender OK - how exciting to get mail from you!")
RETRY = "452 4.5.3 Try this recipient in another transaction"


async def assert_three_thresholds(testcase, settings_line, files, first="low@example.com"):
    """Run the show case with ``settings_line`` (the plugin that gives the thresholds) and
    config ``files``; ``first`` is the recipient whose threshold is 3."""
    recipients = [first, "mid@example.com", "high@example.com"]
    maildir = os.path.abspath(testcase.mktemp())
    server, port = start_server(
        testcase, [settings_line, "threshold_filter", "score_filter", "rcpt_ok",
                   "queue/maildir %s %%u" % maildir], dict(files, recipient_policy="group"))
    testcase.addCleanup(server.stop_plugins)
    client = await connect(testcase, port)
    transcript = Transcript(client)
    testcase.assertEqual((await client.command("EHLO client.example"))[0], 250)
    await transcript.deliver_retrying(recipients, "Subject: offer\r\nX-Test-Score: 6\r\n\r\nBuy now.",
                                      "<message>")
    seen = next(iter(server.sessions)).connection.notes["threshold_seen"]
    await transcript.say("QUIT")

    testcase.assertEqual(transcript.lines, [
        "MAIL FROM:<sender@client.example> -> " + SENDER_OK,
        "RCPT TO:<%s> -> 250 <%s>, recipient ok" % (first, first),
        "RCPT TO:<mid@example.com> -> " + RETRY,
        "RCPT TO:<high@example.com> -> " + RETRY,
        "DATA -> 354 go ahead",
        "<message> -> 552 score 6.0 reaches threshold 3.0",
        "MAIL FROM:<sender@client.example> -> " + SENDER_OK,
        "RCPT TO:<mid@example.com> -> 250 <mid@example.com>, recipient ok",
        "RCPT TO:<high@example.com> -> " + RETRY,
        "DATA -> 354 go ahead",
        "<message> -> 552 score 6.0 reaches threshold 5.0",
        "MAIL FROM:<sender@client.example> -> " + SENDER_OK,
        "RCPT TO:<high@example.com> -> 250 <high@example.com>, recipient ok",
        "DATA -> 354 go ahead",
        "<message> -> 250 Queued!",
        "QUIT -> 221 mx.example.org closing connection. Have a wonderful day.",
    ])
    testcase.assertEqual(seen, [(3.0, "tag"), (5.0, "tag"), (10.0, "tag")])
    # which recipients got the message: one Maildir per recipient (PATTERN %u)
    delivered = maildir_by_recipient(maildir, recipients)
    testcase.assertEqual({r: len(m) for r, m in delivered.items()},
                         {first: 0, "mid@example.com": 0, "high@example.com": 1})
    [message] = delivered["high@example.com"]
    testcase.assertIn(b"Delivered-To: high@example.com\n", message)
    testcase.assertIn(b"\nBuy now.\n", message)
