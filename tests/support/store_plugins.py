"""Helpers for the tests of the plugins that keep history in a store (greylisting, karma):
a server whose plugin runs on a Clock the test advances, and a client command that waits
for the asynchronous hooks."""

from twisted.internet.task import Clock

from tests.support.harness import loaded_plugin, make_server, wait_for

#: the Clock's time at the start of a test (seconds since the epoch)
START = 1_700_000_000


async def ask(client, line):
    """Send one command on a MemoryClient; the reply once the hooks have given it."""
    client.protocol.dataReceived((line + "\r\n").encode())
    await wait_for(lambda: client.transport.value().endswith(b"\r\n"))
    return client.take()


def clocked_server(testcase, plugin_name, plugins_lines, files=None):
    """``(server, plugin, clock)``: a server on ``plugins_lines`` whose plugin
    ``plugin_name`` (and its store) reads the time from ``clock``, a Clock at START; its
    plugins are stopped (stores closed) at the end of the test."""
    server = make_server(testcase, plugins_lines, files)
    testcase.addCleanup(server.stop_plugins)
    plugin = loaded_plugin(server, plugin_name)
    clock = Clock()
    clock.advance(START)
    plugin.clock = plugin.store.clock = clock
    return server, plugin, clock
