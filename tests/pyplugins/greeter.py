"""greeter — a plugin shipped in a Python package (tests only): answers HELP with its argument."""

from qpsmtpd_tx.codes import OK
from qpsmtpd_tx.plugin import Plugin


class Greeter(Plugin):
    """Answer HELP with the configured words."""

    def init(self, args):
        self.words = " ".join(args) or "hello"

    def hook_help(self, transaction, rest):
        return OK, self.words
