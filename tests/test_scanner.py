"""qpsmtpd_tx/scanner.py, what the program-based scanners share: a scan given up by the
server (the plugin's hook ran past ``plugin_timeout``) kills the scanner program and removes
the message file; the file's permissions follow a shared spool directory. The scanner is a
STAND-IN program (tests/support/scanners.py) that records its pid and hangs."""

import os
import stat

from qpsmtpd_tx.testing import eventually
from tests.support.filter_cases import FilterTestCase, message
from tests.support.scanners import command_lines, standin

HANG_WITH_PID = '''
with open(os.path.join(HERE, "pid"), "w") as f:
    f.write("%d %o" % (os.getpid(), os.stat(sys.argv[-1]).st_mode & 0o777))
marker(open(sys.argv[-1]).read())
'''


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not yet reaped by the reactor counts as gone
    with open("/proc/%d/stat" % pid) as f:
        return f.read().split(") ", 1)[1][0] != "Z"


class GivenUpScanTests(FilterTestCase):
    async def test_plugin_timeout_kills_the_scanner_and_removes_the_file(self):
        program = standin(self, "clamscan", HANG_WITH_PID)
        pid_file = os.path.join(os.path.dirname(program), "pid")
        self.serve(["rcpt_ok", "virus/clamav clamscan_path=%s" % program])
        client = await self.open()
        self.assertEqual((await client.command("MAIL FROM:<a@client.example>"))[0], 250)
        self.assertEqual((await client.command("RCPT TO:<alice@example.com>"))[0], 250)
        self.assertEqual((await client.command("DATA"))[0], 354)
        client.send(message("QPTX-STANDIN-HANG") + ".")
        await eventually(lambda: os.path.exists(pid_file) and os.path.getsize(pid_file))
        with open(pid_file) as f:
            pid = int(f.read().split()[0])
        spooled = command_lines(program)[0][-1]
        self.assertTrue(os.path.exists(spooled))
        self.server.hooks.clock.advance(601)   # past plugin_timeout (600 s)
        code, lines = await client.reply()
        self.assertEqual((code, lines[-1]), (451, "Timeout in processing, try again later"))
        await eventually(lambda: not alive(pid))
        self.assertFalse(os.path.exists(spooled))

    async def test_file_is_group_readable_in_a_group_readable_spool(self):
        program = standin(self, "clamscan", HANG_WITH_PID.replace("marker(", "0 and marker("))
        self.serve(["rcpt_ok", "virus/clamav clamscan_path=%s" % program])
        os.chmod(self.server.spool_dir, 0o750)
        self.assertEqual((await self.send(message("x"))).data[0], 250)
        with open(os.path.join(os.path.dirname(program), "pid")) as f:
            self.assertEqual(f.read().split()[1], "640")
        os.chmod(self.server.spool_dir, 0o700)
        self.assertEqual((await self.send(message("x"))).data[0], 250)
        with open(os.path.join(os.path.dirname(program), "pid")) as f:
            self.assertEqual(f.read().split()[1], "600")
        self.assertEqual(stat.S_IMODE(os.stat(self.server.spool_dir).st_mode), 0o700)
