"""Where a plugin's client connects (a unix socket, or a host and port), and why it could not.

Used by the plugins that talk to a server of their own (spamd, clamd, the next SMTP/LMTP hop,
Postfix's cleanup service): they read the address from their arguments, log it, connect to it
with a time limit and describe a failure in a few words.
"""

import re

from twisted.internet import defer, reactor
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint

from qpsmtpd_tx.plugin import PluginError

#: the longest unix socket path the system takes (``sun_path`` is 108 bytes with its NUL)
MAX_SOCKET_PATH = 107

_HOST_PORT = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([\w.-]+)):(\d+)\Z")


class ServerAddress:
    """A server's unix socket ``path``, or its ``host`` and ``port``."""

    def __init__(self, path=None, host=None, port=None):
        self.path = path
        self.host = host
        self.port = port

    def __str__(self):
        """The address as logs show it: the path, ``host:port`` or ``[v6 address]:port``."""
        if self.path:
            return self.path
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s:%d" % (host, self.port)

    def endpoint(self, timeout, clock=reactor):
        """A client endpoint for it, whose connection attempt gives up after ``timeout`` s."""
        if self.path:
            return UNIXClientEndpoint(clock, self.path, timeout=timeout)
        return HostnameEndpoint(clock, self.host, self.port, timeout=timeout)


def unix_socket(name, path):
    """A ServerAddress for socket ``path``; PluginError naming argument ``name`` if too long."""
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise PluginError("%s %r: longer than %d bytes, the limit of unix socket paths"
                          % (name, path, MAX_SOCKET_PATH))
    return ServerAddress(path=path)


def host_port(text):
    """A ServerAddress for ``host:port`` or ``[v6 address]:port`` (port 1–65535), else None."""
    m = _HOST_PORT.match(text)
    if not m or not 0 < int(m.group(3)) < 65536:
        return None
    return ServerAddress(host=m.group(1) or m.group(2), port=int(m.group(3)))


def describe_failure(error):
    """A failed exchange's reason in a few words: ``timed out``, or the error's own text."""
    if isinstance(error, (defer.TimeoutError, defer.CancelledError)):
        return "timed out"
    return (str(error) or error.__class__.__name__).strip().rstrip(".")
