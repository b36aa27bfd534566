"""A loaded server for calling plugin hooks directly (the tests of relay,
count_unrecognized_commands, help, logging/warn, logging/devnull and logging/file).
"""

from tests.support.harness import make_server
from tests.support.server import keep_signal_handlers


def server_with(testcase, plugins, files=None):
    """A loaded server that does not listen (for calling plugin hooks directly)."""
    keep_signal_handlers(testcase)
    return make_server(testcase, plugins, files)
