"""quit_fortune — a fortune cookie in the reply to QUIT, for clients that said HELO.

After ``HELO`` (not ``EHLO``: "if she talks EHLO she is probably too sophisticated to enjoy
the fun"), QUIT is answered by qpsmtpd 0.94's multi-line reply::

    221-mx.example.org closing connection.
    221-  / Short fortunes are the
    221   / best ones.

— the first line is ``<me> closing connection.``, then each line of ``fortune -s`` with
``  / `` before it (tabs expanded to spaces: a reply carries no control characters). The program runs as a child process (the server goes on serving other
clients meanwhile) with a time limit; when it is missing, fails, prints nothing or runs out
of time, QUIT gets the usual ``221 <me> closing connection. Have a wonderful day.``.

Arguments (all optional; qpsmtpd 0.94's plugin takes none):
  ``fortune PATH``     the program (default ``/usr/games/fortune``, Debian's fortune-mod);
                       missing at start-up: logged, and QUIT is answered as usual.
  ``timeout SECONDS``  how long the program may take (default 5).
  ``file PATH``        a fortune file (made with ``strfile``) passed to the program, instead
                       of its default databases (Debian's ``fortunes-min`` and others).

Config files: none. Notes: none.

Replies: ``221`` at QUIT, as above. Intended difference from 0.94: the program cannot hold
up the server (0.94 ran it with backticks, blocking the process), and a failing program
gives the usual reply instead of a 221 with the first line only.
"""

import os

from qpsmtpd_tx.codes import DECLINED, DONE, LOGDEBUG, LOGWARN
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import positive
from qpsmtpd_tx.program_output import ProgramFailed, program_output

DEFAULT_FORTUNE = "/usr/games/fortune"
DEFAULT_TIMEOUT = 5


class QuitFortune(Plugin):
    """Answers QUIT after HELO with a fortune."""

    def init(self, args):
        options = self.parse_kv_args(args, ("fortune", "timeout", "file"))
        self.program = options.get("fortune", DEFAULT_FORTUNE)
        self.timeout = positive("timeout", options.get("timeout", str(DEFAULT_TIMEOUT)))
        self.file = options.get("file")
        if self.file is not None and not os.path.isfile(self.file):
            raise PluginError("file %s: no such fortune file" % (self.file,))
        if not os.access(self.program, os.X_OK):
            self.log(LOGWARN, "%s is not an executable program: QUIT gets the usual reply"
                     % (self.program,))

    def argv(self):
        """The command line run at QUIT."""
        return [self.program, "-s"] + ([self.file] if self.file else [])

    async def hook_quit(self, transaction):
        connection = transaction.connection
        if (connection.hello or "") == "ehlo" or not os.access(self.program, os.X_OK):
            return DECLINED
        try:
            output = await program_output(self.argv(), self.timeout)
        except ProgramFailed as e:
            self.log(LOGWARN, "%s: %s" % (self.program, e), transaction)
            return DECLINED
        lines = ["  / " + line for line in
                 output.decode("utf-8", "replace").expandtabs().splitlines()]
        if not lines:
            self.log(LOGDEBUG, "%s printed nothing" % (self.program,), transaction)
            return DECLINED
        transaction.session.respond(221, ["%s closing connection." % (self.server.me,)] + lines)
        return DONE
