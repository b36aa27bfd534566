"""help — answer HELP and HELP <command> from text files (or refuse HELP altogether).

Arguments: ``KEY VALUE`` pairs, any of:
  ``help_dir DIR``       ``HELP CMD`` sends the file ``DIR/cmd`` (command in lower case) if
                         it exists.
  ``not_implemented 1``  answer every HELP with ``502 Not implemented.`` (``0`` turns it off).
  ``CMD FILE``           ``HELP CMD`` sends ``FILE``. A FILE without ``/`` is looked for in
                         ``help_dir`` (``./help/`` when no ``help_dir`` is given); a FILE
                         that does not exist at start-up is skipped with a warning, and then
                         ``help_dir`` is tried for that command.
With no arguments at all, ``help_dir`` is ``./help/``. Relative paths are taken from the
server's working directory at start-up, as qpsmtpd does. Commands and keys must be word
characters and file names ``[A-Za-z0-9_.-/]`` only; anything else is a start-up error.

Differences from qpsmtpd 0.94, on purpose: a FILE without ``/`` is looked for in the help
directory (0.94 looked in ``help/help/``, contrary to its documentation); several instances
of the plugin keep separate settings (0.94 shared them).

Config files: none (the help texts are plain files, sent line by line; CRLF or LF endings).

Notes: none.

Replies:
  ``HELP``                        ``214 Try 'HELP COMMAND' for getting help on COMMAND``
  ``HELP CMD`` with a help file   ``214`` and the lines of the file
  ``HELP CMD`` without one (or an empty or unreadable file)
                                  ``214 No help available for SMTP command: cmd``
  ``HELP`` with anything but one word  ``502 Invalid command name``
  any HELP with ``not_implemented 1``  ``502 Not implemented.``
"""

import os
import re

from qpsmtpd_tx.codes import DONE, LOGERROR, LOGWARN, OK
from qpsmtpd_tx.plugin import Plugin, PluginError

_WORD = re.compile(r"\w+", re.ASCII)
_FILENAME = re.compile(r"[\w.\-/]+", re.ASCII)
DEFAULT_HELP_DIR = "./help/"

NOT_IMPLEMENTED = "Not implemented."
INVALID_COMMAND = "Invalid command name"
TRY_HELP_COMMAND = "Try 'HELP COMMAND' for getting help on COMMAND"
NO_HELP = "No help available for SMTP command: %s"


class Help(Plugin):
    """HELP answered from files."""

    def init(self, args):
        if len(args) % 2:
            raise PluginError("arguments must be KEY VALUE pairs, got %r" % (" ".join(args),))
        pairs = list(zip(args[::2], args[1::2]))
        self.not_implemented = False
        self.help_dir = DEFAULT_HELP_DIR if not pairs else None
        self.files = {}
        for key, value in pairs:
            if not _WORD.fullmatch(key):
                raise PluginError("invalid argument %r (a command or option name)" % (key,))
            if key == "not_implemented":
                self.not_implemented = value not in ("", "0")
            elif key == "help_dir":
                self.help_dir = self._checked_filename(key, value)
        if self.help_dir is not None:
            self.help_dir = os.path.abspath(self.help_dir)
        file_dir = self.help_dir or os.path.abspath(DEFAULT_HELP_DIR)
        for key, value in pairs:
            if key in ("not_implemented", "help_dir"):
                continue
            path = self._checked_filename(key, value)
            path = os.path.abspath(path if "/" in path else os.path.join(file_dir, path))
            if not os.path.exists(path):
                self.log(LOGWARN, "No help file for command '%s' (%s)" % (key, path))
                continue
            self.files[key.lower()] = path

    @staticmethod
    def _checked_filename(key, value):
        if not _FILENAME.fullmatch(value):
            raise PluginError("invalid characters in file name %r for %s" % (value, key))
        return value

    def hook_help(self, transaction, rest):
        session = transaction.session
        if self.not_implemented:
            session.respond(502, NOT_IMPLEMENTED)
            return DONE
        arg = (rest or "").strip()
        if not arg:
            return OK, TRY_HELP_COMMAND
        command = arg.lower()
        if not _WORD.fullmatch(command):
            # a word only: "HELP ../../etc/passwd" must not name a file
            session.respond(502, INVALID_COMMAND)
            return DONE
        path = self.files.get(command)
        if path is None and self.help_dir is not None:
            candidate = os.path.join(self.help_dir, command)
            if os.path.exists(candidate):
                path = candidate
        if path is None:
            return OK, NO_HELP % command
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            self.log(LOGERROR, "failed to open help file for %s: %s" % (command, e.strerror),
                     transaction)
            return OK, NO_HELP % command
        lines = [line.rstrip("\r") for line in text.split("\n")]
        lines = [line for line in lines if line]
        if not lines:
            return OK, NO_HELP % command
        return OK, lines
