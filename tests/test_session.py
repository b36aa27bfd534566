"""Hook semantics for every return code in every phase, and the dialogue's edge cases.

The server is real (config reader, plugin loader, the ``scripted`` test plugin); the client is
Twisted's in-memory transport, so each reply and each write can be checked exactly.
"""

import os
import sys
import tracemalloc

from twisted.trial import unittest

from qpsmtpd_tx.core import State
from tests.support.harness import MemoryClient, codes_of, eventually, make_server

ENVELOPE = ["EHLO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"]
MESSAGE = b"Subject: hi\r\nFrom: a@b.example\r\n\r\n..dotline\r\nbody\r\n.\r\n"


def session(testcase, plugins, files=None, steps=()):
    """A connected client after sending ``steps`` (command lines)."""
    client = MemoryClient(make_server(testcase, plugins, files))
    for line in steps:
        client.command(line)
    return client


class GreetingTests(unittest.TestCase):
    def test_default_greeting(self):
        client = session(self, [])
        self.assertEqual(client.greeting,
                         "220 mx.example.org ESMTP qpsmtpd-tx 0.1.0 ready; "
                         "send us your mail, but not your spam.\r\n")

    def test_smtpgreeting_gets_esmtp(self):
        client = session(self, [], {"smtpgreeting": "mx.example.org welcomes you"})
        self.assertEqual(client.greeting, "220 mx.example.org welcomes you ESMTP\r\n")

    def test_connect_codes(self):
        table = [
            ("DENY", "550 Connection from you denied, bye bye.\r\n"),
            ("DENY_DISCONNECT", "550 Connection from you denied, bye bye.\r\n"),
            ("DENYSOFT", "450 Connection from you temporarily denied, bye bye.\r\n"),
            ("DENYSOFT_DISCONNECT", "450 Connection from you temporarily denied, bye bye.\r\n"),
        ]
        for code, reply in table:
            client = session(self, ["scripted connect %s" % code])
            self.assertEqual(client.greeting, reply, code)
            self.assertTrue(client.closed, code)

    def test_connect_deny_with_text(self):
        client = session(self, ["scripted connect DENY go away"])
        self.assertEqual(client.greeting, "550 go away\r\n")

    def test_connect_done_sends_nothing(self):
        client = session(self, ["scripted connect DONE"])
        self.assertEqual(client.greeting, "")
        self.assertFalse(client.closed)

    def test_pre_connection_deny(self):
        client = session(self, ["scripted pre-connection DENYSOFT"])
        self.assertEqual(client.greeting, "451 Sorry, try again later\r\n")
        self.assertTrue(client.closed)


class HeloTests(unittest.TestCase):
    def test_helo_reply(self):
        client = session(self, [])
        self.assertEqual(client.command("HELO c.example"),
                         "250 mx.example.org Hi Unknown [192.0.2.1]; I am so happy to meet you.\r\n")
        self.assertEqual(client.session.connection.hello, "helo")
        self.assertEqual(client.session.connection.hello_host, "c.example")

    def test_ehlo_capabilities(self):
        client = session(self, [], {"databytes": "1000"})
        self.assertEqual(client.command("EHLO c.example"),
                         "250-mx.example.org Hi Unknown [192.0.2.1]\r\n250-PIPELINING\r\n"
                         "250-8BITMIME\r\n250 SIZE 1000\r\n")

    def test_missing_argument(self):
        client = session(self, [])
        self.assertEqual(client.command("HELO"),
                         "501 helo requires domain/address - see RFC-2821 4.1.1.1\r\n")
        self.assertEqual(client.command("EHLO "),
                         "501 ehlo requires domain/address - see RFC-2821 4.1.1.1\r\n")

    def test_second_helo(self):
        client = session(self, [], steps=["HELO a.example"])
        self.assertEqual(client.command("EHLO a.example"), "503 but you already said HELO ...\r\n")

    def test_helo_codes(self):
        table = [("DENY", "550", False), ("DENYSOFT", "450", False),
                 ("DENY_DISCONNECT", "550", True), ("DENYSOFT_DISCONNECT", "450", True)]
        for verb in ("helo", "ehlo"):
            for code, reply, closes in table:
                client = session(self, ["scripted %s %s nope" % (verb, code)])
                self.assertEqual(client.command("%s c.example" % verb.upper()),
                                 "%s nope\r\n" % reply, (verb, code))
                self.assertEqual(client.closed, closes, (verb, code))
                self.assertIsNone(client.session.connection.hello)

    def test_helo_deny_without_text_still_answers(self):
        client = session(self, ["scripted helo DENY"])
        self.assertEqual(codes_of(client.command("HELO c.example")), [550])

    def test_helo_done(self):
        client = session(self, ["scripted helo DONE"])
        self.assertEqual(client.command("HELO c.example"), "")


class MailTests(unittest.TestCase):
    def test_mail_before_helo(self):
        client = session(self, [])
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"), "503 please say hello first ...\r\n")

    def test_accepted(self):
        client = session(self, [], steps=ENVELOPE[:1])
        self.assertEqual(client.command("MAIL FROM:<a@b.example>"),
                         "250 <a@b.example>, sender OK - how exciting to get mail from you!\r\n")
        self.assertEqual(client.command("MAIL FROM:<>"),
                         "250 <>, sender OK - how exciting to get mail from you!\r\n")

    def test_syntax(self):
        client = session(self, [], steps=ENVELOPE[:1])
        self.assertEqual(client.command("MAIL FROM :<a@b.example>"), "501 Syntax error in command\r\n")
        self.assertEqual(client.command("MAIL FROM:a@b.example"),
                         "501 could not parse your mail from command\r\n")

    def test_codes(self):
        table = [
            ("DENY", "550 <a@b.example>, denied\r\n", False),
            ("DENYSOFT", "450 <a@b.example>, temporarily denied\r\n", False),
            ("DENY_DISCONNECT", "550 <a@b.example>, denied\r\n", True),
            ("DENYSOFT_DISCONNECT", "421 <a@b.example>, temporarily denied\r\n", True),
            ("DONE", "", False),
            ("OK", "250 <a@b.example>, sender OK - how exciting to get mail from you!\r\n", False),
            ("DECLINED", "250 <a@b.example>, sender OK - how exciting to get mail from you!\r\n", False),
        ]
        for code, reply, closes in table:
            client = session(self, ["scripted mail %s" % code], steps=ENVELOPE[:1])
            self.assertEqual(client.command("MAIL FROM:<a@b.example>"), reply, code)
            self.assertEqual(client.closed, closes, code)

    def test_size_over_databytes(self):
        client = session(self, [], {"databytes": "1000"}, steps=ENVELOPE[:1])
        self.assertEqual(client.command("MAIL FROM:<a@b.example> SIZE=1001"), "552 Message too big!\r\n")
        self.assertEqual(codes_of(client.command("MAIL FROM:<a@b.example> SIZE=1000")), [250])

    def test_mail_params_reach_hook(self):
        client = session(self, ["scripted mail DECLINED"], steps=ENVELOPE[:1])
        client.command("MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME")
        (hook, (sender, params)), = client.session.connection.notes["scripted_calls"]
        self.assertEqual(sender.format(), "<a@b.example>")
        self.assertEqual(params, {"size": "10", "body": "8BITMIME"})


class RcptTests(unittest.TestCase):
    def test_rcpt_before_mail(self):
        client = session(self, ["rcpt_ok"], steps=ENVELOPE[:1])
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "503 Use MAIL before RCPT\r\n")

    def test_null_recipient(self):
        client = session(self, ["rcpt_ok"], steps=ENVELOPE[:2])
        self.assertEqual(client.command("RCPT TO:<>"), "501 could not parse recipient\r\n")

    def test_codes(self):
        table = [
            ("OK", "250 <u@example.com>, recipient ok\r\n", False),
            ("DENY", "550 relaying denied\r\n", False),
            ("DENYSOFT", "450 relaying denied\r\n", False),
            ("DENY_DISCONNECT", "550 delivery denied\r\n", True),
            ("DENYSOFT_DISCONNECT", "421 relaying denied\r\n", True),
            ("DONE", "", False),
            ("DECLINED", "450 No plugin decided if relaying is allowed\r\n", False),
        ]
        for code, reply, closes in table:
            client = session(self, ["scripted rcpt %s" % code], steps=ENVELOPE[:2])
            self.assertEqual(client.command("RCPT TO:<u@example.com>"), reply, code)
            self.assertEqual(client.closed, closes, code)
            self.assertEqual(len(client.session.transaction.recipients),
                             1 if code == "OK" and not closes else 0, code)

    def test_no_plugins(self):
        client = session(self, [], steps=ENVELOPE[:2])
        self.assertEqual(client.command("RCPT TO:<u@example.com>"),
                         "450 No plugin decided if relaying is allowed\r\n")

    def test_return_code_recorded_in_notes(self):
        client = session(self, ["scripted rcpt OK"], steps=ENVELOPE)
        self.assertEqual(client.session.transaction.notes["scripted"]["hook_rcpt"], {"return": 900})


class DataTests(unittest.TestCase):
    def test_data_codes(self):
        table = [
            ("DENY", "554 Message denied\r\n", False),
            ("DENYSOFT", "451 Message denied temporarily\r\n", False),
            ("DENY_DISCONNECT", "554 Message denied\r\n", True),
            ("DENYSOFT_DISCONNECT", "421 Message denied temporarily\r\n", True),
            ("DONE", "", False),
            ("OK", "354 go ahead\r\n", False),
        ]
        for code, reply, closes in table:
            client = session(self, ["rcpt_ok", "scripted data %s" % code], steps=ENVELOPE)
            self.assertEqual(client.command("DATA"), reply, code)
            self.assertEqual(client.closed, closes, code)

    def test_data_without_sender_or_recipient(self):
        client = session(self, ["rcpt_ok"], steps=ENVELOPE[:1])
        self.assertEqual(client.command("DATA"), "503 MAIL first\r\n")
        client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(client.command("DATA"), "503 RCPT first\r\n")

    def test_no_queue_plugin(self):
        client = session(self, ["rcpt_ok"], steps=ENVELOPE + ["DATA"])
        self.assertEqual(client.send(MESSAGE), "451 Queuing declined or disabled; try again later\r\n")
        self.assertEqual(client.session.core.state, State.READY)

    def test_data_post_and_queue_codes(self):
        table = [
            ("data_post", "DENY", "552 Message denied\r\n"),
            ("data_post", "DENYSOFT", "452 Message denied temporarily\r\n"),
            ("queue", "OK", "250 Queued\r\n"),
            ("queue", "DENY", "552 Message denied\r\n"),
            ("queue", "DENYSOFT", "452 Message denied temporarily\r\n"),
            ("queue", "DECLINED", "451 Queuing declined or disabled; try again later\r\n"),
            ("queue", "DENY_DISCONNECT", "451 Queuing declined or disabled; try again later\r\n"),
        ]
        for hook, code, reply in table:
            plugins = ["rcpt_ok", "scripted %s %s" % (hook, code)]
            if hook != "queue":
                plugins.append("scripted:1 queue OK")
            client = session(self, plugins, steps=ENVELOPE + ["DATA"])
            self.assertEqual(client.send(MESSAGE), reply, (hook, code))
            self.assertEqual(client.session.core.state, State.READY, (hook, code))
            self.assertIsNone(client.session.transaction.sender)

    def test_last_declined_text_reaches_queue_reply(self):
        client = session(self, ["rcpt_ok", "scripted queue DECLINED Unable to queue message (3)"],
                         steps=ENVELOPE + ["DATA"])
        self.assertEqual(client.send(MESSAGE), "451 Unable to queue message (3)\r\n")

    def test_message_as_queued(self):
        client = session(self, ["rcpt_ok", "scripted queue OK Queued!"], steps=ENVELOPE + ["DATA"])
        self.assertEqual(client.send(MESSAGE), "250 Queued!\r\n")
        message = client.session.connection.notes["scripted_message"].decode()
        lines = message.split("\n")
        self.assertEqual(lines[0], "Received: from Unknown (HELO client.example) (192.0.2.1)")
        self.assertTrue(lines[1].startswith(" by mx.example.org (qpsmtpd-tx/0.1.0) with ESMTP; "))
        self.assertEqual(lines[2], "Authentication-Results: mx.example.org; auth=none")
        self.assertEqual("\n".join(lines[3:]), "Subject: hi\nFrom: a@b.example\n\n.dotline\nbody\n")

    def test_databytes_boundary(self):
        body = b"Subject: x\r\n\r\n" + b"y" * 87 + b"\r\n"   # 100 bytes stored with LF endings
        for databytes, reply in ((100, "250 Queued\r\n"), (99, "552 Message too big!\r\n")):
            client = session(self, ["rcpt_ok", "scripted queue OK"], {"databytes": str(databytes)},
                             steps=ENVELOPE + ["DATA"])
            self.assertEqual(client.send(body + b".\r\n"), reply, databytes)

    def test_bare_lf_end_closes(self):
        client = session(self, ["rcpt_ok", "scripted queue OK"], steps=ENVELOPE + ["DATA"])
        reply = client.send(b"Subject: x\r\n\r\nbody\n.\nMAIL FROM:<x@y.example>\r\n")
        self.assertEqual(reply, "421 See http://smtpd.develooper.com/barelf.html\r\n")
        self.assertTrue(client.closed)
        self.assertNotIn("scripted_message", client.session.connection.notes)

    def test_headers_end_disconnect(self):
        client = session(self, ["rcpt_ok", "scripted data_headers_end DENY_DISCONNECT"],
                         steps=ENVELOPE + ["DATA"])
        self.assertEqual(client.send(b"Subject: x\r\n\r\n"), "554 Message denied\r\n")
        self.assertTrue(client.closed)

    def test_headers_end_plain_deny_is_ignored(self):
        client = session(self, ["rcpt_ok", "scripted data_headers_end DENY", "scripted:1 queue OK"],
                         steps=ENVELOPE + ["DATA"])
        self.assertEqual(client.send(MESSAGE), "250 Queued\r\n")

    def test_ten_megabytes_in_bounded_memory(self):
        client = session(self, ["rcpt_ok", "scripted queue OK"], {"size_threshold": "65536"},
                         steps=ENVELOPE + ["DATA"])
        client.send(b"Subject: big\r\n\r\n")
        chunk = (b"x" * 78 + b"\r\n") * 800    # 64,000 bytes
        tracemalloc.start()
        try:
            for _ in range(160):
                client.send(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        spool = client.session.transaction.body
        self.assertIsNotNone(spool.filename)
        self.assertEqual(spool.size, 160 * 800 * 79)
        self.assertLess(peak, 2 * 1024 * 1024)
        self.assertEqual(client.send(b".\r\n"), "250 Queued\r\n")


class PipeliningTests(unittest.TestCase):
    def test_group_answered_in_one_write(self):
        client = session(self, ["rcpt_ok", "scripted queue OK"], steps=ENVELOPE[:1])
        writes = client.transport.writes
        reply = client.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\n"
                            "RCPT TO:<v@example.com>\r\nDATA\r\n")
        self.assertEqual(codes_of(reply), [250, 250, 250, 354])
        self.assertEqual(client.transport.writes, writes + 1)

    def test_slow_mail_hook_keeps_order(self):
        client = session(self, ["scripted mail DECLINED delay 0.01", "rcpt_ok"], steps=ENVELOPE[:1])
        first = client.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n")
        self.assertEqual(first, "")

        def check(_):
            self.assertEqual(codes_of(client.take()), [250, 250, 354])
        return eventually(lambda: b"354" in client.transport.value()).addCallback(check)

    def test_message_and_next_commands_in_one_packet(self):
        client = session(self, ["rcpt_ok", "scripted queue OK"])
        reply = client.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n"
                            + MESSAGE + b"MAIL FROM:<c@d.example>\r\nRCPT TO:<u@example.com>\r\n"
                            b"DATA\r\n" + MESSAGE + b"QUIT\r\n")
        self.assertEqual(codes_of(reply), [250, 250, 250, 354, 250, 250, 250, 354, 250, 221])
        self.assertTrue(client.closed)

    def test_input_waits_while_hook_is_slow(self):
        client = session(self, ["scripted mail OK delay 0.01", "rcpt_ok"], steps=ENVELOPE[:1])
        client.send(b"MAIL FROM:<a@b.example>\r\n" + b"NOOP\r\n" * 50000)
        self.assertEqual(client.transport.producerState, "paused")

        def check(_):
            self.assertEqual(client.transport.producerState, "producing")
            self.assertEqual(codes_of(client.take()), [250] + [250] * 50000)
        return eventually(lambda: client.transport.value().count(b"\r\n") >= 50001).addCallback(check)


class RobustnessTests(unittest.TestCase):
    def test_plugin_exception_is_declined(self):
        client = session(self, ["scripted rcpt DENY raise", "rcpt_ok"], steps=ENVELOPE[:2])
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "250 <u@example.com>, recipient ok\r\n")

    def test_plugin_returning_none_is_skipped(self):
        client = session(self, ["scripted rcpt NONE", "scripted:1 rcpt DENY"], steps=ENVELOPE[:2])
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "550 relaying denied\r\n")

    def test_async_plugin_exception_is_declined(self):
        client = session(self, ["scripted mail DENY delay 0 raise"], steps=ENVELOPE[:1])
        client.command("MAIL FROM:<a@b.example>")
        return eventually(lambda: client.transport.value()).addCallback(
            lambda _: self.assertEqual(codes_of(client.take()), [250]))

    def test_line_too_long(self):
        client = session(self, [])
        self.assertEqual(client.send("NOOP " + "x" * 600 + "\r\n"), "500 5.5.2 Line too long\r\n")
        self.assertEqual(client.command("NOOP"), "250 OK\r\n")

    def test_long_line_without_end_is_not_buffered(self):
        client = session(self, [])
        self.assertEqual(client.send("x" * 100000), "500 5.5.2 Line too long\r\n")
        self.assertEqual(client.session.core.buffered, 0)
        client.send("y" * 100000)
        self.assertEqual(client.send("\r\nNOOP\r\n"), "250 OK\r\n")

    def test_idle_timeout(self):
        client = session(self, [], {"timeout": "30"})
        client.clock.advance(29)
        self.assertFalse(client.closed)
        client.clock.advance(2)
        self.assertEqual(client.take(), "421 Connection Timed Out\r\n")
        self.assertTrue(client.closed)


class SmallCommandTests(unittest.TestCase):
    def test_replies(self):
        client = session(self, [])
        self.assertEqual(client.command("NOOP"), "250 OK\r\n")
        self.assertEqual(client.command("RSET"), "250 OK\r\n")
        self.assertEqual(client.command("VRFY someone"),
                         "252 Just try sending a mail and we'll see how it turns out ...\r\n")
        self.assertEqual(codes_of(client.command("HELP")), [214])
        self.assertEqual(client.command("FOO bar"), "500 Unrecognized command\r\n")
        self.assertEqual(client.command(" QUIT"), "500 Unrecognized command\r\n")
        self.assertEqual(client.command("quit"), "221 mx.example.org closing connection. Have a wonderful day.\r\n")
        self.assertTrue(client.closed)

    def test_hooked_small_commands(self):
        table = [
            ("noop", "NOOP", "DENY", "500 Stop wasting my time.\r\n"),
            ("vrfy", "VRFY x", "OK", "250 User OK\r\n"),
            ("vrfy", "VRFY x", "DENY", "554 Access Denied\r\n"),
            ("help", "HELP", "DENY", "500 Syntax error, command not recognized\r\n"),
            ("quit", "QUIT", "DONE", ""),
            ("unrecognized_command", "FOO", "DENY", "500 Unrecognized command\r\n"),
            ("unrecognized_command", "FOO", "DENY_DISCONNECT", "521 Unrecognized command\r\n"),
        ]
        for hook, line, code, reply in table:
            client = session(self, ["scripted %s %s" % (hook, code)])
            self.assertEqual(client.command(line), reply, (hook, code))

    def test_unrecognized_gets_verb_and_rest(self):
        client = session(self, ["scripted unrecognized_command DECLINED"])
        client.command("XFOO some args")
        self.assertEqual(client.session.connection.notes["scripted_calls"],
                         [("unrecognized_command", ("xfoo", "some args"))])

    def test_multiline_plugin_text(self):
        client = session(self, ["scripted rcpt DENY first\\nsecond"], steps=ENVELOPE[:2])
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "550-first\r\n550 second\r\n")


class InternalErrorTests(unittest.TestCase):
    def test_core_fault_gives_451_without_details(self):
        import os
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "breaker"), "w") as f:
            f.write("from qpsmtpd_tx.plugin import Plugin\n"
                    "class Breaker(Plugin):\n"
                    "    def hook_data(self, transaction):\n"
                    "        transaction.body = None   # the core will fail writing the body\n"
                    "        return 909\n")
        client = session(self, ["rcpt_ok", "breaker"], {"plugin_dirs": directory}, steps=ENVELOPE)
        self.assertEqual(client.command("DATA"), "354 go ahead\r\n")
        self.assertEqual(client.send(MESSAGE),
                         "451 Internal error - try again later - command failed unexpectedly\r\n")
        self.assertTrue(client.closed)


class WaitForInputTests(unittest.TestCase):
    def test_fires_on_input_or_timeout(self):
        client = session(self, [])
        results = []
        client.session.wait_for_input(2, clock=client.clock).addCallback(results.append)
        client.clock.advance(1)
        self.assertEqual(results, [])
        client.send(b"NOOP\r\n")
        self.assertEqual(results, [True])
        client.session.wait_for_input(2, clock=client.clock).addCallback(results.append)
        client.clock.advance(2.5)
        self.assertEqual(results, [True, False])


class ReplyTextTests(unittest.TestCase):
    def test_crlf_in_plugin_text_makes_lines(self):
        client = session(self, ["scripted rcpt DENY"], steps=ENVELOPE[:2])
        client.session.respond(550, "first\r\nsecond\n\nthird")
        self.assertEqual(client.take(), "")
        client.session._flush()
        self.assertEqual(client.take(), "550-first\r\n550-second\r\n550 third\r\n")

    def test_pre_connection_sees_only_other_sessions(self):
        server = make_server(self, ["scripted pre-connection DECLINED"])
        first = MemoryClient(server, remote_ip="192.0.2.7")
        second = MemoryClient(server, remote_ip="192.0.2.7")
        (_, args), = second.session.connection.notes["scripted_calls"]
        self.assertEqual(args[5], ["192.0.2.7"])
        self.assertIsNot(first.session, second.session)

    def test_input_wait_ends_false_when_client_leaves(self):
        client = session(self, [])
        results = []
        client.session.wait_for_input(5, clock=client.clock).addCallback(results.append)
        client.protocol.connectionLost(None)
        self.assertEqual(results, [False])


class LostDuringQueueTests(unittest.TestCase):
    def test_body_survives_until_the_queue_hook_is_done(self):
        client = session(self, ["rcpt_ok", "scripted queue OK delay 0.02", "scripted:1 disconnect DECLINED"],
                         {"size_threshold": "10"}, steps=ENVELOPE + ["DATA"])
        client.send(MESSAGE)
        spooled = client.session.transaction
        filename = spooled.body.filename
        self.assertTrue(filename and os.path.exists(filename))
        client.protocol.connectionLost(None)
        self.assertTrue(os.path.exists(filename))    # the queue hook still reads it
        hooks = [h for h, _ in client.session.connection.notes["scripted_calls"]]
        self.assertNotIn("disconnect", hooks)

        def after(_):
            self.assertFalse(os.path.exists(filename))
            calls = [h for h, _ in client.session.connection.notes["scripted_calls"]]
            self.assertEqual(calls[-2:], ["queue", "disconnect"])
        return eventually(lambda: "disconnect" in [
            h for h, _ in client.session.connection.notes["scripted_calls"]]).addCallback(after)


class BusyTimeoutTests(unittest.TestCase):
    """The idle timer does not close a connection while a hook (a slow delivery) is running."""

    def test_no_421_while_the_queue_hook_runs(self):
        client = session(self, ["rcpt_ok", "gate queue OK"], {"timeout": "30"},
                         steps=ENVELOPE + ["DATA"])
        gates = sys.modules[type(client.session.server.plugins[1]).__module__].GATES
        client.send(MESSAGE)
        self.assertEqual(len(gates), 1)
        client.clock.advance(100)                 # way past the idle timeout, hook still running
        self.assertEqual(client.take(), "")
        self.assertFalse(client.closed)
        gates.pop(0).callback(None)               # the delivery finishes
        self.assertEqual(client.take(), "250 Queued\r\n")
        client.clock.advance(31)                  # now the client really is idle
        self.assertEqual(client.take(), "421 Connection Timed Out\r\n")
        self.assertTrue(client.closed)


class ConnectionLimitTests(unittest.TestCase):
    def test_clients_beyond_the_limit_get_421(self):
        server = make_server(self, [], max_connections=2)
        first, second = MemoryClient(server), MemoryClient(server)
        self.assertEqual(codes_of(first.greeting + second.greeting), [220, 220])
        third = MemoryClient(server)
        self.assertEqual(third.greeting, "421 mx.example.org Too many connections, try again later\r\n")
        self.assertTrue(third.closed)
        third.send(b"EHLO ignored\r\n")                    # what it still sends is ignored
        self.assertEqual(third.take(), "")
        first.command("QUIT")
        first.protocol.connectionLost(None)
        self.assertEqual(codes_of(MemoryClient(server).greeting), [220])
