"""The test kit's private Postfix (tests/support/postfix.py): its delivery command stores a
message only when Postfix's pipe(8) handed all of it over.

pipe(8) runs the command in a session of its own (setsid) and writes the message to its
standard input; when Postfix is stopped mid-delivery, pipe(8) dies and the command reads an
early end of file. A delivery file made of that part of a message is a delivery Postfix never
made (it delivers the message again once started), and the tests that stop Postfix counted it.

Stopping Postfix at the exact moment pipe(8) is halfway through a message cannot be timed, so
here a small Python process stands in for pipe(8), with real pipes, running the real delivery
script: it hands over a whole message, or part of one and then exits as a killed pipe(8) does.
"""

import os
import subprocess
import sys
import tempfile

from twisted.trial import unittest

from tests.support.postfix import DELIVER_SCRIPT, Delivery
from tests.support.processes import poll_until

#: stands in for pipe(8): runs the delivery command (args: mode, data, script, tmp directory),
#: writes ``data`` (all of the message or part of it) to its standard input. "whole": closes it,
#: reads the command's output to its end and prints the command's exit status. "dies": once the
#: command runs (its file in tmp/ is there), prints the command's PID and exits without closing
#: anything (the kernel closes its ends of the pipes, as for a killed pipe(8)). "dies-first":
#: the same, but the command starts only once we are gone.
FAKE_PIPE = r"""
import os, subprocess, sys, time
mode, data, script, tmp = sys.argv[1], sys.argv[2].encode(), sys.argv[3], sys.argv[4]
argv = ["/bin/sh", script, "QID1", "Sa@b.example", "Ru@example.com"]
if mode == "dies-first":
    argv = ["/bin/sh", "-c", 'while [ -e /proc/%d ]; do sleep 0.01; done; exec "$@"' % os.getpid(),
            "wait"] + argv
command = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
command.stdin.write(data)
command.stdin.flush()
if mode == "dies":
    deadline = time.monotonic() + 20
    while not os.listdir(tmp) and time.monotonic() < deadline:
        time.sleep(0.01)
if mode != "whole":
    print(command.pid, flush=True)
    os._exit(0)
command.stdin.close()
command.stdout.read()
print(command.wait(), flush=True)
"""

MESSAGE = "From: a@b.example\nSubject: whole\nMessage-Id: <kit-1@b.example>\n\nbody\n"


class DeliverScriptTests(unittest.TestCase):
    """The delivery command of the private Postfix, run by a stand-in for pipe(8)."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="qptx-deliver-")
        self.addCleanup(subprocess.run, ["rm", "-rf", self.dir])
        self.out = os.path.join(self.dir, "delivered")
        for sub in ("tmp", "new"):
            os.makedirs(os.path.join(self.out, sub))
        self.script = os.path.join(self.dir, "deliver")
        with open(self.script, "w") as f:
            f.write(DELIVER_SCRIPT.format(out=self.out))

    def run_fake_pipe(self, mode, data):
        return subprocess.run([sys.executable, "-c", FAKE_PIPE, mode, data, self.script,
                               os.path.join(self.out, "tmp")],
                              capture_output=True, text=True, timeout=30, check=True).stdout

    def stored(self, sub="new"):
        return sorted(os.listdir(os.path.join(self.out, sub)))

    def test_a_whole_message_is_one_delivery(self):
        self.assertEqual(self.run_fake_pipe("whole", MESSAGE).strip(), "0")
        [name] = self.stored()
        with open(os.path.join(self.out, "new", name), "rb") as f:
            delivery = Delivery.parse(f.read(), name)
        self.assertEqual((delivery.queue_id, delivery.sender, delivery.recipients),
                         ("QID1", "a@b.example", ["u@example.com"]))
        self.assertEqual(delivery.message, MESSAGE.encode())
        self.assertEqual(self.stored("tmp"), [])

    def assert_no_delivery_after(self, mode):
        pid = int(self.run_fake_pipe(mode, MESSAGE[:20]))

        def command_ended():
            try:
                with open("/proc/%d/stat" % pid) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                return True
        self.assertTrue(poll_until(command_ended, 20), "the delivery command did not end")
        self.assertEqual(self.stored(), [])
        self.assertEqual(self.stored("tmp"), [])

    def test_part_of_a_message_from_a_pipe_dying_mid_message_is_no_delivery(self):
        self.assert_no_delivery_after("dies")

    def test_part_of_a_message_from_a_pipe_gone_before_the_command_starts_is_no_delivery(self):
        # the command's $PPID is then already the process that adopted it
        self.assert_no_delivery_after("dies-first")
