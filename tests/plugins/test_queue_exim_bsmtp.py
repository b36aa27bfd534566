"""queue/exim-bsmtp over real sockets, delivering through a REAL Exim.

The Exim is Debian's ``exim4-daemon-light`` binary, fetched and unpacked privately by
``tests/support/exim.py`` (no package installed; skipped with the reason where it cannot be
fetched), run by the plugin as ``exim -bS -C <private config>``. It delivers every message
into a Maildir with ``Return-path:`` and ``Envelope-to:``, which are checked together with
the body byte for byte; its own refusals (non-SMTP ACL, ``message_size_limit``,
``recipients_max``) give the 5xx/4xx cases, and a missing configuration file a real
"exit status without a reply".

Only what a real Exim cannot be made to do on purpose uses a STAND-IN (each test says so):
a script that sleeps before running Exim (timeout), one that kills itself (crash), one that
records the batch it is given (the exact bytes on Exim's standard input), and one that runs
the real Exim and then reports a later error with exit status 1 (Exim's "a message was
accepted before the error").
"""

import os
import re
import shutil
import smtplib
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from qpsmtpd_tx.address import Address
from qpsmtpd_tx.server import StartupError
from tests.support.exim import private_exim
from tests.support import harness
from tests.support.harness import capture_log, eventually, make_server, wait_for, write_config
from tests.support.processes import processes_running, start_twistd
from tests.support.server import TransactionMixin, start_server

HEADER = (b"From: a@b.example\r\nTo: u@example.com\r\nSubject: exim\r\n"
          b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-Id: <ex-1@b.example>\r\n")
# as a client sends it: already dot-stuffed
BODY = (b"first\r\n..leading dot\r\n...two dots\r\n..\r\n\r\n8bit \xc3\xa9\r\n"
        + b"y" * 998 + b"\r\nlast\r\n")
#: the message as stored (and as Exim must deliver it): dots unstuffed, LF line endings
STORED = (HEADER + b"\r\n" + BODY).replace(b"\r\n.", b"\r\n").replace(b"\r\n", b"\n")
#: what Exim puts on top of each delivered copy (see tests/support/exim.py)
EXIM_PREFIX = re.compile(
    rb"Return-path: (<[^\n]*>)\nEnvelope-to: ([^\n]*)\n"
    rb"Received: by exim-test with local-bsmtp id ([-0-9A-Za-z]+);\n\t[^\n]+\n")
CORE_HEADERS = re.compile(
    rb"Received: from [^\n]*\n(?:[ \t][^\n]*\n)*Authentication-Results: mx\.example\.org; auth=none\n")

INTERNAL = "Internal error enqueuing mail"


def plugin_module():
    return harness.plugin_module("queue/exim-bsmtp")


def split_delivered(data):
    """(Return-path, Envelope-to, Exim id, the message after our core's headers)."""
    match = EXIM_PREFIX.match(data)
    assert match, data[:300]
    rest = data[match.end():]
    core = CORE_HEADERS.match(rest)
    assert core, rest[:300]
    return (match.group(1).decode(), match.group(2).decode(), match.group(3).decode(),
            rest[core.end():])


def write_script(directory, name, body):
    """An executable Python script (run by this test's interpreter) in ``directory``."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write("#!%s\n%s" % (sys.executable, body))
    os.chmod(path, 0o755)
    return path


class EximTestCase(TransactionMixin, unittest.TestCase):
    default_message = HEADER + b"\r\n" + BODY

    def exim(self, **options):
        self.mta = private_exim(self, **options)
        return self.mta

    def start(self, plugin_line=None, files=None, extra_plugins=()):
        line = plugin_line or self.mta.plugin_line()
        files = dict({"rcpthosts": "example.com\nother.example\nslow.example"}, **(files or {}))
        return start_server(self, ["rcpt_ok", line] + list(extra_plugins), files)

    async def idle(self):
        """Wait until Exim has delivered everything it accepted."""
        self.assertTrue(await wait_for(self.mta.idle), "Exim still has %s" % self.mta.queued())

    async def send_in_parallel(self, port, clients=4, rounds=3):
        """``rounds`` messages from each of ``clients`` clients at once (pipelined); every
        one must get ``250 Queued!``. Client i's message n goes from s<i>.<n>@b.example to
        r<i>.<n>@example.com."""
        clients = [await self.session(port) for _ in range(clients)]
        for n in range(rounds):
            for i, client in enumerate(clients):
                client.send("MAIL FROM:<s%d.%d@b.example>" % (i, n))
                client.send("RCPT TO:<r%d.%d@example.com>" % (i, n))
                client.send("DATA")
            for client in clients:
                self.assertEqual([(await client.reply())[0] for _ in range(3)], [250, 250, 354])
            for client in clients:
                client.transport.write(HEADER + b"\r\n" + BODY + b".\r\n")
            for client in clients:
                self.assertEqual(await client.reply(), (250, ["Queued!"]))

    def received_lines(self):
        """Exim's log lines for received messages (``<=``)."""
        return [line for line in self.mta.mainlog().splitlines() if " <= " in line]


class DeliveryTests(EximTestCase):
    async def test_envelope_recipients_and_body_byte_for_byte(self):
        self.exim()
        server, port = self.start(files={"size_threshold": "10"})   # body spooled to a file
        client = await self.session(port)
        recipients = ["<u@example.com>", "<V.W@Example.COM>", '<"x y"@example.com>',
                      "<z@other.example>"]
        self.assertEqual(await self.send(client, recipients=recipients), (250, ["Queued!"]))
        await self.idle()
        delivered = [split_delivered(d) for d in self.mta.delivered()]
        self.assertEqual(sorted(d[1] for d in delivered),
                         sorted(['"x y"@example.com', "V.W@Example.COM", "u@example.com",
                                 "z@other.example"]))
        for return_path, _, _, message in delivered:
            self.assertEqual(return_path, "<a@b.example>")
            self.assertEqual(message, STORED)
        # one message in Exim, received once, with our sender; one copy per recipient
        self.assertEqual(len({d[2] for d in delivered}), 1)
        [received] = self.received_lines()
        self.assertIn(" <= a@b.example U=", received)
        self.assertIn(" P=local-bsmtp ", received)

    async def test_null_sender_and_unqualified_postmaster(self):
        self.exim()
        server, port = self.start()
        client = await self.session(port)
        data = (b"From: MAILER-DAEMON@b.example\r\nSubject: bounce\r\n"
                b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-Id: <b-1@b.example>\r\n"
                b"\r\n..\r\n...\r\nbody\r\n")
        self.assertEqual(await self.send(client, sender="<>", recipients=["<postmaster>"],
                                         data=data), (250, ["Queued!"]))
        await self.idle()
        [(return_path, envelope_to, _, message)] = [split_delivered(d)
                                                    for d in self.mta.delivered()]
        self.assertEqual((return_path, envelope_to), ("<>", "postmaster@example.com"))
        self.assertEqual(message, data.replace(b"\r\n..", b"\r\n.").replace(b"\r\n", b"\n"))

    async def test_several_messages_on_one_connection_and_in_parallel(self):
        self.exim()
        server, port = self.start()
        await self.send_in_parallel(port)
        await self.idle()
        delivered = [split_delivered(d) for d in self.mta.delivered()]
        self.assertEqual(sorted((d[0], d[1]) for d in delivered),
                         sorted(("<s%d.%d@b.example>" % (i, n), "r%d.%d@example.com" % (i, n))
                                for i in range(4) for n in range(3)))
        self.assertEqual({d[3] for d in delivered}, {STORED})
        self.assertEqual(len(self.received_lines()), 12)

    async def test_large_message(self):
        self.exim()
        body = b"".join(b"%07d .line with some text to make it longer\r\n" % i
                        for i in range(40000))
        server, port = self.start(files={"size_threshold": "1000"})
        client = await self.session(port)
        self.assertEqual(await self.send(client, data=HEADER + b"\r\n" + body),
                         (250, ["Queued!"]))
        await self.idle()
        [(_, _, _, message)] = [split_delivered(d) for d in self.mta.delivered()]
        self.assertEqual(message, (HEADER + b"\r\n" + body).replace(b"\r\n", b"\n"))

    async def test_reply_does_not_wait_for_exims_delivery(self):
        # Exim's background delivery process keeps Exim's standard error open until the
        # delivery is done (here: a pipe that sleeps 3 s). The reply must not wait for it.
        self.exim(slow_delivery=3)
        server, port = self.start()
        client = await self.session(port)
        self.assertEqual(await self.send(client, recipients=["<u@slow.example>"]),
                         (250, ["Queued!"]))
        # The event, not a duration: when the 250 arrives, Exim's delivery has not finished.
        self.assertEqual(len(self.mta.queued()), 1, "the delivery is still running")
        self.assertFalse(os.listdir(os.path.join(self.mta.dir, "slow"))
                         if os.path.isdir(os.path.join(self.mta.dir, "slow")) else [])
        await self.idle()
        [name] = os.listdir(os.path.join(self.mta.dir, "slow"))
        with open(os.path.join(self.mta.dir, "slow", name), "rb") as f:
            data = f.read()
            self.assertTrue(data.endswith(b"\n" + STORED), data)

    async def test_client_gone_before_the_reply_message_delivered_once(self):
        # A stand-in that sleeps before running the real Exim: meanwhile the client drops the
        # connection and the server discards the transaction. The plugin took the message.
        self.exim()
        scripts = tempfile.mkdtemp(prefix="qptx-exim-bin-")
        self.addCleanup(shutil.rmtree, scripts, True)
        slow = write_script(scripts, "slow-exim", "import os, sys, time\ntime.sleep(0.5)\n"
                            "os.execv(%r, [%r] + sys.argv[1:])\n" % (self.mta.command,
                                                                     self.mta.command))
        server, port = self.start("queue/exim-bsmtp exim_path %s -C %s" % (slow, self.mta.config),
                                  files={"size_threshold": "10"})
        client = await self.session(port)
        for line in ("MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>", "DATA"):
            await client.command(line)
        client.transport.write(HEADER + b"\r\n" + BODY + b".\r\n")
        client.transport.loseConnection()
        self.assertTrue(await wait_for(lambda: len(self.received_lines()) == 1))
        # the session ends (and the spool file goes) once the plugin is done
        self.assertTrue(await wait_for(lambda: not server.sessions))
        self.assertTrue(await wait_for(lambda: os.listdir(server.spool_dir) == []))
        await self.idle()
        [(_, envelope_to, _, message)] = [split_delivered(d) for d in self.mta.delivered()]
        self.assertEqual((envelope_to, message), ("u@example.com", STORED))


class RefusalTests(EximTestCase):
    """Exim's own refusals (real Exim) → the right 5xx/4xx; nothing kept, nothing twice."""

    async def assertNothingDelivered(self):
        await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(self.mta.queued(), [])
        self.assertEqual(self.mta.delivered(), [])
        self.assertEqual(self.received_lines(), [])

    async def test_recipient_refused_by_acl_is_permanent(self):
        self.exim(refuse_recipient="bad@example.com")
        server, port = self.start()
        client = await self.session(port)
        self.assertEqual(await self.send(client, recipients=["<u@example.com>", "<bad@example.com>"]),
                         (552, ["recipient refused by exim-test"]))
        await self.assertNothingDelivered()
        # the connection goes on; the next message is delivered
        self.assertEqual(await self.send(client), (250, ["Queued!"]))
        await self.idle()
        self.assertEqual(len(self.mta.delivered()), 1)

    async def test_sender_refused_by_acl_is_permanent(self):
        self.exim(refuse_sender="spam@b.example")
        server, port = self.start()
        client = await self.session(port)
        self.assertEqual(await self.send(client, sender="<spam@b.example>"),
                         (552, ["sender refused by exim-test"]))
        await self.assertNothingDelivered()

    async def test_message_size_limit(self):
        # Exim stops reading at the limit: our writes then fail (EPIPE); Exim's reply counts.
        self.exim(message_size_limit="20K")
        server, port = self.start(files={"size_threshold": "1000"})
        client = await self.session(port)
        big = HEADER + b"\r\n" + b"z" * 70 + b"\r\n" * 30000
        self.assertEqual(await self.send(client, data=big),
                         (552, ["Message size exceeds maximum permitted"]))
        await self.assertNothingDelivered()

    async def test_too_many_recipients_is_temporary(self):
        # 0.94 answered this 4xx with 552; it is temporary.
        self.exim(recipients_max=2)
        server, port = self.start()
        client = await self.session(port)
        self.assertEqual(await self.send(client, recipients=["<a@example.com>", "<b@example.com>",
                                                             "<c@example.com>"]),
                         (451, ["too many recipients"]))
        await self.assertNothingDelivered()
        self.assertEqual(await self.send(client, recipients=["<a@example.com>", "<b@example.com>"]),
                         (250, ["Queued!"]))
        await self.idle()
        self.assertEqual(len(self.mta.delivered()), 2)

    async def test_temporary_lets_the_next_queue_plugin_try_permanent_is_final(self):
        self.exim(recipients_max=1, refuse_sender="spam@b.example")
        server, port = self.start(extra_plugins=["scripted queue OK fallback queue"])
        client = await self.session(port)
        self.assertEqual(await self.send(client, recipients=["<a@example.com>", "<b@example.com>"]),
                         (250, ["fallback queue"]))
        self.assertEqual(await self.send(client, sender="<spam@b.example>"),
                         (552, ["sender refused by exim-test"]))
        await self.assertNothingDelivered()

    async def test_exim_that_cannot_start_gives_451_and_logs_why(self):
        # the real Exim with a configuration file that does not exist: exit status 1,
        # nothing on standard output, the reason on standard error
        self.exim()
        missing = os.path.join(self.mta.dir, "missing.conf")
        server, port = self.start("queue/exim-bsmtp exim_path %s -C %s" % (self.mta.command, missing))
        logged = capture_log(self, server)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (451, [INTERNAL]))
        messages = [m for _, m in logged]
        self.assertTrue(any(m.startswith("exim stderr: ") and "missing.conf" in m
                            for m in messages), messages)
        self.assertTrue(any("BSMTP enqueue failed; exit status 1 from " in m for m in messages),
                        messages)
        await self.assertNothingDelivered()


class FailureInjectionTests(EximTestCase):
    def scripts(self):
        directory = tempfile.mkdtemp(prefix="qptx-exim-bin-")
        self.addCleanup(shutil.rmtree, directory, True)
        return directory

    async def test_exim_absent_or_not_executable(self):
        directory = self.scripts()
        not_executable = os.path.join(directory, "not-executable")
        with open(not_executable, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        for path in (os.path.join(directory, "missing"), not_executable):
            server, port = start_server(self, ["rcpt_ok", "queue/exim-bsmtp exim_path %s" % path])
            client = await self.session(port)
            self.assertEqual(await self.send(client), (451, [INTERNAL + " (cannot run exim)"]), path)

    async def test_slow_exim_times_out_and_is_killed(self):
        # STAND-IN: a script that sleeps 30 s before it would run the real Exim.
        self.exim()
        slow = write_script(self.scripts(), "slow-exim",
                            "import os, sys, time\ntime.sleep(30)\n"
                            "os.execv(%r, [%r] + sys.argv[1:])\n" % (self.mta.command,
                                                                     self.mta.command))
        server, port = self.start("queue/exim-bsmtp exim_path %s timeout 0.5 -C %s"
                                  % (slow, self.mta.config))
        client = await self.session(port)
        # The stand-in sleeps 30 s, longer than the client waits for a reply: the 451 naming
        # the timeout can only come from the plugin's own timer.
        self.assertEqual(await self.send(client),
                         (451, [INTERNAL + " (exim timed out after 0.5 seconds)"]))
        def running():
            return processes_running(slow)
        await eventually(lambda: not running())
        self.assertEqual(running(), [], "the stand-in was killed")
        self.assertEqual(self.mta.delivered(), [])
        self.assertEqual(self.received_lines(), [])

    async def test_crash(self):
        # STAND-IN: a script that reads a little and kills itself.
        script = write_script(self.scripts(), "crashing-exim",
                              "import os, signal, sys\nsys.stdin.buffer.read(10)\n"
                              "os.kill(os.getpid(), getattr(signal, os.environ['CRASH_SIGNAL']))\n")
        server, port = start_server(self, ["rcpt_ok", "queue/exim-bsmtp exim_path %s" % script])
        client = await self.session(port)
        for name in ("SIGKILL", "SIGSEGV", "SIGTERM"):
            os.environ["CRASH_SIGNAL"] = name
            self.addCleanup(os.environ.pop, "CRASH_SIGNAL", None)
            self.assertEqual(await self.send(client), (451, [INTERNAL + " (exim crashed)"]), name)

    async def test_exit_status_without_a_reply(self):
        # STAND-IN: reads everything, then exits 2 / 3 / 1 saying nothing on standard output.
        script = write_script(self.scripts(), "failing-exim",
                              "import os, sys\nsys.stdin.buffer.read()\n"
                              "sys.stderr.write('something broke\\n')\n"
                              "sys.exit(int(os.environ['EXIT_STATUS']))\n")
        server, port = start_server(self, ["rcpt_ok", "queue/exim-bsmtp exim_path %s" % script])
        logged = capture_log(self, server)
        client = await self.session(port)
        for status in (1, 2, 3):
            os.environ["EXIT_STATUS"] = str(status)
            self.addCleanup(os.environ.pop, "EXIT_STATUS", None)
            self.assertEqual(await self.send(client), (451, [INTERNAL]), status)
        self.assertIn("exim stderr: something broke", [m for _, m in logged])

    async def test_exit_zero_without_reading_the_message(self):
        # STAND-IN: exits 0 at once (not what Exim does): not acknowledged.
        script = write_script(self.scripts(), "lazy-exim", "import sys\nsys.exit(0)\n")
        server, port = start_server(self, ["rcpt_ok", "queue/exim-bsmtp exim_path %s" % script])
        client = await self.session(port)
        big = HEADER + b"\r\n" + b"x" * 1000 + b"\r\n" * 3000
        self.assertEqual(await self.send(client, data=big * 20),
                         (451, [INTERNAL + " (exim did not read the whole message)"]))
        # a small message fits in the pipe's buffer: every write succeeds, nothing is read
        self.assertEqual(await self.send(client),
                         (451, [INTERNAL + " (exim did not read the whole message)"]))

    async def test_exit_1_after_the_message_was_accepted_is_250(self):
        # STAND-IN around the real Exim: it runs Exim on the batch (which delivers the
        # message), then reports an error on a later line with exit status 1, as Exim does
        # when "one or more messages were accepted before the error". A 451 would make the
        # client send the message again: a duplicate.
        self.exim()
        script = write_script(self.scripts(), "exim-then-error",
                              "import subprocess, sys\n"
                              "status = subprocess.call([%r] + sys.argv[1:])\n"
                              "assert status == 0, status\n"
                              "print('500 Command unrecognized\\nTransaction started in line 20\\n"
                              "Error detected in line 20')\n"
                              "sys.exit(1)\n" % self.mta.command)
        server, port = self.start("queue/exim-bsmtp exim_path %s -C %s"
                                  % (script, self.mta.config))
        logged = capture_log(self, server)
        client = await self.session(port)
        self.assertEqual(await self.send(client), (250, ["Queued!"]))
        await self.idle()
        self.assertEqual(len(self.mta.delivered()), 1)
        self.assertTrue(any("exited 1 after accepting the message" in m for _, m in logged))

    async def test_reply_lines_and_multi_line_text(self):
        # STAND-IN: answers like Exim's moan_smtp_batch() with a two-line ACL message.
        script = write_script(self.scripts(), "moaning-exim",
                              "import os, sys\nsys.stdin.buffer.read()\n"
                              "sys.stdout.write(os.environ['MOAN'])\nsys.exit(2)\n")
        server, port = start_server(self, ["rcpt_ok", "queue/exim-bsmtp exim_path %s" % script])
        client = await self.session(port)
        cases = [
            ("550 first line\nsecond line\nTransaction started in line 1\n"
             "Error detected in line 9\n", (552, ["first line", "second line"])),
            ("421 Lost incoming connection\nTransaction started in line 1\n"
             "Error detected in line 8\n", (451, ["Lost incoming connection"])),
            ("garbage\n", (451, [INTERNAL])),
            ("354 what\nTransaction started in line 1\n", (451, [INTERNAL])),
        ]
        for moan, expected in cases:
            os.environ["MOAN"] = moan
            self.addCleanup(os.environ.pop, "MOAN", None)
            self.assertEqual(await self.send(client), expected, moan)

    async def test_exact_batch_on_exims_standard_input(self):
        # STAND-IN: records its arguments and standard input, exits 0.
        directory = self.scripts()
        script = write_script(directory, "recording-exim",
                              "import json, sys\n"
                              "data = sys.stdin.buffer.read()\n"
                              "open(%r, 'wb').write(data)\n"
                              "open(%r, 'w').write(json.dumps(sys.argv[1:]))\n"
                              % (os.path.join(directory, "stdin"),
                                 os.path.join(directory, "argv")))
        server, port = start_server(self, [
            "rcpt_ok", "queue/exim-bsmtp exim_path %s timeout 30 -oMr qpsmtpd -odq" % script])
        client = await self.session(port)
        data = b"..Leading: dot in a header\r\n" + HEADER + b"\r\n" + BODY + b"end\r\n"
        self.assertEqual(await self.send(client, recipients=["<u@example.com>", '<"x y"@example.com>'],
                                         data=data), (250, ["Queued!"]))
        with open(os.path.join(directory, "argv")) as f:
            self.assertEqual(f.read(), '["-bS", "-oMr", "qpsmtpd", "-odq"]')
        with open(os.path.join(directory, "stdin"), "rb") as f:
            batch = f.read()
        head, _, rest = batch.partition(b"Authentication-Results: mx.example.org; auth=none\n")
        self.assertTrue(head.startswith(
            b"HELO mx.example.org\nMAIL FROM:<a@b.example>\nRCPT TO:<u@example.com>\n"
            b'RCPT TO:<"x y"@example.com>\nDATA\nReceived: from '), head)
        self.assertEqual(
            rest, b"..Leading: dot in a header\n" + HEADER.replace(b"\r\n", b"\n") + b"\n"
            + BODY.replace(b"\r\n", b"\n") + b"end\n.\nQUIT\n")


class ArgumentTests(unittest.TestCase):
    def plugin(self, line):
        server = make_server(self, [line])
        return next(p for p in server.plugins if p.path == "queue/exim-bsmtp")

    def test_defaults(self):
        plugin = self.plugin("queue/exim-bsmtp")
        self.assertEqual((plugin.exim_path, plugin.timeout, plugin.argv),
                         ("/usr/sbin/rsmtp", 300, ["/usr/sbin/rsmtp", "-bS"]))

    def test_path_timeout_and_exim_arguments(self):
        plugin = self.plugin("queue/exim-bsmtp exim_path /usr/sbin/exim4 timeout 7.5 "
                             "-C /etc/exim4/front.conf -oMr qpsmtpd timeout 3")
        self.assertEqual(plugin.exim_path, "/usr/sbin/exim4")
        self.assertEqual(plugin.timeout, 7.5)
        self.assertEqual(plugin.argv, ["/usr/sbin/exim4", "-bS", "-C", "/etc/exim4/front.conf",
                                       "-oMr", "qpsmtpd", "timeout", "3"])
        plugin = self.plugin("queue/exim-bsmtp -odq")
        self.assertEqual(plugin.argv, ["/usr/sbin/rsmtp", "-bS", "-odq"])

    def test_bad_arguments_stop_start_up(self):
        for line in ("queue/exim-bsmtp exim_path", "queue/exim-bsmtp exim_path exim4",
                     "queue/exim-bsmtp timeout x", "queue/exim-bsmtp timeout 0",
                     "queue/exim-bsmtp timeout -1", "queue/exim-bsmtp path /usr/sbin/exim4",
                     "queue/exim-bsmtp /usr/sbin/exim4"):
            with self.assertRaises(StartupError, msg=line) as caught:
                make_server(self, [line])
            self.assertIn("plugin queue/exim-bsmtp", str(caught.exception))

    def test_batch_helpers(self):
        module = plugin_module()
        self.assertEqual(
            module.batch_envelope("mx.example", Address.null(),
                                  [Address("u", "example.com"), Address("p q", "example.com"),
                                   Address("postmaster", None)]),
            b'HELO mx.example\nMAIL FROM:<>\nRCPT TO:<u@example.com>\n'
            b'RCPT TO:<"p q"@example.com>\nRCPT TO:<postmaster>\nDATA\n')
        self.assertEqual(module.dot_stuff(b".a\n.\nb.\n..c", True), (b"..a\n..\nb.\n...c", False))
        self.assertEqual(module.dot_stuff(b".x\n", False), (b".x\n", True))
        self.assertEqual(module.dot_stuff(b"", True), (b"", True))
        self.assertEqual(module.parse_reply(b"552 Message size exceeds maximum permitted\n"
                                            b"Transaction started in line 1\n"
                                            b"Error detected in line 295\n"),
                         (552, ["Message size exceeds maximum permitted"]))
        self.assertEqual(module.parse_reply(b"501 RCPT TO must have an address operand\n"
                                            b"Transaction started in line 1\n"
                                            b"Error detected in line 3\nRCPT TO:\n"),
                         (501, ["RCPT TO must have an address operand"]))
        self.assertIsNone(module.parse_reply(b""))
        self.assertIsNone(module.parse_reply(b"exim: something\n"))


class TwistdTests(EximTestCase):
    """A real ``twistd qpsmtpd-tx`` process and smtplib, through the real Exim."""

    def test_smtplib_through_twistd(self):
        self.exim(refuse_recipient="bad@example.com")
        config = write_config(os.path.abspath(self.mktemp()), ["rcpt_ok", self.mta.plugin_line()])
        _, port, log = start_twistd(self, config)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.example")
            smtplib_body = b"line one\r\n.dot\r\n\r\n8bit \xc3\xa9\r\nlast line\r\n"
            self.assertEqual(client.sendmail("a@b.example", ["u@example.com", "v@example.com"],
                                             HEADER + b"\r\n" + smtplib_body), {})
            with self.assertRaises(smtplib.SMTPDataError) as caught:
                client.sendmail("a@b.example", ["bad@example.com"], HEADER + b"\r\n" + smtplib_body)
            self.assertEqual((caught.exception.smtp_code, caught.exception.smtp_error),
                             (552, b"recipient refused by exim-test"))
        self.assertTrue(self.mta.wait_idle_blocking())
        delivered = [split_delivered(d) for d in self.mta.delivered()]
        self.assertEqual(sorted(d[1] for d in delivered), ["u@example.com", "v@example.com"])
        for return_path, _, _, message in delivered:
            self.assertEqual(return_path, "<a@b.example>")
            self.assertEqual(message, (HEADER + b"\r\n" + smtplib_body).replace(b"\r\n", b"\n"))
