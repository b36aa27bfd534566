"""A real ``twistd qpsmtpd-tx`` stopped (SIGTERM) while its Maildir delivery child holds a
message: the client gets 250 only once the message is in ``new/``, and a message the child
could not commit gets no 250 at all.

The child is held with SIGSTOP (a disk that does not answer); the test knows the message
reached it by the bytes waiting in its input pipe (FIONREAD), not by a sleep.
"""

import array
import fcntl
import os
import signal
import socket
import termios

from twisted.trial import unittest

from tests.support.processes import (delivery_child_pids, poll_until, read_text,
                                      start_maildir_twistd)

#: seconds anything here may take (generous: the machine is shared)
BOUND = 30.0


def pipe_bytes(pid):
    """Bytes waiting, unread, in the input pipe (fd 0) of process ``pid``."""
    fd = os.open("/proc/%d/fd/0" % pid, os.O_RDONLY | os.O_NONBLOCK)
    try:
        count = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, count)
        return count[0]
    finally:
        os.close(fd)


class Client:
    """A blocking SMTP client that stops before reading the reply to the final dot."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
        self.file = self.sock.makefile("rb")
        self.reply()

    def reply(self):
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                return b"".join(lines) or None      # connection closed
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def command(self, line):
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def send_message(self, helo=True):
        """Everything up to the final dot; the caller reads its reply."""
        if helo:
            assert self.command(b"HELO client.example").startswith(b"250")
        assert self.command(b"MAIL FROM:<a@b.example>").startswith(b"250")
        assert self.command(b"RCPT TO:<u@example.com>").startswith(b"250")
        assert self.command(b"DATA").startswith(b"354")
        self.sock.sendall(b"Subject: in flight\r\n\r\nhello\r\n.\r\n")

    def close(self):
        self.file.close()
        self.sock.close()


class ShutdownInFlightTests(unittest.TestCase):
    def start(self):
        self.process, port, self.log, self.maildir = start_maildir_twistd(self)
        self.assertTrue(poll_until(lambda: delivery_child_pids(self.process.pid), BOUND))
        [self.child] = delivery_child_pids(self.process.pid)
        self.addCleanup(self.resume_child)
        os.kill(self.child, signal.SIGSTOP)      # stands for a disk that does not answer
        self.client = Client(port)
        self.addCleanup(self.client.close)
        self.client.send_message()
        # the message is in the stopped child's pipe: the server waits for its answer
        self.assertTrue(poll_until(lambda: pipe_bytes(self.child) > 0, BOUND))

    def resume_child(self):
        try:
            os.kill(self.child, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def new(self):
        return os.listdir(os.path.join(self.maildir, "new"))

    def test_sigterm_waits_for_the_child_and_the_250_comes_after_the_file(self):
        self.start()
        self.process.send_signal(signal.SIGTERM)
        self.assertTrue(poll_until(lambda: "shutting down: waiting" in read_text(self.log),
                                   BOUND))
        self.assertEqual(self.new(), [])
        self.resume_child()
        reply = self.client.reply()
        self.assertTrue(reply.startswith(b"250 Queued!"), reply)
        self.assertEqual(len(self.new()), 1)         # on disk before the 250 was sent
        self.assertEqual(self.client.reply(), b"421 mx.example.org Service shutting down, "
                         b"try again later\r\n")
        self.assertEqual(self.process.wait(BOUND), 0)     # (SIGTERM was sent)
        self.assertNotIn("delivery child ended", read_text(self.log))

    def test_a_child_killed_while_draining_gets_the_message_a_451(self):
        self.start()
        self.process.send_signal(signal.SIGTERM)
        self.assertTrue(poll_until(lambda: "shutting down: waiting" in read_text(self.log),
                                   BOUND))
        os.kill(self.child, signal.SIGKILL)
        reply = self.client.reply()
        self.assertTrue(reply.startswith(b"451 "), reply)
        self.assertEqual(self.new(), [])
        self.assertEqual(self.process.wait(BOUND), 0)     # (SIGTERM was sent)
        self.assertIn("1 deliveries failed", read_text(self.log))

    def test_sighup_while_the_child_holds_a_message(self):
        self.start()
        self.process.send_signal(signal.SIGHUP)
        self.assertTrue(poll_until(lambda: "plugins reloaded" in read_text(self.log), BOUND))
        self.resume_child()
        reply = self.client.reply()
        self.assertTrue(reply.startswith(b"250 Queued!"), reply)
        self.assertEqual(len(self.new()), 1)
        # the new chain's queue/maildir goes on with the same child
        self.client.send_message(helo=False)
        reply = self.client.reply()
        self.assertTrue(reply.startswith(b"250 Queued!"), reply)
        self.assertEqual(len(self.new()), 2)
        self.assertEqual(delivery_child_pids(self.process.pid), [self.child])
        self.assertNotIn("delivery child", read_text(self.log))
