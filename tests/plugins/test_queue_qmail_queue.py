"""queue/qmail-queue, end to end over real sockets, against a STAND-IN for qmail-queue.

Debian has no qmail package, so ``tests/support/fake_qmail_queue`` stands in for
``/var/qmail/bin/qmail-queue``: a strict Python implementation of qmail-queue(8)'s interface
(message on descriptor 0, envelope on descriptor 1, checked byte for byte) that stores what it
queued and can be told to exit with any status, to sleep, or to die by a signal. It is NOT
qmail; the exit-status texts checked here are qmail-smtpd's (qmail 1.03, ``qmail.c``).
"""

import os
import smtplib

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from qpsmtpd_tx.address import Address
from qpsmtpd_tx.server import StartupError
from tests.support import harness
from tests.support.harness import eventually, make_server, wait_for, write_config
from tests.support.processes import processes_running, start_twistd
from tests.support.qmail import HEADER, QmailTestCase, message_bytes
from tests.support.server import start_server

SMTPLIB_BODY = b"line one\r\n.dot\r\n\r\n8bit \xc3\xa9\r\nlast line\r\n"


def plugin_module():
    return harness.plugin_module("queue/qmail-queue")


class ExitStatusTests(QmailTestCase):
    """Every documented exit status (and some undocumented ones) → the right reply."""

    #: status → (reply code, text) as qmail-smtpd would answer, our permanent code being 552
    TABLE = [
        (1, 451, "qq temporary problem (#4.3.0)"),
        (11, 552, "envelope address too long for qq (#5.1.3)"),
        (12, 552, "qq permanent problem (#5.3.0)"),
        (31, 552, "mail server permanently rejected message (#5.3.0)"),
        (40, 552, "qq permanent problem (#5.3.0)"),
        (41, 451, "qq temporary problem (#4.3.0)"),
        (51, 451, "qq out of memory (#4.3.0)"),
        (52, 451, "qq timeout (#4.3.0)"),
        (53, 451, "qq write error or disk full (#4.3.0)"),
        (54, 451, "qq read error (#4.3.0)"),
        (55, 451, "qq unable to read configuration (#4.3.0)"),
        (56, 451, "qq trouble making network connection (#4.3.0)"),
        (61, 451, "qq trouble in home directory (#4.3.0)"),
        (62, 451, "qq trouble creating files in queue (#4.3.0)"),
        (63, 451, "qq trouble creating files in queue (#4.3.0)"),
        (64, 451, "qq trouble creating files in queue (#4.3.0)"),
        (65, 451, "qq trouble creating files in queue (#4.3.0)"),
        (66, 451, "qq trouble creating files in queue (#4.3.0)"),
        (71, 451, "mail server temporarily rejected message (#4.3.0)"),
        (72, 451, "connection to mail server timed out (#4.4.1)"),
        (73, 451, "connection to mail server rejected (#4.4.1)"),
        (74, 451, "communication with mail server failed (#4.4.2)"),
        (75, 451, "qq temporary problem (#4.3.0)"),
        (76, 451, "qq temporary problem (#4.3.0)"),
        (81, 451, "qq internal bug (#4.3.0)"),
        (82, 451, "qq temporary problem (#4.3.0)"),
        (91, 451, "qq internal bug (#4.3.0)"),
        (99, 451, "qq temporary problem (#4.3.0)"),
        (100, 451, "qq temporary problem (#4.3.0)"),
        (120, 451, "qq temporary problem (#4.3.0)"),
        (255, 451, "qq temporary problem (#4.3.0)"),
    ]

    async def test_every_exit_status(self):
        server, port = self.start()
        client = await self.session(port)
        for status, code, text in self.TABLE:
            self.setenv("FAKE_QMAIL_QUEUE_EXIT", status)
            self.assertEqual(await self.send(client), (code, [text]), status)
        self.assertEqual(self.queued(), [], "a failed qmail-queue must not have queued anything")
        self.assertEqual(self.envelope_errors(), "")
        # ... and the connection is still usable: the next message is queued.
        self.setenv("FAKE_QMAIL_QUEUE_EXIT", 0)
        code, lines = await self.send(client)
        self.assertEqual(code, 250)
        self.assertEqual(len(self.queued()), 1)

    def test_exit_status_table_unit(self):
        module = plugin_module()
        for status, code, text in self.TABLE:
            kind, got = module.exit_status_reply(status)
            self.assertEqual((kind == module.PERMANENT, got), (code == 552, text), status)

    async def test_custom_error_text_on_fd6(self):
        server, port = self.start()
        client = await self.session(port)
        self.setenv("FAKE_QMAIL_QUEUE_EXIT", 82)
        self.setenv("FAKE_QMAIL_QUEUE_TEXT", "DVirus found: EICAR (#5.7.1)")
        self.assertEqual(await self.send(client), (552, ["Virus found: EICAR (#5.7.1)"]))
        self.setenv("FAKE_QMAIL_QUEUE_TEXT", "Zscanner busy (#4.3.0)")
        self.assertEqual(await self.send(client), (451, ["scanner busy (#4.3.0)"]))
        # the text counts only with exit 82
        self.setenv("FAKE_QMAIL_QUEUE_EXIT", 71)
        self.setenv("FAKE_QMAIL_QUEUE_TEXT", "Dpermanent?")
        self.assertEqual(await self.send(client),
                         (451, ["mail server temporarily rejected message (#4.3.0)"]))
        self.assertEqual(self.queued(), [])

    async def test_permanent_failure_is_final_temporary_lets_next_plugin_try(self):
        # DECLINED for temporary failures: a second queue plugin still gets the message.
        server, port = start_server(self, [
            "rcpt_ok", "queue/qmail-queue %s" % self.qq, "scripted queue OK fallback queue"])
        client = await self.session(port)
        self.setenv("FAKE_QMAIL_QUEUE_EXIT", 53)
        self.assertEqual(await self.send(client), (250, ["fallback queue"]))
        self.setenv("FAKE_QMAIL_QUEUE_EXIT", 31)
        self.assertEqual(await self.send(client),
                         (552, ["mail server permanently rejected message (#5.3.0)"]))


class DeliveryTests(QmailTestCase):
    async def test_message_and_envelope_byte_for_byte(self):
        server, port = self.start(files={"size_threshold": "10"})   # body spooled to a file
        client = await self.session(port)
        code, lines = await self.send(
            client, recipients=["<u@example.com>", "<V.W@Example.COM>", '<"x y"@example.com>'])
        self.assertEqual(code, 250)
        self.assertRegex(lines[0], r"^Queued! \d+ qp \d+ <qq-1@b\.example>$")
        [(message, envelope)] = self.queued()
        self.assertEqual(envelope, b"Fa@b.example\0Tu@example.com\0TV.W@Example.COM\0Tx y@example.com\0\0")
        self.assertEqual(self.envelope_errors(), "")
        # The core's Received and Authentication-Results headers on top, then the message
        # with LF line endings and the dots unstuffed.
        head, _, rest = message.partition(b"\nAuthentication-Results: mx.example.org; auth=none\n")
        self.assertTrue(head.startswith(b"Received: from "), head)
        self.assertEqual(rest, b"From: a@b.example\nTo: u@example.com\nSubject: qq\n"
                         b"Message-Id: <qq-1@b.example>\n\n"
                         b"line one\n.dot stuffed\n\ncr\rinside\n8bit \xc3\xa9\nlast line\n")
        self.assertNotIn(b"\r\n", message)

    async def test_null_sender_and_no_message_id(self):
        server, port = self.start()
        client = await self.session(port)
        code, lines = await self.send(client, sender="<>", recipients=["<postmaster>"],
                                      data=b"Subject: no id\r\n\r\nbody\r\n")
        self.assertEqual(code, 250)
        self.assertRegex(lines[0], r"^Queued! \d+ qp \d+ <>$")
        [(message, envelope)] = self.queued()
        self.assertEqual(envelope, b"F\0Tpostmaster\0\0")
        self.assertTrue(message.endswith(b"\nSubject: no id\n\nbody\n"))

    async def test_pid_in_reply_is_the_childs(self):
        server, port = self.start()
        client = await self.session(port)
        first = (await self.send(client))[1][0].split()
        second = (await self.send(client))[1][0].split()
        self.assertEqual(first[2], "qp")
        self.assertNotEqual(first[3], second[3])
        self.assertNotEqual(int(first[3]), os.getpid())

    async def test_large_message(self):
        body = b"".join(b"%07d .line with some text to make it longer\r\n" % i for i in range(40000))
        server, port = self.start(files={"size_threshold": "1000"})
        client = await self.session(port)
        code, _ = await self.send(client, data=HEADER + b"\r\n" + body)
        self.assertEqual(code, 250)
        [(message, _)] = self.queued()
        self.assertTrue(message.endswith(b"\n\n" + body.replace(b"\r\n", b"\n")))

    async def test_client_gone_before_reply_message_still_queued_once(self):
        # The stand-in sleeps before reading; meanwhile the client drops the connection. The
        # session keeps the spooled body until the queue hook is done, then discards it.
        self.setenv("FAKE_QMAIL_QUEUE_SLEEP", "0.5")
        server, port = self.start(files={"size_threshold": "10"})
        client = await self.session(port)
        for line in ("MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"):
            await client.command(line)
        client.transport.write(message_bytes() + b".\r\n")
        client.transport.loseConnection()
        # A FIN may be a half-close (Exim sends one after a pipelined QUIT): the session
        # answers once the hook is done, then ends; the spool file is kept for the hook.
        for _ in range(100):
            if os.listdir(server.spool_dir):
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(self.queued(), [], "qmail-queue has not read anything yet")
        self.assertEqual(len(os.listdir(server.spool_dir)), 1, "the spool file is kept for the hook")
        for _ in range(100):
            if self.queued():
                break
            await deferLater(reactor, 0.05, lambda: None)
        [(message, envelope)] = self.queued()
        await wait_for_queue_plugin()
        for _ in range(100):
            if not os.listdir(server.spool_dir):
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(os.listdir(server.spool_dir), [], "the spool file is deleted after the hook")
        self.assertTrue(await wait_for(lambda: not server.sessions))
        self.assertTrue(message.endswith(b"\n\nline one\n.dot stuffed\n\ncr\rinside\n8bit \xc3\xa9\nlast line\n"))
        self.assertEqual(envelope, b"Fa@b.example\0Tu@example.com\0\0")


class FailureInjectionTests(QmailTestCase):
    async def test_timeout_kills_the_child(self):
        self.setenv("FAKE_QMAIL_QUEUE_SLEEP", "30")
        server, port = self.start("timeout 0.5")
        client = await self.session(port)
        code, lines = await self.send(client)
        self.assertEqual((code, lines),
                         (451, ["Unable to queue message (qmail-queue timed out after 0.5 seconds)"]))
        self.assertEqual(self.queued(), [])
        # the stand-in was killed: no python process still runs it
        def running():
            return processes_running(self.qq)
        await eventually(lambda: not running())
        self.assertEqual(running(), [])

    async def test_killed_by_signal(self):
        server, port = self.start()
        client = await self.session(port)
        for name in ("KILL", "TERM", "SEGV"):
            self.setenv("FAKE_QMAIL_QUEUE_SIGNAL", name)
            self.assertEqual(await self.send(client), (451, ["qq crashed (#4.3.0)"]), name)
        self.assertEqual(self.queued(), [])

    async def test_not_runnable(self):
        missing = os.path.join(self.bindir, "missing")
        not_executable = os.path.join(self.bindir, "not-executable")
        with open(not_executable, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        for path in (missing, not_executable):
            server, port = start_server(self, ["rcpt_ok", "queue/qmail-queue %s" % path])
            client = await self.session(port)
            self.assertEqual(await self.send(client), (451, ["unable to exec qq (#4.3.0)"]), path)

    async def test_exits_before_reading_a_big_message(self):
        # qmail-queue gives up at once (e.g. 61, no home directory): the writes fail with
        # EPIPE; the exit status decides the reply.
        big = HEADER + b"\r\n" + b"x" * 1000 + b"\r\n" * 2000
        server, port = self.start()
        client = await self.session(port)
        self.setenv("FAKE_QMAIL_QUEUE_EARLY", "1")
        self.setenv("FAKE_QMAIL_QUEUE_EXIT", 61)
        self.assertEqual(await self.send(client, data=big),
                         (451, ["qq trouble in home directory (#4.3.0)"]))
        # exit 0 without reading the message: not acknowledged (qmail's rule)
        self.setenv("FAKE_QMAIL_QUEUE_EXIT", 0)
        self.assertEqual(await self.send(client, data=big * 100), (451, ["qq read error (#4.3.0)"]))
        self.assertEqual(self.queued(), [])

    async def test_exit_0_after_reading_part_of_a_small_message_or_no_envelope(self):
        # The whole message fits in the pipe's buffer, so every write succeeds; the program
        # reads 100 bytes of it and exits 0. Unread bytes in the pipe mean it was not taken.
        server, port = self.start()
        client = await self.session(port)
        self.setenv("FAKE_QMAIL_QUEUE_READ", 100)
        for _ in range(3):
            self.assertEqual(await self.send(client), (451, ["qq read error (#4.3.0)"]))
        self.assertEqual(self.queued(), [])
        # the whole message but not the envelope: not acknowledged either
        self.setenv("FAKE_QMAIL_QUEUE_READ", None)
        self.setenv("FAKE_QMAIL_QUEUE_NO_ENVELOPE", 1)
        self.assertEqual(await self.send(client), (451, ["qq read error (#4.3.0)"]))
        self.assertEqual(self.queued(), [])
        # the same program reading everything is acknowledged on the same connection
        self.setenv("FAKE_QMAIL_QUEUE_NO_ENVELOPE", None)
        self.assertEqual((await self.send(client))[0], 250)
        self.assertEqual(len(self.queued()), 1)

    async def test_stderr_is_logged(self):
        self.setenv("FAKE_QMAIL_QUEUE_STDERR", "something odd")
        server, port = self.start()
        logged = []
        original = server.log

        def log(level, message, **kwargs):
            logged.append(message)
            return original(level, message, **kwargs)
        server.log = log
        client = await self.session(port)
        self.assertEqual((await self.send(client))[0], 250)
        self.assertIn("qmail-queue said: something odd", logged)


class ArgumentTests(QmailTestCase):
    def plugin(self, server):
        return next(p for p in server.plugins if p.path == "queue/qmail-queue")

    def test_default_path_and_qmail_variable(self):
        server = make_server(self, ["queue/qmail-queue"])
        self.assertEqual(self.plugin(server).queue_exec, "/var/qmail/bin/qmail-queue")
        self.assertEqual(self.plugin(server).timeout, 300)
        self.setenv("QMAIL", "/opt/qmail")
        server = make_server(self, ["queue/qmail-queue"])
        self.assertEqual(self.plugin(server).queue_exec, "/opt/qmail/bin/qmail-queue")

    def test_argument_and_qmailqueue_override(self):
        server = make_server(self, ["queue/qmail-queue %s timeout 5" % self.qq])
        self.assertEqual((self.plugin(server).queue_exec, self.plugin(server).timeout), (self.qq, 5))
        self.setenv("QMAILQUEUE", "/usr/local/bin/qmail-scanner-queue")
        server = make_server(self, ["queue/qmail-queue %s" % self.qq])
        self.assertEqual(self.plugin(server).queue_exec, "/usr/local/bin/qmail-scanner-queue")

    def test_bad_arguments_stop_start_up(self):
        for line in ("queue/qmail-queue relative/path", "queue/qmail-queue /bin/qq;rm",
                     "queue/qmail-queue /a/b timeout", "queue/qmail-queue /a/b timeout x",
                     "queue/qmail-queue /a/b timeout 0", "queue/qmail-queue /a/b extra"):
            with self.assertRaises(StartupError, msg=line) as caught:
                make_server(self, [line])
            self.assertIn("plugin queue/qmail-queue", str(caught.exception))
        self.setenv("QMAILQUEUE", "/bin/sh -c x")
        self.assertRaises(StartupError, make_server, self, ["queue/qmail-queue"])

    def test_envelope_bytes(self):
        module = plugin_module()
        self.assertEqual(module.envelope_bytes(Address.null(), [Address("u", "example.com")]),
                         b"F\0Tu@example.com\0\0")
        self.assertEqual(module.envelope_bytes(
            Address("a.b", "x.example"), [Address("p q", "example.com"), Address("postmaster", None)]),
            b"Fa.b@x.example\0Tp q@example.com\0Tpostmaster\0\0")


class TwistdTests(QmailTestCase):
    """A real ``twistd qpsmtpd-tx`` process, smtplib as the client."""

    def test_smtplib_through_twistd(self):
        config = write_config(os.path.abspath(self.mktemp()),
                              ["rcpt_ok", "queue/qmail-queue %s" % self.qq])
        _, port, log = start_twistd(self, config)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.example")
            # smtplib stuffs the dots and turns a bare CR into CRLF itself
            self.assertEqual(client.sendmail("a@b.example", ["u@example.com", "v@example.com"],
                                             HEADER + b"\r\n" + SMTPLIB_BODY), {})
            code, text = client.noop()
            self.assertEqual(code, 250)
        [(message, envelope)] = self.queued()
        self.assertEqual(envelope, b"Fa@b.example\0Tu@example.com\0Tv@example.com\0\0")
        self.assertTrue(message.endswith(
            b"\nMessage-Id: <qq-1@b.example>\n\nline one\n.dot\n\n8bit \xc3\xa9\nlast line\n"))


class SmtplibInThreadTests(QmailTestCase):
    """smtplib (blocking) in a thread against the in-process server: the refusal it sees."""

    async def test_permanent_and_temporary_as_smtplib_sees_them(self):
        server, port = self.start()

        def send():
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                try:
                    client.sendmail("a@b.example", ["u@example.com"], message_bytes())
                except smtplib.SMTPDataError as e:
                    return e.smtp_code, e.smtp_error
            return None

        self.setenv("FAKE_QMAIL_QUEUE_EXIT", 31)
        self.assertEqual(await deferToThread(send),
                         (552, b"mail server permanently rejected message (#5.3.0)"))
        self.setenv("FAKE_QMAIL_QUEUE_EXIT", 51)
        self.assertEqual(await deferToThread(send), (451, b"qq out of memory (#4.3.0)"))
        self.setenv("FAKE_QMAIL_QUEUE_EXIT", 0)
        self.assertIsNone(await deferToThread(send))
        self.assertEqual(len(self.queued()), 1)


async def wait_for_queue_plugin():
    """Wait until no qmail-queue child is being watched (its timeout timer is gone)."""
    for _ in range(250):
        if not any(getattr(call.func, "__name__", "") == "_timed_out"
                   for call in reactor.getDelayedCalls()):
            return
        await deferLater(reactor, 0.02, lambda: None)
