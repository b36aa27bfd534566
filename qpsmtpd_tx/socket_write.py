"""Writing a reply straight into the socket when nothing is queued before it.

Twisted's TCP transport never writes in ``write``: it queues the bytes, asks epoll for
writability, writes on the next reactor turn and then takes the socket out of the write set
again — two ``epoll_ctl`` calls and a reactor pass for every reply, though a reply almost
always fits into the socket's buffer at once. :func:`write_now` sends at once when the
transport has nothing queued (so the order of bytes is kept) and hands Twisted only what the
socket did not take, or the whole write when anything is unusual (a wrapper transport, a
closing connection, an error to report), so Twisted's own handling stays in charge there.
"""

from twisted.internet import tcp


def write_now(transport, data):
    """Write ``data`` to ``transport``: into the socket now if it is a plain TCP connection with
    nothing queued, else (and for what the socket does not take) through ``transport.write``."""
    if type(transport) is not tcp.Server:
        transport.write(data)
        return
    write_through(transport, data, transport, transport.socket.send)


def write_through(transport, data, writer, send):
    """Write ``data`` with ``send(data)`` (a non-blocking write returning the bytes taken) if
    ``writer``, the Twisted file descriptor under ``transport``, is open with nothing queued;
    else, and for what ``send`` did not take, through ``transport.write``."""
    if (not writer.connected or writer.disconnecting or writer._writeDisconnected
            or writer._tempDataLen or writer.offset != len(writer.dataBuffer)):
        transport.write(data)
        return
    try:
        sent = send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        transport.write(data)     # Twisted meets the error again and closes as usual
        return
    if sent < len(data):
        transport.write(data[sent:])
