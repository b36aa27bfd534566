"""user_config: a per-user file that exists but cannot be read is logged at LOGERROR once for
each distinct problem (then at LOGINFO at each recipient that meets it again), not at LOGERROR
for every recipient; once the file reads again, a new problem is logged in full. The recipient
gets no note from it, as before. Real files (a directory, then a symlink loop, where the file
should be: the tests run as root, whom file modes do not stop), a real server, the plugin's
RCPT hook called directly."""

import os

from twisted.internet.defer import maybeDeferred
from twisted.trial import unittest

from qpsmtpd_tx.address import Address
from qpsmtpd_tx.codes import LOGERROR, LOGINFO
from tests.support.harness import capture_log, loaded_plugin, make_server

#: RCPTs to the recipient while each problem lasts
RCPTS = 4


class UnreadableFileLogTests(unittest.TestCase):
    def setUp(self):
        self.users = os.path.abspath(self.mktemp())
        self.path = os.path.join(self.users, "example.com", "carol", "test_threshold")
        os.makedirs(os.path.dirname(self.path))
        self.server = make_server(self, ["user_config %s/%%h/%%u" % self.users, "split_score",
                                         "rcpt_ok"])
        self.log = capture_log(self, self.server)

    async def rcpts(self, count=RCPTS):
        """The notes each of ``count`` RCPTs to carol gets."""
        plugin = loaded_plugin(self.server, "user_config")
        notes = []
        for _ in range(count):
            recipient = Address("carol", "example.com")
            await maybeDeferred(plugin.hook_rcpt, None, recipient, {})
            notes.append(recipient.notes)
        return notes

    def problems(self, level):
        return [m for lvl, m in self.log if lvl == level and "cannot read" in m]

    def break_with(self, kind):
        """Put something unreadable where the file is: a directory, or a symlink to itself."""
        if os.path.islink(self.path) or os.path.isfile(self.path):
            os.remove(self.path)
        elif os.path.isdir(self.path):
            os.rmdir(self.path)
        if kind == "directory":
            os.mkdir(self.path)
        else:
            os.symlink(os.path.basename(self.path), self.path)

    async def test_each_problem_once_at_logerror_until_the_file_reads_again(self):
        self.break_with("directory")
        self.assertEqual(await self.rcpts(), [{}] * RCPTS)
        [first] = self.problems(LOGERROR)
        self.assertTrue(first.startswith("cannot read %s: " % self.path), first)
        self.assertEqual(self.problems(LOGINFO), [first] * (RCPTS - 1))

        self.break_with("loop")                     # another problem: logged in full
        self.assertEqual(await self.rcpts(), [{}] * RCPTS)
        errors = self.problems(LOGERROR)
        self.assertEqual(len(errors), 2, errors)
        self.assertNotEqual(errors[1], first)

        os.remove(self.path)
        with open(self.path, "w") as f:
            f.write("3\n")
        self.assertEqual(await self.rcpts(1), [{"test_threshold": "3"}])
        self.break_with("loop")                     # the same problem as before the fix
        await self.rcpts()
        self.assertEqual(self.problems(LOGERROR), errors + [errors[1]])
