"""Reverse DNS of the client, as qpsmtpd's forkserver does before the connect hooks."""

import re
import socket

from twisted.internet import reactor
from twisted.internet.threads import deferToThread

#: qpsmtpd waits this long for the PTR answer
PTR_TIMEOUT = 3.0
_NOT_HOSTNAME = re.compile(r"[^A-Za-z0-9.\-\[\]]")


def lookup_ptr(ip, timeout=PTR_TIMEOUT, clock=reactor):
    """A Deferred firing with the host name of ``ip`` (sanitised), or None if there is none in time.

    Uses the system resolver (``/etc/hosts``, then DNS) in a thread, so the answer is the
    same one qpsmtpd's ``gethostbyaddr`` gives.
    """
    d = deferToThread(socket.gethostbyaddr, ip)
    d.addTimeout(timeout, clock)
    d.addCallbacks(lambda answer: _NOT_HOSTNAME.sub("", answer[0]) or None, lambda failure: None)
    return d
