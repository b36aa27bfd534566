#!/usr/bin/env python3
"""A bare Twisted SMTP server: the floor of what Python + Twisted cost for bench/run.py's work.

twisted.mail.smtp's ESMTP protocol, no plugins: any sender, recipients in ``example.com``
only (550 otherwise), each message written to ``MAILDIR/tmp`` and renamed into ``MAILDIR/new``
before the 250 (with ``--fsync``, the file is fsynced before the rename and ``new/`` after it,
as qpsmtpd-tx's queue/maildir does, in the reactor's thread pool; without, inline, as a
plain Maildir delivery does). A Received header is added, as every benchmarked server adds
one. PIPELINING is advertised (the other servers offer it; Twisted's line-based protocol
answers MAIL/RCPT/DATA in order, and smtpload.py waits for the reply to the final dot).

    .venv/bin/python bench/bare_twisted.py --port 2525 --maildir /tmp/md [--fsync]
"""

import argparse
import itertools
import os
import socket
import time

from twisted.internet import defer, endpoints, reactor, threads
from twisted.mail import smtp
from zope.interface import implementer

HOSTNAME = socket.gethostname()
_names = itertools.count(1)


@implementer(smtp.IMessage)
class MaildirMessage:
    """One message being received: its lines in memory, written out at the final dot."""

    def __init__(self, maildir, fsync):
        self.maildir, self.fsync, self.lines = maildir, fsync, []

    def lineReceived(self, line):
        self.lines.append(line)

    def eomReceived(self):
        """Deliver; with fsync in the reactor's thread pool (as qpsmtpd-tx and Haraka do their
        file I/O off the event loop), else inline (cheaper than a thread hop)."""
        if self.fsync:
            return threads.deferToThread(self.deliver)
        return defer.maybeDeferred(self.deliver)

    def deliver(self):
        """Write tmp/NAME, rename it to new/NAME (fsyncing both if asked)."""
        name = "%d.%d_%d.%s" % (time.time(), os.getpid(), next(_names), HOSTNAME)
        tmp = os.path.join(self.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(b"\n".join(self.lines) + b"\n")
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.maildir, "new", name))
        if self.fsync:
            fd = os.open(os.path.join(self.maildir, "new"), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def connectionLost(self):
        self.lines = []


@implementer(smtp.IMessageDelivery)
class Delivery:
    """Accept any sender and ``@example.com`` recipients; deliver to one Maildir."""

    def __init__(self, maildir, fsync):
        self.maildir, self.fsync = maildir, fsync

    def receivedHeader(self, helo, origin, recipients):
        return b"Received: from %s by bare-twisted.example; %s" % (
            helo[0], smtp.rfc822date())

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        if user.dest.domain.lower() != b"example.com":
            raise smtp.SMTPBadRcpt(user)
        return lambda: MaildirMessage(self.maildir, self.fsync)


class PipeliningESMTP(smtp.ESMTP):
    """ESMTP offering PIPELINING (and no empty AUTH line)."""

    def extensions(self):
        ext = {k: v for k, v in smtp.ESMTP.extensions(self).items() if v or k != b"AUTH"}
        ext[b"PIPELINING"] = None
        return ext


class Factory(smtp.SMTPFactory):
    """SMTPFactory whose protocols deliver through one Delivery."""

    protocol = PipeliningESMTP
    domain = b"bare-twisted.example"

    def __init__(self, delivery):
        smtp.SMTPFactory.__init__(self)
        self.delivery = delivery

    def buildProtocol(self, addr):
        p = smtp.SMTPFactory.buildProtocol(self, addr)
        p.delivery = self.delivery
        return p


def main():
    """Entry point: listen on 127.0.0.1:PORT until SIGTERM."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True, help="a Maildir (cur/ new/ tmp/ must exist)")
    p.add_argument("--fsync", action="store_true", help="fsync the file and new/ (off by default)")
    a = p.parse_args()
    ep = endpoints.TCP4ServerEndpoint(reactor, a.port, backlog=128, interface="127.0.0.1")
    ep.listen(Factory(Delivery(a.maildir, a.fsync)))
    reactor.run()


if __name__ == "__main__":
    main()
