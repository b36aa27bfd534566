"""The test kit's readiness check for clamav-milter (tests/support/milters.py).

A fresh clamav-milter's first message sometimes got ``452`` under ``trial -j2``: libmilter
listens on the milter socket before clamav-milter has found clamd (a background thread pings
clamd; until it answered, every message gets TEMPFAIL), and the kit used to call the milter
ready as soon as the socket existed. Here clamd's first connection (that ping) is held for a
while by a relay in front of the suite's real clamd, which makes the race certain: the milter
must pass a clean message as soon as ``start_clamav_milter`` returns. The relay is the one
stand-in: it only delays; every answer is the real clamd's.
"""

import array
import os
import socket
import tempfile
import threading
import time

from twisted.trial import unittest

from qpsmtpd_tx.milter import codec
from tests.support.clamd import shared_clamd
from tests.support.milter_probe import clean_message_verdict
from tests.support.milters import start_clamav_milter

#: how long the relay holds clamd's first connection
HOLD_SECONDS = 2.0


class SlowFirstClamd:
    """A unix socket (``socket``) relaying to ``clamd``'s, holding the first connection for
    :data:`HOLD_SECONDS` before it is passed on."""

    def __init__(self, clamd):
        self.target = clamd.socket
        self.dir = tempfile.mkdtemp(prefix="qptx-slowclamd-")
        self.socket = os.path.join(self.dir, "clamd.sock")
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.socket)
        os.chmod(self.socket, 0o666)
        self.listener.listen(16)
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return          # closed
            self.connections += 1
            threading.Thread(target=self._relay, args=(client, self.connections == 1),
                             daemon=True).start()

    def _relay(self, client, hold):
        if hold:
            time.sleep(HOLD_SECONDS)
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(self.target)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def close(self):
        self.listener.close()
        os.unlink(self.socket)
        os.rmdir(self.dir)


def _pipe(source, sink):
    """Copy ``source`` to ``sink``, with the file descriptors clamav-milter passes to clamd
    (its FILDES command: SCM_RIGHTS ancillary data)."""
    try:
        while True:
            data, ancillary, _, _ = source.recvmsg(65536, socket.CMSG_SPACE(64))
            if not data:
                break
            sink.sendmsg([data], ancillary)
            for level, kind, fds in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    for fd in array.array("i", fds[:len(fds) - len(fds) % 4]):
                        os.close(fd)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class ClamavMilterReadinessTests(unittest.TestCase):
    def test_ready_means_it_has_found_clamd(self):
        clamd = SlowFirstClamd(shared_clamd())
        self.addCleanup(clamd.close)
        milter = start_clamav_milter(clamd)
        self.addCleanup(milter.stop)
        self.assertIn(clean_message_verdict(milter.socket),
                      (codec.R_ACCEPT, codec.R_CONTINUE), milter.log())
        self.assertIn("Probe for slot 1 returned: success", milter.log())
