"""A blocking milter client for the test kit's readiness probes (tests/support/milters.py):
one conversation over a unix socket, on the packets of :mod:`qpsmtpd_tx.milter.codec`.

:func:`clean_message_verdict` sends OPTNEG, CONNECT, HELO, MAIL, RCPT, DATA, a header, the
body ``clean`` and the end of the message (leaving out what the milter asked to leave out,
not waiting where it asked not to be answered) and returns the milter's final answer.
"""

import socket
import struct

from qpsmtpd_tx.milter import codec, state
from tests.support.processes import recv_exactly

#: the milter's answers that end a message
FINAL = (codec.R_ACCEPT, codec.R_CONTINUE, codec.R_TEMPFAIL, codec.R_REJECT,
         codec.R_REPLYCODE, codec.R_DISCARD)


def _read_packet(sock):
    size = struct.unpack("!I", recv_exactly(sock, 4))[0]
    data = recv_exactly(sock, size)
    return data[:1], data[1:]


def clean_message_verdict(path, timeout=10.0):
    """The milter at unix socket ``path``'s final answer (a ``codec.R_*`` command) to a small
    clean message; OSError (ConnectionError, socket.timeout) if it cannot be had."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(codec.optneg_packet(state.OFFERED_ACTIONS, state.OFFERED_PROTOCOL))
        command, data = _read_packet(sock)
        if command != codec.OPTNEG:
            raise ConnectionError("the milter answered OPTNEG with %r" % command)
        protocol = codec.parse_optneg(data).protocol
        steps = [
            (codec.P_NOCONNECT, codec.P_NR_CONN,
             codec.connect_packet("probe.example", codec.FAMILY_INET, 25, "127.0.0.1")),
            (codec.P_NOHELO, codec.P_NR_HELO, codec.helo_packet("probe.example")),
            (codec.P_NOMAIL, codec.P_NR_MAIL,
             codec.envelope_packet(codec.MAIL, "<probe@example.com>")),
            (codec.P_NORCPT, codec.P_NR_RCPT,
             codec.envelope_packet(codec.RCPT, "<probe@example.com>")),
            (codec.P_NODATA, codec.P_NR_DATA, codec.packet(codec.DATA)),
            (codec.P_NOHDRS, codec.P_NR_HDR, codec.header_packet("Subject", "probe")),
            (codec.P_NOEOH, codec.P_NR_EOH, codec.packet(codec.EOH)),
            (codec.P_NOBODY, codec.P_NR_BODY, codec.packet(codec.BODY, b"clean\r\n")),
        ]
        for left_out, not_answered, packet in steps:
            if protocol & left_out:
                continue
            sock.sendall(packet)
            if not protocol & not_answered:
                command, _ = _read_packet(sock)
                if command not in (codec.R_CONTINUE, codec.R_SKIP):   # SKIP: no more body
                    return command
        sock.sendall(codec.packet(codec.EOB))
        while True:
            command, _ = _read_packet(sock)
            if command in FINAL:
                sock.sendall(codec.packet(codec.QUIT))
                return command
