"""End to end: a real ``twistd qpsmtpd-tx`` process, real SMTP clients, the Maildir checked byte for byte."""

import os
import re
import shutil
import smtplib
import subprocess
import sys

from twisted.trial import unittest

from tests.support.harness import write_config
from tests.support.processes import (child_pids, free_port, server_env, start_maildir_twistd,
                                     start_twistd, stop_process, twistd_argv)

HEADERS = (b"From: Alice <a@b.example>\r\nTo: u@example.com\r\nSubject: test\r\n"
           b"Message-Id: <e2e-1@b.example>\r\n")
BODY = (b"first line\r\n.leading dot\r\n..two dots\r\n\r\n8bit: \xc3\xa9t\xc3\xa9\r\n"
        + b"x" * 900 + b"\r\nlast\r\n")


def _loopback_name():
    """What the server's reverse lookup of 127.0.0.1 gives: the PTR record in DNS, as qpsmtpd
    asks it (not /etc/hosts), through this machine's /etc/resolv.conf; Unknown if none."""
    code = ("import sys; from twisted.internet import reactor; from qpsmtpd_tx.dns import Resolver;"
            "from qpsmtpd_tx.rdns import lookup_ptr; r = Resolver.from_settings(reactor);"
            "reactor.callWhenRunning(lambda: lookup_ptr(r, '127.0.0.1').addBoth("
            "lambda n: (print(n or 'Unknown'), reactor.stop()))); reactor.run()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=server_env(), timeout=30)
    return out.stdout.strip() or "Unknown"


LOOPBACK_NAME = _loopback_name()


def maildir_files(maildir):
    new = os.path.join(maildir, "new")
    return sorted(os.path.join(new, n) for n in os.listdir(new)) if os.path.isdir(new) else []


class EndToEndTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.maildir = os.path.join(self.dir, "maildir")
        write_config(os.path.join(self.dir, "config"),
                     ["rcpt_ok", "queue/maildir %s" % self.maildir],
                     {"databytes": "100000"})
        _, self.port, self.log = start_twistd(self, os.path.join(self.dir, "config"))

    def check_delivered(self, path, sender, recipients, proto="ESMTP", body=BODY):
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        self.assertEqual(lines[0], b"Return-Path: <%s>" % sender.encode())
        for n, rcpt in enumerate(recipients, 1):
            self.assertEqual(lines[n], b"Delivered-To: %s" % rcpt.encode())
        n = len(recipients) + 1
        self.assertRegex(lines[n], rb"^Received: from " + re.escape(LOOPBACK_NAME.encode())
                         + rb" \(HELO [^)]+\) \(127\.0\.0\.1\)$")
        self.assertRegex(lines[n + 1], rb"^ by mx\.example\.org \(qpsmtpd-tx/[0-9.]+\) with "
                         + proto.encode() + rb"; \w{3}, \d\d? \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$")
        self.assertEqual(lines[n + 2], b"Authentication-Results: mx.example.org; auth=none")
        rest = b"\n".join(lines[n + 3:])
        self.assertEqual(rest, (HEADERS + b"\r\n" + body).replace(b"\r\n", b"\n"))

    def test_smtplib(self):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            code, text = client.ehlo("client.example")
            self.assertEqual(code, 250)
            self.assertIn(b"PIPELINING", text)
            self.assertIn(b"SIZE 100000", text)
            refused = client.sendmail("a@b.example", ["u@example.com", "v@example.com"],
                                      HEADERS + b"\r\n" + BODY)
            self.assertEqual(refused, {})
        files = maildir_files(self.maildir)
        self.assertEqual(len(files), 1)
        self.check_delivered(files[0], "a@b.example", ["u@example.com", "v@example.com"])
        self.assertEqual(os.listdir(os.path.join(self.maildir, "tmp")), [])

    def test_smtplib_refusals(self):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            client.ehlo("client.example")
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as caught:
                client.sendmail("a@b.example", ["x@elsewhere.example"], HEADERS + b"\r\n" + BODY)
            self.assertEqual(caught.exception.recipients["x@elsewhere.example"],
                             (550, b"Relaying denied (#5.7.1)"))
            big = b"Subject: big\r\n\r\n" + b"y" * 100001
            # smtplib announces SIZE=, which is refused at MAIL ...
            with self.assertRaises(smtplib.SMTPSenderRefused) as caught:
                client.sendmail("a@b.example", ["u@example.com"], big)
            self.assertEqual(caught.exception.smtp_code, 552)
            # ... and without SIZE= the data is read and refused after the final dot.
            self.assertEqual(client.docmd("MAIL FROM:<a@b.example>")[0], 250)
            self.assertEqual(client.docmd("RCPT TO:<u@example.com>")[0], 250)
            self.assertEqual(client.data(big), (552, b"Message too big!"))
            self.assertEqual(client.noop()[0], 250)
        self.assertEqual(maildir_files(self.maildir), [])

    def test_swaks_pipelined(self):
        if shutil.which("swaks") is None:
            raise unittest.SkipTest("swaks is not installed (.ci/run installs it)")
        message = os.path.join(self.dir, "message.eml")
        with open(message, "wb") as f:
            f.write(HEADERS + b"\r\n" + BODY)
        result = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % self.port, "--from", "s@b.example",
             "--to", "u@example.com", "--helo", "swaks.example", "--pipeline",
             "--data", message, "--timeout", "10"],
            capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout.decode(errors="replace"))
        self.assertNotIn(b"<** ", result.stdout)     # swaks marks unexpected replies so
        files = maildir_files(self.maildir)
        self.assertEqual(len(files), 1)
        # swaks ends the data with CRLF before the dot even after a final CRLF: one more empty line.
        self.check_delivered(files[0], "s@b.example", ["u@example.com"], body=BODY + b"\r\n")

    def test_many_messages_one_connection(self):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            client.ehlo("client.example")
            for _ in range(20):
                self.assertEqual(client.sendmail("a@b.example", ["u@example.com"], HEADERS + b"\r\n" + BODY), {})
        files = maildir_files(self.maildir)
        self.assertEqual(len(files), 20)
        for path in files:
            self.check_delivered(path, "a@b.example", ["u@example.com"])


class StartupErrorTests(unittest.TestCase):
    def run_twistd(self, plugins, files=None):
        config = write_config(os.path.abspath(self.mktemp()), plugins, files)
        return subprocess.run(twistd_argv(config, free_port()), env=server_env(),
                              capture_output=True, timeout=60), config

    def test_unknown_plugin_names_file_and_line(self):
        result, config = self.run_twistd(["rcpt_ok", "# comment", "no_such_plugin arg"])
        self.assertNotEqual(result.returncode, 0)
        output = (result.stdout + result.stderr).decode()
        self.assertIn("%s:3: plugin no_such_plugin: plugin not found" % os.path.join(config, "plugins"),
                      output)
        self.assertNotIn("Traceback", output)

    def test_bad_plugin_argument(self):
        result, config = self.run_twistd(["queue/maildir a b c d"])
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("%s:1: plugin queue/maildir: usage" % os.path.join(config, "plugins"),
                      (result.stdout + result.stderr).decode())


class WorkersTests(unittest.TestCase):
    """--workers N: extra processes serve the same listening socket; a dead one is replaced."""

    children = staticmethod(child_pids)

    def test_workers_serve_and_restart(self):
        import time
        process, port, log, maildir = start_maildir_twistd(self, ["--workers", "3"])
        deadline = time.monotonic() + 15
        while len(self.children(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = self.children(process.pid)
        self.assertEqual(len(workers), 2)
        for n in range(30):
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                self.assertEqual(client.sendmail("a@b.example", ["u@example.com"],
                                                 HEADERS + b"\r\n" + BODY), {})
        self.assertEqual(len(maildir_files(maildir)), 30)
        # the per-message log lines are written after the reply: kill a worker only once all 30
        # are in the log, or the killed one may take its last line with it
        message_line = r"\] (?:w[12]\.)?[0-9a-f]+ message \S+ from <a@b.example>"

        def logged_messages():
            with open(log, "rb") as f:
                return len(re.findall(message_line, f.read().decode(errors="replace")))

        deadline = time.monotonic() + 15
        while logged_messages() < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(logged_messages(), 30)
        os.kill(workers[0], 9)
        deadline = time.monotonic() + 15
        while (workers[0] in self.children(process.pid) or len(self.children(process.pid)) < 2) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(len(self.children(process.pid)), 2)
        self.assertNotIn(workers[0], self.children(process.pid))
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            self.assertEqual(client.sendmail("a@b.example", ["u@example.com"], HEADERS + b"\r\n" + BODY), {})
        deadline = time.monotonic() + 15
        while logged_messages() < 31 and time.monotonic() < deadline:
            time.sleep(0.1)
        with open(log, "rb") as f:
            text = f.read().decode(errors="replace")
        self.assertRegex(text, r"worker [12] ended \(.*\); starting it again")
        # each message is logged with its process's connection id (workers' are w1., w2.)
        self.assertEqual(logged_messages(), 31)
        stop_process(process)
        remaining = [p for p in workers[1:] if os.path.exists("/proc/%d" % p)]
        self.assertEqual(remaining, [])
